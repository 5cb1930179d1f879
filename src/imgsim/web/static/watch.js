// The search page's line about the folder watcher: whether the index follows the image folder,
// its last change and the files still waiting, read from /health (what monitors read) every few
// seconds. Shown only when the server watches (serve --watch) or `imgsim watch` runs on its
// workdir. A new change tells the page ("imgsim:index-changed") so the image counts follow too.
"use strict";

(() => {
  const healthUrl = document.body.dataset.healthUrl;
  const refreshMs = Number(document.body.dataset.watchRefreshMs) || 2000;
  const line = document.getElementById("watch");
  let lastChange; // undefined until the first answer: that one is not a change

  function span(id, text) {
    const element = document.createElement("span");
    element.id = id;
    element.textContent = text;
    return element;
  }

  function plural(n, word) {
    return `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  }

  function lastChangeText(iso) {
    if (!iso) return "no change yet";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return `last change ${iso}`;
    const today = when.toDateString() === new Date().toDateString();
    return `last change ${today ? when.toLocaleTimeString() : when.toLocaleString()}`;
  }

  function render(watcher) {
    line.hidden = false;
    line.classList.toggle("warn", !watcher.running || Boolean(watcher.error));
    line.dataset.running = String(Boolean(watcher.running));
    if (!watcher.running) {
      line.replaceChildren(span("watch-state", "Not following the folder: the watcher is not " +
        "running, so new or deleted files do not reach the index."));
      return;
    }
    const folder = span("watch-state", "Following the folder");
    folder.title = watcher.folder || "";
    const parts = [folder, span("watch-last", lastChangeText(watcher.last_change))];
    const pending = Number(watcher.pending) || 0;
    parts.push(span("watch-pending", pending ? `${plural(pending, "file")} waiting` : "up to date"));
    const unreadable = watcher.unreadable || [];
    if (unreadable.length) {
      const bad = span("watch-unreadable", `${plural(unreadable.length, "file")} unreadable`);
      bad.title = unreadable.join("\n");
      parts.push(bad);
    }
    if (watcher.error) parts.push(span("watch-error", watcher.error));
    line.replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
  }

  async function refresh() {
    if (document.hidden) return; // a background tab asks again when it is shown
    try {
      const response = await fetch(healthUrl, { cache: "no-store" });
      const watcher = (await response.json()).watcher;
      if (!watcher) {
        line.hidden = true;
        return;
      }
      render(watcher);
      if (lastChange !== undefined && watcher.last_change !== lastChange) {
        document.dispatchEvent(new CustomEvent("imgsim:index-changed"));
      }
      lastChange = watcher.last_change;
    } catch {
      if (line.hidden) return; // never shown: nothing about a watcher to correct
      line.classList.add("warn");
      line.replaceChildren(span("watch-state", "Cannot reach the server to check the watcher."));
    }
  }

  document.addEventListener("visibilitychange", refresh);
  setInterval(refresh, refreshMs);
  refresh();
})();
