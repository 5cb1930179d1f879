// What the pages share: a result card ("more like this" on click), its picture and a text-only
// span.
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

  return { THUMBNAIL, span, thumbnail, originalLink, cardImage, resultItem };
})();
