// The browse page: a paged grid of the collection from GET /browse, by category, each image a
// link to the search page's "more like this" (?similar=NAME). Names are only ever set as text
// or attributes, never parsed as HTML. The address (?category=&page=&per_page=) keeps the place.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const browseUrl = document.body.dataset.browseUrl;
  const searchPage = document.body.dataset.searchPage;
  const defaultPerPage = Number(document.body.dataset.perPage);
  const category = $("browse-category");
  const grid = $("grid");
  const counts = $("counts");
  const errorBox = $("browse-error");
  const summary = $("browse-summary");
  const prev = $("prev");
  const next = $("next");
  const pageInfo = $("page-info");

  let state = fromAddress();
  const start = imgsimResults.newestOnly(); // older answers are dropped

  function fromAddress() {
    const params = new URLSearchParams(location.search);
    const page = Math.max(1, Math.floor(Number(params.get("page"))) || 1);
    const perPage = Math.floor(Number(params.get("per_page"))) || defaultPerPage;
    return { category: params.get("category") || "", page, perPage };
  }

  function address(s) {
    const params = new URLSearchParams();
    if (s.category) params.set("category", s.category);
    if (s.page > 1) params.set("page", String(s.page));
    if (s.perPage !== defaultPerPage) params.set("per_page", String(s.perPage));
    const query = params.toString();
    return query ? `?${query}` : location.pathname;
  }

  async function load(focusAfter = false) {
    const call = start();
    const params = new URLSearchParams({ page: String(state.page), per_page: String(state.perPage) });
    if (state.category) params.set("category", state.category);
    grid.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(`${browseUrl}?${params}`, { signal: call.signal });
      const data = await imgsimResults.readJson(response, "Cannot load the page");
      if (!call.current()) return;
      imgsimResults.showError(errorBox, "");
      render(data);
      if (focusAfter) summary.focus();
    } catch (err) {
      if (err.name === "AbortError" || !call.current()) return;
      imgsimResults.showError(errorBox, imgsimResults.errorText(err));
      counts.classList.add("warn");
    } finally {
      if (call.current()) grid.removeAttribute("aria-busy");
    }
  }

  function render(data) {
    fillCategories(data.categories, data.total_images);
    const n = Object.keys(data.categories).length;
    counts.textContent = `${data.total_images.toLocaleString()} images · ${n} categor${n === 1 ? "y" : "ies"}`;
    grid.replaceChildren(...data.items.map(item));
    const first = (data.page - 1) * data.per_page + 1;
    const where = data.category ? ` in ${data.category}` : "";
    summary.textContent = data.items.length
      ? `Images ${first.toLocaleString()}–${(first + data.items.length - 1).toLocaleString()} ` +
        `of ${data.total.toLocaleString()}${where}. Open one to see more like it.`
      : `No images on page ${data.page}${where}.`;
    pageInfo.textContent = `Page ${data.page.toLocaleString()} of ${Math.max(1, data.pages).toLocaleString()}`;
    prev.disabled = data.page <= 1;
    next.disabled = data.page >= data.pages;
  }

  function item(entry) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.className = "result";
    link.href = `${searchPage}?${new URLSearchParams({ similar: entry.filename })}`;
    link.title = `More like ${entry.filename}`;
    // A small JPEG, not the whole file.
    const img = imgsimResults.cardImage(imgsimResults.thumbnail(entry.url), entry.filename);
    const meta = document.createElement("span");
    meta.className = "meta";
    const span = imgsimResults.span;
    meta.append(
      span("category", entry.category || "no category"),
      span("filename", entry.filename),
      span("more", "More like this ›"),
    );
    link.append(img, meta);
    li.append(link);
    return li;
  }

  function fillCategories(perCategory, total) {
    const all = new Option(`All categories (${total.toLocaleString()})`, "");
    category.replaceChildren(all, ...imgsimResults.categoryOptions(perCategory));
    category.value = state.category;
  }

  function go(change, focusAfter = false) {
    state = { ...state, ...change };
    history.pushState(null, "", address(state));
    load(focusAfter);
  }

  category.addEventListener("change", () => go({ category: category.value, page: 1 }));
  prev.addEventListener("click", () => go({ page: Math.max(1, state.page - 1) }, true));
  next.addEventListener("click", () => go({ page: state.page + 1 }, true));
  $("browse-options").addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("popstate", () => {
    state = fromAddress();
    load();
  });

  load();
})();
