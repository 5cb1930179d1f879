// What the pages share: fetching JSON where only the newest answer counts, the error line, the
// results grid (one search at a time) with its cards ("more like this" on click), their pictures
// and text-only spans, and the category picker's options.
// Names from the server are only ever set with textContent/attributes, never parsed as HTML.
"use strict";

const imgsimResults = (() => {
  // One of the server's thumbnail sizes (/images/NAME?size=): sharp at twice a 150 px card.
  // Cards never load the original, which may be megabytes; a link opens it on request.
  const THUMBNAIL = 320;

  function thumbnail(url) {
    return `${url}?size=${THUMBNAIL}`;
  }

  // A link to the full-size image, for when a person asks for it.
  function originalLink(url, name) {
    const link = document.createElement("a");
    link.className = "original";
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Original";
    link.title = `Open ${name} at full size`;
    return link;
  }

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  // A card's picture: 150×150 CSS pixels, loaded when it scrolls into view.
  function cardImage(src, alt) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = alt;
    img.loading = "lazy";
    img.width = 150;
    img.height = 150;
    return img;
  }

  // One result of /search or /similar as a list item; `onClick(result)` runs when chosen.
  function resultItem(result, onClick) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "result";
    button.title = `More like ${result.filename}`;
    const img = cardImage(thumbnail(result.url), result.filename);
    const meta = document.createElement("span");
    meta.className = "meta";
    // Similarity: how alike (percent of the cosine); confidence: how likely the same category.
    const similarity = span("similarity", `${result.similarity.toFixed(1)}%`);
    similarity.title = "How alike: 100% is the same picture, high 90s a near copy";
    meta.append(similarity);
    if (result.confidence !== null && result.confidence !== undefined) {
      meta.append(span("confidence", `${Math.round(result.confidence)}% same category`));
    }
    meta.append(
      span("category", result.category || "no category"),
      span("filename", result.filename),
    );
    button.append(img, meta);
    button.addEventListener("click", () => onClick(result));
    item.append(button, originalLink(result.url, result.filename));
    return item;
  }

  // Each part of a dataset name encoded, its folders kept: the server's <path:name> routes.
  function pathOf(name) {
    return name.split("/").map(encodeURIComponent).join("/");
  }

  // GET /similar/NAME: the stored embedding of an indexed image is the query, nothing is uploaded.
  function similar(similarUrl, name, params, signal) {
    return fetch(`${similarUrl}${pathOf(name)}?${params}`, { signal });
  }

  // The answer's JSON; a failed status throws with the server's own message when it sent one.
  async function readJson(response, failure) {
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `${failure} (HTTP ${response.status}).`);
    return data;
  }

  // What to tell a person about a failed request: fetch() throws a TypeError when it got no answer.
  function errorText(err) {
    return err instanceof TypeError ? "The server cannot be reached." : err.message;
  }

  // The page's error line: shown with a message, hidden when there is none.
  function showError(box, message) {
    box.textContent = message;
    box.hidden = !message;
  }

  // Requests where only the newest answer counts: each start() aborts the one before, and
  // `current()` tells a request whether a newer one has started since.
  function newestOnly() {
    let latest = 0;
    let controller = null;
    return function start() {
      const id = ++latest;
      if (controller) controller.abort();
      controller = new AbortController();
      return { signal: controller.signal, current: () => id === latest };
    };
  }

  // A results grid fed one search at a time (the search and map pages): the spinner shows and
  // the grid is busy while it runs; an older answer is dropped; a failure empties the grid.
  function resultsPanel({ loading, errorBox, summary, results }) {
    const start = newestOnly();

    function fail(message) {
      showError(errorBox, message);
      results.replaceChildren();
      summary.textContent = "";
    }

    // `request(signal)` fetches; `render(data)` shows the newest answer.
    async function search(request, render) {
      const call = start();
      loading.hidden = false;
      results.setAttribute("aria-busy", "true");
      showError(errorBox, "");
      try {
        const data = await readJson(await request(call.signal), "Search failed");
        if (call.current()) render(data);
      } catch (err) {
        if (err.name === "AbortError" || !call.current()) return;
        fail(errorText(err));
      } finally {
        if (call.current()) {
          loading.hidden = true;
          results.removeAttribute("aria-busy");
        }
      }
    }

    // The answer's results as cards; choosing one calls `onClick(result)`.
    function show(found, onClick) {
      results.replaceChildren(...found.map((result) => resultItem(result, onClick)));
    }

    return { search, show, fail };
  }

  // One <option> per named category, with its count (the uncategorised "" has none).
  function categoryOptions(counts) {
    return Object.entries(counts)
      .filter(([name]) => name)
      .map(([name, count]) => new Option(`${name} (${count.toLocaleString()})`, name));
  }

  return {
    THUMBNAIL, span, thumbnail, originalLink, cardImage, resultItem, pathOf, similar, readJson,
    errorText, showError, newestOnly, resultsPanel, categoryOptions,
  };
})();
