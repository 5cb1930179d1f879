// The search page's behaviour: pick, drop or paste a query image, POST it to /search, show the grid.
// An indexed image ("more like this", or ?similar=NAME from the browse page) is searched by name
// through /similar/NAME instead: its stored embedding is the query, nothing is uploaded.
// Names from the server are only ever set with textContent/attributes, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const searchUrl = document.body.dataset.searchUrl;
  const statsUrl = document.body.dataset.statsUrl;
  const similarUrl = document.body.dataset.similarUrl;
  const imagesUrl = document.body.dataset.imagesUrl;
  const maxBytes = Number(document.body.dataset.maxBytes);
  const fileInput = $("file");
  const dropzone = $("dropzone");
  const preview = $("preview");
  const queryName = $("query-name");
  const topK = $("top-k");
  const threshold = $("threshold");
  const category = $("category");
  const thresholdValue = $("threshold-value");
  const errorBox = $("error");
  const summary = $("summary");
  const showHidden = $("show-hidden");
  const panel = imgsimResults.resultsPanel({
    loading: $("loading"), errorBox, summary, results: $("results"),
  });

  let query = null; // {file: Blob, name: string} or {indexed: string, name: string}
  let previewUrl = null;
  let timer = null;
  let thresholdTouched = false;

  function setQuery(file, name, focusAfter = false) {
    // An empty type (unknown extension) is left for the server to judge.
    if (file.type && !file.type.startsWith("image/")) {
      imgsimResults.showError(errorBox, `${name} is not an image.`);
      return;
    }
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = `Query image: ${name}`;
    preview.hidden = false;
    queryName.textContent = name;
    queryName.hidden = false;
    query = { file, name };
    search(focusAfter);
  }

  // An indexed image as the query: shown from /images, searched by its name.
  function setIndexedQuery(name, focusAfter = false) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.src = imagesUrl + imgsimResults.pathOf(name);
    preview.alt = `Query image: ${name}`;
    preview.hidden = false;
    queryName.textContent = name;
    queryName.hidden = false;
    query = { indexed: name, name };
    search(focusAfter);
  }

  function request(signal) {
    if (query.indexed) {
      const params = new URLSearchParams({ top_k: String(topKValue()), threshold: threshold.value });
      if (category.value) params.append("category", category.value);
      return imgsimResults.similar(similarUrl, query.indexed, params, signal);
    }
    const form = new FormData();
    form.append("image", query.file, query.name);
    form.append("top_k", String(topKValue()));
    form.append("threshold", threshold.value);
    if (category.value) form.append("category", category.value);
    return fetch(searchUrl, { method: "POST", body: form, signal });
  }

  function sizeText(bytes) {
    if (bytes >= 1048576) return `${+(bytes / 1048576).toFixed(1)} MB`;
    if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KB`;
    return `${bytes} bytes`;
  }

  function topKValue() {
    const lo = Number(topK.min), hi = Number(topK.max);
    const n = Math.round(Number(topK.value));
    if (topK.value.trim() === "" || !Number.isFinite(n)) return Number(topK.defaultValue);
    return Math.min(hi, Math.max(lo, n));
  }

  function search(focusAfter = false) {
    if (!query) return;
    if (query.file && query.file.size > maxBytes) {
      panel.fail(`Image too large: the limit is ${sizeText(maxBytes)}.`);
      return;
    }
    panel.search(request, (data) => render(data, focusAfter));
  }

  function render(data, focusAfter) {
    panel.show(data.results, moreLikeThis);
    const n = data.total_results;
    const hidden = data.hidden || 0;
    const within = category.value ? ` in ${category.value}` : "";
    const below = hidden ? ` ${hidden} less similar hidden (under ${threshold.value}%).` : "";
    summary.textContent = n
      ? `${n} similar image${n === 1 ? "" : "s"}${within}.${below} Click one to search with it.`
      : `No image${within} is at least ${threshold.value}% similar.${below}`;
    showHidden.textContent = `Show the ${hidden} hidden`;
    showHidden.hidden = !hidden;
    if (focusAfter) summary.focus();
  }

  function moreLikeThis(result) {
    // The grid is about to be replaced: move the focus to the new summary when it lands.
    setIndexedQuery(result.filename, true);
  }

  function searchSoon() {
    clearTimeout(timer);
    timer = setTimeout(() => search(), 250);
  }

  async function loadStats() {
    const stats = $("stats");
    try {
      const response = await fetch(statsUrl);
      const data = await response.json();
      if (!thresholdTouched) {
        threshold.value = String(Math.round(data.default_threshold || 0));
        thresholdValue.value = `${threshold.value}%`;
      }
      fillCategories(data.categories || {});
      if (data.model_loaded && data.embeddings_loaded) {
        const categories = Object.keys(data.categories || {}).length;
        stats.classList.remove("warn"); // an index the watcher filled since the last look
        stats.textContent = `${data.total_images.toLocaleString()} images · ${categories} ` +
          `categories · ${data.model_type}, ${data.similarity_metric}`;
      } else {
        stats.textContent = (data.problems || []).join(" · ") || "Not ready to search.";
        stats.classList.add("warn");
      }
    } catch {
      stats.textContent = "Cannot load the statistics.";
      stats.classList.add("warn");
    }
  }

  // One option per category, with its count; a category asked for in the address is chosen.
  function fillCategories(counts) {
    const wanted = category.value || new URLSearchParams(location.search).get("category") || "";
    category.replaceChildren(category.options[0], ...imgsimResults.categoryOptions(counts));
    if ([...category.options].some((o) => o.value === wanted)) category.value = wanted;
  }

  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    if (file) setQuery(file, file.name);
    fileInput.value = ""; // choosing the same file again must search again
  });

  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) setQuery(file, file.name);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    const file = item.getAsFile();
    setQuery(file, file.name && file.name !== "image.png" ? file.name : "pasted image");
  });

  threshold.addEventListener("input", () => {
    thresholdTouched = true;
    thresholdValue.value = `${threshold.value}%`;
    searchSoon();
  });
  // One click shows what the minimum similarity hid: the threshold goes to 0.
  showHidden.addEventListener("click", () => {
    thresholdTouched = true;
    threshold.value = "0";
    thresholdValue.value = "0%";
    search(true);
  });
  category.addEventListener("change", () => search());
  topK.addEventListener("change", () => {
    topK.value = String(topKValue());
    searchSoon();
  });
  $("options").addEventListener("submit", (event) => {
    event.preventDefault(); // Enter in the number field: search now, do not reload the page
    search();
  });

  // The folder watcher changed the index (watch.js): the counts and categories follow.
  document.addEventListener("imgsim:index-changed", loadStats);

  // The category list must be in place before a search from the address uses it.
  loadStats().then(() => {
    const similar = new URLSearchParams(location.search).get("similar");
    if (similar) setIndexedQuery(similar, true);
  });
})();
