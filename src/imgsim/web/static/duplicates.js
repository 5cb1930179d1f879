// The duplicates review page: GET /duplicates one page at a time (sorted by size or date), each
// group side by side with the suggested keeper marked; a person may choose another keeper, then
// with the admin token POST /duplicates/keep ("keep this, trash the rest"), or mark the group
// "not duplicates"; both can be undone (POST /duplicates/restore, not-duplicates with undo).
// Names from the server are only ever set with textContent/attributes, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const data = document.body.dataset;
  const token = $("token");
  const trashAll = $("trash-all");
  const loading = $("loading");
  const errorBox = $("error");
  const summary = $("summary");
  const list = $("groups");
  const sortSelect = $("sort");
  const prev = $("prev-page");
  const next = $("next-page");
  const pageStatus = $("page-status");
  const undoDismiss = $("undo-dismiss");
  const undoTrash = $("undo-trash");
  const SAME = "same picture";

  const query = new URLSearchParams(location.search); // per_page and sort may come from the URL
  let view = { groups: [], page: 1, pages: 1, first: 1, total_groups: 0, extras: 0 };
  let page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const chosen = new Map(); // group's suggested keeper -> the member a person chose to keep
  const gone = new Set(); // names trashed here: hidden while the server finds the groups again
  const dismissed = new Set(); // suggested keepers of groups marked "not duplicates" meanwhile
  let lastDismissed = null; // the names of the group last marked "not duplicates", for Undo
  let lastTrashed = null; // {ids, names} of the last move to the trash, for Undo
  let trashed = 0;
  let busy = false;
  let reloadTimer = null;
  if (["size", "date"].includes(query.get("sort"))) sortSelect.value = query.get("sort");

  const showError = (message) => imgsimResults.showError(errorBox, message);

  function sizeText(bytes) {
    if (bytes >= 1048576) return `${+(bytes / 1048576).toFixed(1)} MB`;
    if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KB`;
    return `${bytes} bytes`;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function keeperOf(group) {
    // A choice counts while its image is still in the group (found again after a change).
    const mine = chosen.get(group.keep);
    return mine && group.members.some((m) => m.name === mine) ? mine : group.keep;
  }

  function likeness(member, group) {
    if (member.name === group.keep) return `suggested: ${group.reason}`;
    if (member.exact) return "same bytes";
    const parts = [member.tier];
    if (member.view) parts.push(member.view);
    if (member.hash_distance !== null) parts.push(`${member.hash_distance} of 64 bits differ`);
    if (member.similarity !== null) parts.push(`cosine ${member.similarity.toFixed(3)}`);
    return parts.join(", ");
  }

  function dateText(member) {
    if (member.captured == null) return ""; // null, or absent from groups found before dates
    const day = new Date(member.captured * 1000).toISOString().slice(0, 10);
    return member.captured_from === "exif" ? `, taken ${day}` : `, ${day}`;
  }

  function memberItem(member, group) {
    const keeps = member.name === keeperOf(group);
    const item = document.createElement("li");
    item.className = keeps ? "member keep" : "member extra";
    item.dataset.name = member.name;
    const img = document.createElement("img");
    img.src = imgsimResults.thumbnail(member.url); // the original only through its link
    img.alt = member.name;
    img.loading = "lazy";
    img.title = keeps ? "Kept" : "Click to keep this one instead";
    if (!keeps) img.addEventListener("click", () => chooseKeeper(group, member.name));
    const meta = document.createElement("div");
    meta.className = "meta";
    const role = document.createElement("span");
    role.className = "role";
    const mine = keeps && member.name !== group.keep;
    role.textContent = keeps ? (mine ? "Keep (your choice)" : "Keep") : "Extra";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = member.name;
    const facts = document.createElement("span");
    facts.className = "facts";
    facts.textContent = `${member.width}×${member.height}, ${sizeText(member.size)}` +
      `${member.format ? `, ${member.format}` : ""}${dateText(member)}`;
    const how = document.createElement("span");
    how.textContent = likeness(member, group);
    meta.append(role, name, facts, how);
    if (!keeps) {
      const choose = document.createElement("button");
      choose.type = "button";
      choose.className = "button choose-keep";
      choose.textContent = "Keep this one";
      choose.setAttribute("aria-label", `Keep ${member.name} instead`);
      choose.addEventListener("click", () => chooseKeeper(group, member.name));
      meta.append(choose);
    }
    meta.append(imgsimResults.originalLink(member.url, member.name));
    item.append(img, meta);
    return item;
  }

  function groupItem(group, number) {
    const item = document.createElement("li");
    item.className = "group";
    const head = document.createElement("div");
    head.className = "group-head";
    const title = document.createElement("h3");
    title.className = "group-title";
    title.id = `group-${number}`;
    title.tabIndex = -1;
    title.textContent =
      `Group ${number}: ${group.tier}, ${plural(group.members.length, "image")}, ` +
      `score ${group.score.toFixed(3)}`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button danger trash-group";
    button.textContent =
      `Keep this, move the other ${plural(group.members.length - 1, "image")} to the trash`;
    button.setAttribute("aria-describedby", title.id);
    button.addEventListener("click", () => keepOne(group));
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "button not-duplicates";
    dismiss.textContent = "Not duplicates";
    dismiss.setAttribute("aria-describedby", title.id);
    dismiss.addEventListener("click", () => markNotDuplicates(group));
    head.append(title, button, dismiss);
    const members = document.createElement("ul");
    members.className = "members";
    members.setAttribute("aria-label", `Images of group ${number}`);
    for (const member of group.members) members.append(memberItem(member, group));
    item.append(head, members);
    item.dataset.keep = group.keep;
    return item;
  }

  function shown() {
    // While the server finds the groups again, its answer is of the collection before a change.
    return view.groups.filter(
      (g) => !dismissed.has(g.keep) && !g.members.some((m) => gone.has(m.name)),
    );
  }

  // Where the focus was in the list (a group and which of its controls), to put it back after
  // the list is drawn again: keyboard users stay where they were when the groups reload.
  function focusPlace() {
    const active = document.activeElement;
    if (!active || !list.contains(active)) return null;
    const group = active.closest(".group");
    const member = active.closest(".member");
    return {
      keep: group && group.dataset.keep,
      name: member && member.dataset.name,
      cls: active.classList[active.classList.length - 1],
    };
  }

  function refocus(place) {
    if (!place || !place.keep) return;
    const group = [...list.querySelectorAll(".group")].find((g) => g.dataset.keep === place.keep);
    if (!group) return;
    const scope = place.name
      ? [...group.querySelectorAll(".member")].find((m) => m.dataset.name === place.name)
      : group;
    const target = scope && scope.querySelector(`.${place.cls}`);
    if (target) target.focus();
  }

  function render() {
    const place = focusPlace();
    const groups = shown();
    const hidden = view.groups.filter((g) => !groups.includes(g));
    const total = view.total_groups - hidden.length;
    const extras = view.extras - hidden.reduce((n, g) => n + g.extras.length, 0);
    list.start = view.first; // the list numbers its groups on from the pages before
    list.replaceChildren(...groups.map((g, i) => groupItem(g, view.first + i)));
    const done = trashed ? ` Moved ${plural(trashed, "file")} to the trash.` : "";
    summary.textContent = total > 0
      ? `${plural(total, "group")} of duplicates, ${plural(extras, "extra image")}.${done}`
      : `No duplicates.${done}`;
    pageStatus.textContent = `Page ${view.page} of ${view.pages}`;
    updateButtons();
    refocus(place);
  }

  function untouched() {
    // "Move all" takes the suggested keepers only: a group where a person chose is left to them.
    return shown().filter((g) => g.tier === SAME && !chosen.has(g.keep));
  }

  function updateButtons() {
    const off = busy || !token.value.trim();
    for (const b of list.querySelectorAll(".trash-group, .not-duplicates")) b.disabled = off;
    for (const b of list.querySelectorAll(".choose-keep")) b.disabled = busy;
    const same = untouched();
    trashAll.textContent = `Move the ${plural(same.flatMap((g) => g.extras).length, "extra")} ` +
      `of the ${plural(same.length, "same-picture group")} on this page to the trash`;
    trashAll.disabled = off || same.length === 0;
    prev.disabled = busy || view.page <= 1;
    next.disabled = busy || view.page >= view.pages;
    undoDismiss.disabled = off;
    undoTrash.disabled = off;
  }

  function chooseKeeper(group, name) {
    if (busy) return;
    if (name === group.keep) chosen.delete(group.keep);
    else chosen.set(group.keep, name);
    render();
    const kept = list.querySelector(`.group[data-keep="${CSS.escape(group.keep)}"] .trash-group`);
    if (kept) kept.focus(); // the next step: the group's one action
  }

  async function answer(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const why = body && body.error ? body.error : `the server answered ${response.status}`;
      throw new Error(response.status === 401 ? `The token was refused: ${why}` : why);
    }
    return body;
  }

  function groupsUrl() {
    const params = new URLSearchParams({ page: String(page), sort: sortSelect.value });
    if (query.get("per_page")) params.set("per_page", query.get("per_page"));
    return `${data.groupsUrl}?${params}`;
  }

  // The server finds the groups in the background: 202 while it finds the first ones, and
  // "updating" while it finds new ones after a change (the groups shown are the earlier ones).
  async function load() {
    clearTimeout(reloadTimer);
    loading.hidden = false;
    showError("");
    try {
      const response = await fetch(groupsUrl(), { headers: { Accept: "application/json" } });
      if (response.status === 202) {
        const body = await response.json();
        reloadTimer = setTimeout(load, 1000 * (body.retry_after || 2));
        return;
      }
      const body = await answer(response);
      if (body.groups.length === 0 && body.page > 1 && body.page > body.pages) {
        page = body.pages; // the last page emptied: show the one before it
        return load();
      }
      view = body;
      list.dataset.status = body.status; // ready, updating or stale: what the groups are of
      if (body.status !== "updating") {
        gone.clear(); // the server's groups now know what moved and what was dismissed
        dismissed.clear();
      }
      render();
      loading.hidden = body.status !== "updating";
      if (body.status === "updating") reloadTimer = setTimeout(load, 1000);
    } catch (err) {
      loading.hidden = true;
      showError(`Could not find duplicates: ${imgsimResults.errorText(err)}`);
    }
  }

  async function post(url, body) {
    return answer(
      await fetch(url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Authorization: `Bearer ${token.value.trim()}`,
        },
        body: JSON.stringify(body),
      }),
    );
  }

  // One request at a time; a failure says that nothing changed and leaves the page as it was.
  async function act(work, failure) {
    if (busy) return;
    busy = true;
    list.dataset.status = "changing"; // until the server's groups know of the change
    updateButtons();
    showError("");
    try {
      await work();
    } catch (err) {
      showError(`${failure}: ${imgsimResults.errorText(err)}`);
    } finally {
      busy = false;
      render();
    }
  }

  function remember(body) {
    body.trashed.forEach((n) => gone.add(n));
    trashed += body.trashed.length;
    lastTrashed = { ids: body.ids, names: body.trashed };
    undoTrash.textContent = `Undo: bring back ${plural(body.trashed.length, "file")}`;
    undoTrash.hidden = false;
    reloadSoon();
  }

  function focusAfter(position) {
    // Keyboard users continue where they were: the next group, else the summary.
    const titles = list.querySelectorAll(".group-title");
    (titles[Math.min(position, titles.length - 1)] || summary).focus();
  }

  // The group keeps its chosen (else suggested) image; the others go to the trash, undoable.
  async function keepOne(group) {
    const position = shown().indexOf(group);
    const names = group.members.map((m) => m.name);
    await act(async () => {
      remember(await post(data.keepUrl, { keep: keeperOf(group), names }));
    }, "Nothing was moved");
    focusAfter(position);
  }

  async function trashSame() {
    const names = untouched().flatMap((g) => g.extras);
    if (!names.length) return;
    await act(async () => {
      remember(await post(data.trashUrl, { names }));
    }, "Nothing was moved");
    focusAfter(0);
  }

  async function undoTrashing() {
    if (!lastTrashed) return;
    const { ids, names } = lastTrashed;
    await act(async () => {
      const body = await post(data.restoreUrl, { ids });
      lastTrashed = null;
      undoTrash.hidden = true;
      names.forEach((n) => gone.delete(n));
      trashed -= body.restored.length;
      reloadSoon();
    }, "Nothing was brought back");
    summary.focus();
  }

  // "Not duplicates" is remembered by the server (not_duplicates.json): the group goes, and
  // Undo forgets it again; the groups are then found again in the background.
  async function markNotDuplicates(group, undo = false) {
    const names = undo ? lastDismissed : [group.keep, ...group.extras];
    if (!names) return;
    await act(async () => {
      await post(data.dismissUrl, { names, undo });
      if (undo) dismissed.delete(names[0]);
      else dismissed.add(group.keep);
      lastDismissed = undo ? null : names;
      undoDismiss.hidden = !lastDismissed;
      reloadSoon();
    }, "Nothing was changed");
    (lastDismissed ? undoDismiss : summary).focus();
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 300);
  }

  function goTo(number) {
    page = number;
    load().then(() => {
      const title = list.querySelector(".group-title");
      (title || summary).focus();
    });
  }

  undoDismiss.addEventListener("click", () => markNotDuplicates(null, true));
  undoTrash.addEventListener("click", undoTrashing);
  token.addEventListener("input", updateButtons);
  $("token-form").addEventListener("submit", (event) => event.preventDefault());
  trashAll.addEventListener("click", trashSame);
  prev.addEventListener("click", () => goTo(view.page - 1));
  next.addEventListener("click", () => goTo(view.page + 1));
  sortSelect.addEventListener("change", () => goTo(1));
  load();
})();
