// The duplicates page: GET /duplicates, show each group side by side, and with the admin token
// POST /duplicates/trash to move a group's extras to the trash, or every "same picture"
// group's at once: a near duplicate (re-saved, cropped, turned...) is a choice made per group.
// Names from the server are only ever set with textContent/attributes, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const groupsUrl = document.body.dataset.groupsUrl;
  const trashUrl = document.body.dataset.trashUrl;
  const dismissUrl = document.body.dataset.dismissUrl;
  const token = $("token");
  const trashAll = $("trash-all");
  const loading = $("loading");
  const errorBox = $("error");
  const summary = $("summary");
  const list = $("groups");

  let groups = []; // [{keep, extras, score, tier, members}], as GET /duplicates sends them
  let lastDismissed = null; // the names of the group last marked "not duplicates", for Undo
  const SAME = "same picture";
  let trashed = 0;
  let busy = false;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function sizeText(bytes) {
    if (bytes >= 1048576) return `${+(bytes / 1048576).toFixed(1)} MB`;
    if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KB`;
    return `${bytes} bytes`;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function likeness(member, group) {
    if (member.keep) return `kept: ${group.reason}`;
    if (member.exact) return "same bytes";
    const parts = [member.tier];
    if (member.view) parts.push(member.view);
    if (member.hash_distance !== null) parts.push(`${member.hash_distance} of 64 bits differ`);
    if (member.similarity !== null) parts.push(`cosine ${member.similarity.toFixed(3)}`);
    return parts.join(", ");
  }

  function dateText(seconds) {
    return seconds === null ? "" : `, ${new Date(seconds * 1000).toISOString().slice(0, 10)}`;
  }

  function memberItem(member, group) {
    const item = document.createElement("li");
    item.className = member.keep ? "member keep" : "member extra";
    const img = document.createElement("img");
    img.src = imgsimResults.thumbnail(member.url); // the original only through its link
    img.alt = member.name;
    img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = member.keep ? "Keep" : "Extra";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = member.name;
    const facts = document.createElement("span");
    facts.textContent = `${member.width}×${member.height}, ${sizeText(member.size)}` +
      `${member.format ? `, ${member.format}` : ""}${dateText(member.modified)}`;
    const how = document.createElement("span");
    how.textContent = likeness(member, group);
    meta.append(role, name, facts, how, imgsimResults.originalLink(member.url, member.name));
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
    button.textContent = `Move ${plural(group.extras.length, "extra")} to the trash`;
    button.setAttribute("aria-describedby", title.id);
    button.disabled = !token.value.trim();
    button.addEventListener("click", () => moveToTrash([group]));
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

  function render() {
    list.replaceChildren(...groups.map((g, i) => groupItem(g, i + 1)));
    const extras = groups.reduce((n, g) => n + g.extras.length, 0);
    const done = trashed ? ` Moved ${plural(trashed, "file")} to the trash.` : "";
    summary.textContent = groups.length
      ? `${plural(groups.length, "group")} of duplicates, ${plural(extras, "extra image")}.${done}`
      : `No duplicates.${done}`;
    updateButtons();
  }

  function updateButtons() {
    const off = busy || !token.value.trim();
    for (const b of list.querySelectorAll("button")) b.disabled = off;
    const same = samePicture();
    trashAll.textContent = `Move the ${plural(same.flatMap((g) => g.extras).length, "extra")} ` +
      `of the ${plural(same.length, "same-picture group")} to the trash`;
    trashAll.disabled = off || same.length === 0;
  }

  function samePicture() {
    return groups.filter((g) => g.tier === SAME);
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

  // The server finds the groups in the background: 202 while it finds the first ones, and
  // "updating" while it finds new ones after a change (the groups shown are the earlier ones).
  async function load() {
    loading.hidden = false;
    showError("");
    try {
      const response = await fetch(groupsUrl, { headers: { Accept: "application/json" } });
      if (response.status === 202) {
        const body = await response.json();
        setTimeout(load, 1000 * (body.retry_after || 2));
        return;
      }
      const body = await answer(response);
      groups = body.groups;
      render();
      if (body.status === "updating") setTimeout(load, 2000);
      loading.hidden = true;
    } catch (err) {
      loading.hidden = true;
      showError(`Could not find duplicates: ${err.message}`);
    }
  }

  async function moveToTrash(chosen) {
    const names = chosen.flatMap((g) => g.extras);
    if (!names.length || busy) return;
    busy = true;
    updateButtons();
    showError("");
    const position = groups.indexOf(chosen[0]);
    try {
      const body = await answer(
        await fetch(trashUrl, {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            Authorization: `Bearer ${token.value.trim()}`,
          },
          body: JSON.stringify({ names }),
        }),
      );
      trashed += body.trashed.length;
      groups = groups.filter((g) => !chosen.includes(g));
      busy = false;
      render();
      // Keyboard users continue where they were: the next group, else the summary.
      const next = list.querySelectorAll(".group-title")[Math.min(position, groups.length - 1)];
      (groups.length && next ? next : summary).focus();
    } catch (err) {
      busy = false;
      updateButtons();
      showError(`Nothing was moved: ${err.message}`);
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

  // "Not duplicates" is remembered by the server (not_duplicates.json): the group goes, and
  // Undo forgets it again; the groups are then found again in the background.
  async function markNotDuplicates(group, undo = false) {
    const names = undo ? lastDismissed : [group.keep, ...group.extras];
    if (!names || busy) return;
    busy = true;
    updateButtons();
    showError("");
    try {
      await post(dismissUrl, { names, undo });
      busy = false;
      lastDismissed = undo ? null : names;
      if (undo) {
        load();
      } else {
        groups = groups.filter((g) => g !== group);
        render();
      }
      undoButton.hidden = !lastDismissed;
      (lastDismissed ? undoButton : summary).focus();
    } catch (err) {
      busy = false;
      updateButtons();
      showError(`Nothing was changed: ${err.message}`);
    }
  }

  const undoButton = $("undo-dismiss");
  undoButton.addEventListener("click", () => markNotDuplicates(null, true));
  token.addEventListener("input", updateButtons);
  $("token-form").addEventListener("submit", (event) => event.preventDefault());
  trashAll.addEventListener("click", () => moveToTrash(samePicture()));
  load();
})();
