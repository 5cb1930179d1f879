// The map page: the collection's 2-D projection on a canvas, coloured by category. Pointing at
// a dot shows its image, clicking searches with it; arrow keys walk between nearby dots.
// Names from the server are only ever set with textContent/attributes, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pointsUrl = document.body.dataset.pointsUrl;
  const similarUrl = document.body.dataset.similarUrl;
  const topK = document.body.dataset.topK;
  const canvas = $("map-canvas");
  const frame = $("map-frame");
  const tip = $("map-tip");
  const tipImage = $("map-tip-image");
  const tipName = $("map-tip-name");
  const mapStatus = $("map-status");
  const mapPoint = $("map-point");
  const legend = $("map-legend");
  const summary = $("summary");
  const panel = imgsimResults.resultsPanel({
    loading: $("loading"), errorBox: $("error"), summary, results: $("results"),
  });

  const PAD = 10; // CSS pixels between the canvas edge and the outermost dots
  const RADIUS = 3.5;
  const HIT = { mouse: 10, pen: 10, touch: 18 }; // how far from a dot a pointer still hits it
  // Matplotlib's tab10, as `imgsim extract --plot` colours; then hues spaced by the golden angle.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  let points = []; // {filename, category, x, y, url} plus sx, sy: CSS pixels on the canvas
  let byCategory = new Map(); // category → its points, drawn one path per category
  const colours = new Map();
  const hiddenCategories = new Set();
  let hover = null;
  let current = null; // the keyboard's (and the last click's) point

  canvas.dataset.pad = String(PAD); // where the dots are, for tests and tools

  function colourOf(index) {
    return index < PALETTE.length ? PALETTE[index] : `hsl(${(index * 137.508) % 360} 65% 42%)`;
  }

  function visible(p) {
    return p !== null && !hiddenCategories.has(p.category);
  }

  function layout() {
    const size = canvas.clientWidth;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(size * ratio);
    canvas.height = Math.round(size * ratio);
    const span = size - 2 * PAD;
    for (const p of points) {
      p.sx = PAD + p.x * span;
      p.sy = PAD + (1 - p.y) * span; // y grows upwards, as in the PNG plot
    }
    draw();
  }

  function draw() {
    const ctx = canvas.getContext("2d");
    const size = canvas.clientWidth;
    const ratio = canvas.width / (size || 1);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size, size);
    for (const [category, members] of byCategory) {
      if (hiddenCategories.has(category)) continue;
      ctx.fillStyle = colours.get(category);
      ctx.beginPath();
      for (const p of members) {
        ctx.moveTo(p.sx + RADIUS, p.sy);
        ctx.arc(p.sx, p.sy, RADIUS, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#1d2330";
    for (const p of new Set([current, hover])) {
      if (!visible(p)) continue;
      ctx.beginPath();
      ctx.arc(p.sx, p.sy, RADIUS + 3, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  function nearest(sx, sy, within) {
    let best = null;
    let bestDistance = within * within;
    for (const p of points) {
      if (!visible(p)) continue;
      const d = (p.sx - sx) ** 2 + (p.sy - sy) ** 2;
      if (d <= bestDistance) {
        best = p;
        bestDistance = d;
      }
    }
    return best;
  }

  function showTip(p) {
    if (!visible(p)) {
      tip.hidden = true;
      return;
    }
    if (tipImage.dataset.url !== p.url) {
      tipImage.dataset.url = p.url;
      tipImage.src = imgsimResults.thumbnail(p.url);
    }
    tipImage.alt = p.filename;
    tipName.textContent = `${p.filename} · ${p.category || "no category"}`;
    tip.hidden = false;
    // Beside the dot, on whichever side has room, never outside the frame.
    const width = tip.offsetWidth;
    const height = tip.offsetHeight;
    let left = p.sx + 12;
    if (left + width > frame.clientWidth) left = Math.max(0, p.sx - 12 - width);
    const top = Math.min(Math.max(0, p.sy - height / 2), Math.max(0, frame.clientHeight - height));
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }

  function announce(p) {
    mapPoint.textContent = p
      ? `${p.filename} — ${p.category || "no category"}. Enter searches with it.`
      : "";
  }

  function select(p) {
    current = p;
    announce(p);
    showTip(p);
    draw();
  }

  // The nearest visible dot in the arrow's direction: within 45° of it if there is one,
  // else anywhere on that side; straying sideways counts double.
  function step(dx, dy) {
    if (!visible(current)) return centreMost();
    let best = null;
    let bestScore = Infinity;
    let inCone = false;
    for (const q of points) {
      if (q === current || !visible(q)) continue;
      const vx = q.sx - current.sx;
      const vy = q.sy - current.sy;
      const along = vx * dx + vy * dy;
      if (along <= 0) continue;
      const across = Math.abs(vx * dy - vy * dx);
      const cone = across <= along;
      const score = along + 2 * across;
      if ((cone && !inCone) || (cone === inCone && score < bestScore)) {
        best = q;
        bestScore = score;
        inCone = cone;
      }
    }
    return best || current;
  }

  function centreMost() {
    const middle = canvas.clientWidth / 2;
    return nearest(middle, middle, Infinity);
  }

  const KEYS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

  canvas.addEventListener("keydown", (event) => {
    if (event.key in KEYS) {
      event.preventDefault(); // the arrows move between dots, not the page
      select(step(...KEYS[event.key]));
    } else if ((event.key === "Enter" || event.key === " ") && visible(current)) {
      event.preventDefault();
      searchWith(current);
    } else if (event.key === "Escape") {
      tip.hidden = true;
    }
  });
  canvas.addEventListener("focus", () => select(visible(current) ? current : centreMost()));
  canvas.addEventListener("blur", () => {
    if (!hover) tip.hidden = true;
  });

  function pointerAt(event) {
    const box = canvas.getBoundingClientRect();
    return nearest(event.clientX - box.left, event.clientY - box.top, HIT[event.pointerType] || 10);
  }

  canvas.addEventListener("pointermove", (event) => {
    const p = pointerAt(event);
    if (p === hover) return;
    hover = p;
    showTip(hover || (document.activeElement === canvas ? current : null));
    draw();
  });
  canvas.addEventListener("pointerleave", () => {
    hover = null;
    showTip(document.activeElement === canvas ? current : null);
    draw();
  });
  canvas.addEventListener("click", (event) => {
    const p = pointerAt(event);
    if (!p) return;
    select(p);
    searchWith(p);
  });

  // By name: the stored embedding is the query; no image is downloaded or uploaded.
  function searchWith(p) {
    const params = new URLSearchParams({ top_k: topK });
    panel.search(
      (signal) => imgsimResults.similar(similarUrl, p.filename, params, signal),
      (data) => render(data, p),
    );
  }

  function render(data, query) {
    panel.show(data.results, moreLikeThis);
    const n = data.total_results;
    summary.textContent = n
      ? `${n} image${n === 1 ? "" : "s"} similar to ${query.filename}. Click one to search with it.`
      : `No image is similar enough to ${query.filename}.`;
  }

  function moreLikeThis(result) {
    const onMap = points.find((p) => p.filename === result.filename);
    if (onMap) select(onMap);
    searchWith(onMap || result);
    summary.focus(); // the grid is about to be replaced
  }

  function buildLegend(counts) {
    const shown = new Map();
    for (const p of points) shown.set(p.category, (shown.get(p.category) || 0) + 1);
    legend.replaceChildren(...Object.keys(counts).map((category, index) => {
      colours.set(category, colourOf(index));
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.category = category;
      button.setAttribute("aria-pressed", String(!hiddenCategories.has(category)));
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colours.get(category);
      const total = counts[category];
      const onMap = shown.get(category) || 0;
      const label = category || "no category";
      button.title = `${onMap} of ${total} images of ${label} on the map; show or hide them`;
      button.append(swatch, document.createTextNode(`${label} (${total.toLocaleString()})`));
      button.addEventListener("click", () => toggle(category, button));
      item.append(button);
      return item;
    }));
  }

  function toggle(category, button) {
    if (hiddenCategories.has(category)) hiddenCategories.delete(category);
    else hiddenCategories.add(category);
    button.setAttribute("aria-pressed", String(!hiddenCategories.has(category)));
    if (!visible(current)) select(null);
    if (!visible(hover)) hover = null;
    draw();
  }

  function setMap(data) {
    const keep = current ? current.filename : null;
    points = data.points;
    byCategory = new Map();
    for (const p of points) {
      if (!byCategory.has(p.category)) byCategory.set(p.category, []);
      byCategory.get(p.category).push(p);
    }
    buildLegend(data.categories);
    current = keep ? points.find((p) => p.filename === keep) || null : null;
    hover = null;
    const method = data.method === "tsne" ? "t-SNE" : "PCA";
    const sample = data.shown < data.total_images
      ? `${data.shown.toLocaleString()} of ${data.total_images.toLocaleString()} images ` +
        "(a sample: each category keeps its share)"
      : `${data.total_images.toLocaleString()} images`;
    mapStatus.textContent = `${sample}, laid out by ${method}.` +
      (data.status === "ready" ? "" : " The collection has changed: a new map is on its way.");
    mapStatus.classList.remove("warn");
    layout();
  }

  async function load() {
    try {
      const response = await fetch(pointsUrl);
      const data = await imgsimResults.readJson(response, "Cannot load the map");
      if (response.status === 202) {
        mapStatus.textContent = "Computing the map of the collection… (once after each " +
          "change; a large collection takes a few minutes)";
        setTimeout(load, 1000 * (data.retry_after || 2));
        return;
      }
      setMap(data);
      if (data.status === "updating") setTimeout(load, 5000);
    } catch (err) {
      mapStatus.textContent = imgsimResults.errorText(err);
      mapStatus.classList.add("warn");
    }
  }

  new ResizeObserver(() => layout()).observe(canvas);
  load();
})();
