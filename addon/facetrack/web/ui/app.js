// FaceTrack page: people, unknown-face inbox, cameras, alerts. Plain JavaScript, no build step.
// Every URL is relative, so the page works at the engine's root and under any Home Assistant
// ingress prefix. Text from the engine is inserted with textContent only (never as HTML).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const view = $("#view");
const toastEl = $("#toast");
const state = { persons: [], inbox: null, timer: null, features: {} };

// ---- helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

class ApiError extends Error {
  constructor(message, status, code) { super(message); this.status = status; this.code = code; }
}

async function api(path, { method = "GET", json, body } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-Requested-With"] = "facetrack";  // the server's CSRF check
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  const r = await fetch(path, { method, headers, body, credentials: "same-origin" });
  const isJson = (r.headers.get("Content-Type") || "").includes("application/json");
  const data = isJson ? await r.json() : null;
  if (!r.ok) throw new ApiError((data && data.message) || `${r.status} ${r.statusText}`, r.status, data && data.error);
  return data;
}

let toastTimer = null;
function toast(text) {
  toastEl.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toastEl.textContent = ""; }, 5000);
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
function ago(iso) {
  if (!iso) return "";
  const s = (new Date(iso).getTime() - Date.now()) / 1000;
  const steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"], [Infinity, "week"]];
  const div = { second: 1, minute: 60, hour: 3600, day: 86400, week: 604800 };
  for (const [limit, unit] of steps) if (Math.abs(s) < limit) return rtf.format(Math.round(s / div[unit]), unit);
  return "";
}
function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: new Date(iso).toLocaleString(), text: ago(iso) }) : null;
}
function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }

function heading(text, ...extra) {
  const h2 = h("h2", { tabindex: "-1", text });
  return h("div", { class: "head" }, h2, ...extra);
}

function openDialog(id) {
  const d = $(id);
  d.querySelectorAll(".error").forEach((e) => { e.textContent = ""; });
  d.showModal();
  return d;
}
document.querySelectorAll("dialog [data-close]").forEach((b) => b.addEventListener("click", () => b.closest("dialog").close()));

function confirmDialog(title, text, ok = "Remove") {
  return new Promise((resolve) => {
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = ok;
    const d = openDialog("#confirm-dialog");
    const form = $("#confirm-form");
    const done = (v) => { form.onsubmit = null; d.onclose = null; resolve(v); };
    form.onsubmit = (e) => { e.preventDefault(); d.close(); done(true); };
    d.onclose = () => done(false);
  });
}

// A one-field dialog; `action(value)` runs the request and throws ApiError to show the message.
function textDialog({ title, label, help = "", value = "", submit = "Save", action }) {
  $("#text-title").textContent = title;
  $("#text-label").textContent = label;
  $("#text-help").textContent = help;
  $("#text-submit").textContent = submit;
  const input = $("#text-input");
  input.value = value;
  const d = openDialog("#text-dialog");
  input.select();
  $("#text-form").onsubmit = async (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (!v) { $("#text-error").textContent = `${label} is required.`; input.focus(); return; }
    $("#text-submit").disabled = true;
    try { await action(v); d.close(); }
    catch (err) { $("#text-error").textContent = err.message; input.focus(); }
    finally { $("#text-submit").disabled = false; }
  };
}

function setNames(persons) {
  $("#person-names").replaceChildren(...persons.map((p) => h("option", { value: p.name })));
}

// ---- people -------------------------------------------------------------------------------

async function loadPersons() {
  state.persons = (await api("api/persons")).persons;
  setNames(state.persons);
  return state.persons;
}

// Where an embedding came from, in words: an uploaded photo, a file, or a camera's track.
function sourceText(src) {
  if (!src || src === "mqtt:image_base64") return "Photo";
  const t = src.match(/^([a-z0-9_]+)\/track\/(\d+)$/);
  if (t) return `${t[1]}, track ${t[2]}`;
  if (src.startsWith("inbox")) return "Unknown-face inbox";
  return src.replace(/^mqtt:/, "").split("/").pop();
}

const POSE_NAMES = { frontal: "frontal", three_quarter: "three-quarter", profile: "profile" };

// "Add a three-quarter and a profile photo": the head poses the person's gallery lacks, so turned
// faces can be recognised too (empty for a library enrolled before poses were recorded).
function coverageHint(p) {
  const missing = (p.missing_poses || []).map((b) => POSE_NAMES[b] || b);
  if (!missing.length) return null;
  return `Add a ${missing.join(" and a ")} photo: turned faces are recognised best when the gallery has them`;
}

function seenText(p) {
  if (!p.last_seen) return "Not seen since the engine started";
  return null;
}

async function renderPeople() {
  const persons = await loadPersons();
  const add = h("button", { class: "primary", type: "button", onclick: () => openEnrol("") }, "Add person");
  const cards = persons.map((p) =>
    h("a", { class: "card person", href: `#person/${p.person_id}`, "data-person": p.name },
      h("img", { class: "pic", src: p.thumbnail_url, alt: "", loading: "lazy" }),
      h("div", { class: "body" },
        h("div", { class: "title", text: p.name }),
        h("div", { class: "meta", text: plural(p.embeddings, "face", "faces") }),
        h("div", { class: "meta" }, p.last_seen ? ["Seen ", timeEl(p.last_seen), ` on ${p.last_camera}`] : seenText(p)))));
  return [
    heading("People", add),
    persons.length
      ? h("div", { class: "grid", role: "list", "aria-label": "People" }, cards.map((c) => h("div", { role: "listitem" }, c)))
      : h("p", { class: "empty" }, "No one enrolled yet. Add a person with a few photos, or drop photos here."),
  ];
}

async function renderPerson(pid) {
  let p;
  try { p = await api(`api/persons/${pid}`); }
  catch (err) {
    if (err.status === 404) return [heading("Not found"), h("p", {}, "This person is not in the face library. ", h("a", { href: "#people" }, "Back to people"))];
    throw err;
  }
  const rename = () => textDialog({
    title: `Rename ${p.name}`, label: "New name", value: p.name, submit: "Rename",
    action: async (name) => { await api(`api/persons/${pid}/rename`, { method: "POST", json: { name } }); toast(`Renamed to ${name}`); route(); },
  });
  const forget = async () => {
    if (!(await confirmDialog(`Forget ${p.name}?`, `All ${plural(p.embeddings, "face", "faces")} of ${p.name} are removed from the face library. This cannot be undone.`, "Forget"))) return;
    try { await api(`api/persons/${pid}`, { method: "DELETE" }); toast(`${p.name} forgotten`); location.hash = "#people"; }
    catch (err) { toast(err.message); }
  };
  const faces = p.embedding_list.map((e, i) => {
    const label = `face ${i + 1}`;
    const remove = async () => {
      if (!(await confirmDialog(`Remove ${label} of ${p.name}?`, "Use this for a face that is not this person. The other faces stay."))) return;
      try {
        const r = await api(`api/persons/${pid}/embeddings/${e.embedding_id}`, { method: "DELETE" });
        toast(r.person_removed ? `${p.name} had no other face and was removed` : `Face removed; ${plural(r.embeddings, "face", "faces")} left`);
        location.hash = r.person_removed ? "#people" : location.hash;
        route();
      } catch (err) { toast(err.message); }
    };
    return h("li", { class: "face", "data-embedding": e.embedding_id },
      h("img", { src: e.crop_url, alt: `${p.name}, ${label}`, loading: "lazy" }),
      h("div", { class: "meta", title: e.source, text: `${sourceText(e.source)} · ${ago(e.created_at)}` }),
      h("button", { class: "icon danger", type: "button", onclick: remove, "aria-label": `Remove ${label}` }, "Remove"));
  });
  const seen = p.last_seen ? h("p", { class: "muted" }, "Last seen ", timeEl(p.last_seen), ` on ${p.last_camera}`) : h("p", { class: "muted", text: seenText(p) });
  return [
    h("p", {}, h("a", { class: "back", href: "#people" }, "← People")),
    heading(p.name,
      h("button", { type: "button", onclick: () => openEnrol(p.name) }, "Add photos"),
      h("button", { type: "button", onclick: rename }, "Rename"),
      h("button", { type: "button", class: "danger", onclick: forget }, "Forget")),
    seen,
    coverageHint(p) ? h("p", { class: "hint", "data-coverage": (p.missing_poses || []).join(" "), text: coverageHint(p) }) : null,
    h("h3", { text: plural(p.embeddings, "face", "faces") }),
    h("ul", { class: "faces" }, faces),
  ];
}

// ---- enrolment (upload or drag and drop) ----------------------------------------------------

let chosen = [];
const STATUS_TEXT = {
  enrolled: "Enrolled", no_face: "No face found", several_faces: "Several faces", not_an_image: "Not an image",
  unusable: "Face not usable", too_large: "Too large", error: "Failed",
};

function showFiles(results) {
  const list = $("#enrol-files-list");
  list.replaceChildren(...chosen.map((f, i) => {
    const r = results && results[i];
    const url = URL.createObjectURL(f);
    return h("li", { "data-file": f.name },
      h("img", { src: url, alt: "", onload: () => URL.revokeObjectURL(url) }),
      h("span", { class: "name", text: f.name }),
      r ? h("span", { class: `status ${r.status}`, title: r.message || "", text: STATUS_TEXT[r.status] || r.status }) : null);
  }));
}

function addFiles(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|bmp)$/i.test(f.name));
  chosen = chosen.concat(images).slice(0, 20);
  showFiles(null);
}

function openEnrol(name, files = []) {
  chosen = [];
  $("#enrol-name").value = name;
  $("#enrol-title").textContent = name ? `Add photos of ${name}` : "Add a person";
  addFiles(files);
  openDialog("#enrol-dialog");
  (name ? $("#choose-photos") : $("#enrol-name")).focus();
}

$("#choose-photos").addEventListener("click", () => $("#enrol-files").click());
$("#enrol-files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
const drop = $("#drop-zone");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles(e.dataTransfer.files); });
// Photos dropped anywhere on the People pages open the enrolment dialog.
document.addEventListener("dragover", (e) => { if (e.dataTransfer && [...e.dataTransfer.types].includes("Files")) e.preventDefault(); });
document.addEventListener("drop", (e) => {
  if (!e.dataTransfer || !e.dataTransfer.files.length || $("#enrol-dialog").open) return;
  e.preventDefault();
  const m = location.hash.match(/^#person\/([0-9a-f]{32})$/);
  const p = m && state.persons.find((x) => x.person_id === m[1]);
  openEnrol(p ? p.name : "", e.dataTransfer.files);
});

$("#enrol-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("#enrol-name").value.trim();
  const err = $("#enrol-error");
  err.textContent = "";
  if (!name) { err.textContent = "Give the person's name."; $("#enrol-name").focus(); return; }
  if (!chosen.length) { err.textContent = "Choose at least one photo."; $("#choose-photos").focus(); return; }
  const form = new FormData();
  form.append("name", name);
  for (const f of chosen) form.append("photo", f, f.name);
  const btn = $("#enrol-submit");
  btn.disabled = true;
  btn.textContent = "Enrolling…";
  try {
    const r = await api("api/enroll", { method: "POST", body: form });
    showFiles(r.results);
    const n = r.results.filter((x) => x.status === "enrolled").length;
    const msg = `${plural(n, "photo", "photos")} of ${chosen.length} enrolled for ${name}`;
    err.textContent = n === chosen.length ? "" : "Some photos were not used: see each photo's result.";
    toast(msg);
    chosen = [];
    if (location.hash === "" || location.hash.startsWith("#people") || location.hash.startsWith("#person")) route();
  } catch (ex) { err.textContent = ex.message; }
  finally { btn.disabled = false; btn.textContent = "Enrol"; }
});

// ---- unknown-face inbox ---------------------------------------------------------------------

async function loadInbox() {
  state.inbox = await api("api/inbox");
  const badge = $("#inbox-count");
  const pending = state.inbox.available ? (state.inbox.pending ?? state.inbox.groups.filter((g) => g.status === "pending").length) : 0;
  badge.hidden = !pending;
  badge.textContent = pending || "";
  badge.setAttribute("aria-label", `${pending} pending`);
  return state.inbox;
}

function groupLabel(i) { return `Unknown person ${i + 1}`; }

async function renderInbox() {
  const [inbox] = await Promise.all([loadInbox(), loadPersons()]);
  if (!inbox.available) return [heading("Inbox"), h("p", { class: "empty" }, "This engine has no unknown-face inbox.")];
  const groups = inbox.groups;
  const act = async (g, action, json, done) => {
    try { await api(`api/inbox/${g.group_id}/${action}`, { method: "POST", json: json || {} }); toast(done); route(); }
    catch (err) { toast(err.message); throw err; }
  };
  const cards = groups.map((g, i) => {
    const label = groupLabel(i);
    const name = () => textDialog({
      title: `Name ${label}`, label: "Name", submit: "Name",
      help: g.nearest_person ? `Closest enrolled person: ${g.nearest_person} (similarity ${Number(g.nearest_similarity).toFixed(2)}). Give an existing name to add these faces to that person.` : "A new name creates a person; an existing name adds these faces to that person.",
      action: async (v) => { await api(`api/inbox/${g.group_id}/name`, { method: "POST", json: { name: v } }); toast(`${label} named ${v}`); route(); },
    });
    const merge = () => {
      const others = groups.map((o, j) => [o, j]).filter(([o]) => o.group_id !== g.group_id);
      $("#select-title").textContent = `Merge ${label}`;
      $("#select-label").textContent = "Into (the same person)";
      $("#select-input").replaceChildren(...others.map(([o, j]) => h("option", { value: o.group_id, text: `${groupLabel(j)} · ${plural(o.count, "face", "faces")}` })));
      const d = openDialog("#select-dialog");
      $("#select-form").onsubmit = async (e) => {
        e.preventDefault();
        try { await api(`api/inbox/${g.group_id}/merge`, { method: "POST", json: { into_group_id: $("#select-input").value } }); d.close(); toast("Groups merged"); route(); }
        catch (err) { $("#select-error").textContent = err.message; }
      };
    };
    const discard = async () => {
      if (await confirmDialog(`Discard ${label}?`, "Its faces are forgotten. If this person comes back, a new group forms.", "Discard")) act(g, "discard", null, `${label} discarded`).catch(() => {});
    };
    const ignored = g.status === "ignored";
    const crops = (g.crop_urls || []).slice(0, 4);
    return h("li", { class: "card group", "data-group": g.group_id },
      h("div", { class: "crops" }, crops.map((u, k) => h("img", { src: u, alt: k === 0 ? `${label}, best face` : "", loading: "lazy" }))),
      h("div", { class: "body" },
        h("div", { class: "title" }, `${label} `, ignored ? h("span", { class: "badge ignored", text: "ignored" }) : null),
        h("div", { class: "meta", text: `${plural(g.count, "face", "faces")} · ${plural(g.tracks, "sighting", "sightings")} · ${(g.cameras || []).join(", ")}` }),
        h("div", { class: "meta" }, "Last seen ", timeEl(g.last_seen)),
        // A hint only when it means something: from the 1:1 equal-error point (cosine 0.31, docs/thresholds.md) up.
        g.nearest_person && g.nearest_similarity >= 0.31
          ? h("div", { class: "meta", text: `Looks a little like ${g.nearest_person} (similarity ${g.nearest_similarity.toFixed(2)})` })
          : null,
        h("div", { class: "actions" },
          h("button", { type: "button", class: "primary icon", onclick: name, "aria-label": `Name ${label}` }, "Name…"),
          groups.length > 1 ? h("button", { type: "button", class: "icon", onclick: merge, "aria-label": `Merge ${label}` }, "Merge…") : null,
          h("button", { type: "button", class: "icon", "aria-label": `${ignored ? "Stop ignoring" : "Ignore"} ${label}`,
            onclick: () => act(g, ignored ? "unignore" : "ignore", null, ignored ? `${label} back in the inbox` : `${label} ignored: no more alerts`).catch(() => {}) },
          ignored ? "Unignore" : "Ignore"),
          h("button", { type: "button", class: "icon danger", onclick: discard, "aria-label": `Discard ${label}` }, "Discard"))));
  });
  return [
    heading("Unknown faces"),
    h("p", { class: "muted" }, "Faces the cameras saw but did not recognise, grouped by person. Name a group to enrol it; ignore the ones that should never alert (the postman)."),
    groups.length ? h("ul", { class: "grid groups" }, cards) : h("p", { class: "empty" }, "The inbox is empty."),
  ];
}

// ---- cameras ------------------------------------------------------------------------------

function openCamera(c) {
  $("#media-title").textContent = `${c.name} (live)`;
  const img = h("img", { src: c.stream_url, alt: `Live annotated picture of ${c.name}`, id: "live-stream" });
  $("#media-body").replaceChildren(img);
  $("#media-caption").textContent = `${c.state} · ${c.fps} frames/s · ${plural(c.faces, "face", "faces")} in view`;
  const d = openDialog("#media-dialog");
  d.onclose = () => { img.removeAttribute("src"); $("#media-body").replaceChildren(); d.onclose = null; };  // stop the stream
}

async function renderCameras() {
  const { cameras } = await api("api/cameras");
  const tiles = cameras.map((c) =>
    h("li", { class: "card cam", "data-camera": c.name },
      h("button", { class: "view", type: "button", onclick: () => openCamera(c), "aria-label": `Watch ${c.name} live` },
        h("img", { class: "frame", src: `${c.snapshot_url}?t=${Date.now()}`, alt: "", onerror: (e) => { e.target.style.visibility = "hidden"; } }),
        h("span", { class: "live", "aria-hidden": "true" }, "▶ Live")),
      h("div", { class: "body" },
        h("div", { class: "title", text: c.name }),
        h("div", { class: "meta" }, h("span", { class: `badge ${c.state}`, text: c.state }), ` ${c.fps} frames/s · ${plural(c.faces, "face", "faces")}`),
        c.error ? h("div", { class: "meta error", text: c.error }) : null)));
  return [heading("Cameras"), cameras.length ? h("ul", { class: "grid cams" }, tiles) : h("p", { class: "empty" }, "No camera configured.")];
}

// ---- alerts -------------------------------------------------------------------------------

function playClip(a) {
  $("#media-title").textContent = `${a.person || "Unknown face"} on ${a.camera}`;
  const video = h("video", { src: a.annotated_clip_url || a.clip_url, controls: true, autoplay: true, muted: true, playsinline: true, id: "clip-player", "aria-label": "Alert clip" });
  video.muted = true;
  $("#media-body").replaceChildren(video);
  $("#media-caption").textContent = new Date(a.time).toLocaleString();
  const d = openDialog("#media-dialog");
  d.onclose = () => { video.pause(); video.removeAttribute("src"); video.load(); $("#media-body").replaceChildren(); d.onclose = null; };
}

async function renderAlerts() {
  const { alerts } = await api("api/alerts");
  const items = alerts.map((a) => {
    const who = a.person || "Unknown face";
    return h("li", { class: "card alert", "data-alert": a.alert_id },
      a.snapshot_url ? h("img", { src: a.snapshot_url, alt: `${who} on ${a.camera}`, loading: "lazy" }) : h("div", { class: "noimg" }),
      h("div", { class: "body" },
        h("div", { class: "title", text: who }),
        h("div", { class: "meta" }, `${a.camera} · `, timeEl(a.time), a.similarity !== null && a.similarity !== undefined ? ` · similarity ${a.similarity}` : "")),
      a.clip_url
        ? h("button", { class: "play", type: "button", onclick: () => playClip(a), "aria-label": `Play the clip of ${who} on ${a.camera}` }, "▶ Clip")
        : h("span", { class: "muted small", text: "Clip not ready" }));
  });
  return [heading("Alerts"), items.length ? h("ul", { class: "alerts" }, items) : h("p", { class: "empty" }, "No alert since the engine started.")];
}

// ---- routing ------------------------------------------------------------------------------

const ROUTES = [
  [/^#?(people)?$/, "people", () => renderPeople(), 15000],
  [/^#person\/([0-9a-f]{32})$/, "people", (m) => renderPerson(m[1]), 0],
  [/^#inbox$/, "inbox", () => renderInbox(), 10000],
  [/^#cameras$/, "cameras", () => renderCameras(), 10000],
  [/^#alerts$/, "alerts", () => renderAlerts(), 10000],
];
let routing = 0;

// A periodic refresh rebuilds the view: keep keyboard focus on the same control (found again by
// its card's data-* key and its name), so refreshing never throws a keyboard user back to the top.
function focusKey(el) {
  if (!el || el === view || !view.contains(el)) return null;
  const holder = el.closest("[data-person],[data-group],[data-alert],[data-camera],[data-embedding]");
  const attr = holder && [...holder.attributes].find((a) => a.name.startsWith("data-"));
  const name = (e) => e.getAttribute("aria-label") || e.textContent.trim();
  return { scope: attr ? `[${attr.name}="${CSS.escape(attr.value)}"]` : null, tag: el.tagName, name: name(el), nameOf: name };
}
function restoreFocus(key) {
  if (!key) return;
  const scope = key.scope ? view.querySelector(key.scope) : view;
  if (!scope) return;
  const el = [scope, ...scope.querySelectorAll(key.tag)].find((e) => e.tagName === key.tag && key.nameOf(e) === key.name);
  if (el) el.focus({ preventScroll: true });
}

async function route(focus = false) {
  const hash = location.hash;
  const [re, tab, render, refresh] = ROUTES.find(([r]) => r.test(hash)) || ROUTES[0];
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.view === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  clearTimeout(state.timer);
  const ticket = ++routing;
  let content;
  try { content = await render(hash.match(re) || []); }
  catch (err) { content = [heading("Something went wrong"), h("p", { class: "error", role: "alert", text: err.message })]; }
  if (ticket !== routing) return;  // a newer navigation won
  const scroll = window.scrollY;
  const focused = focus ? null : focusKey(document.activeElement);
  view.replaceChildren(...[content].flat());
  restoreFocus(focused);
  if (state.features.inbox && tab !== "inbox") loadInbox().catch(() => {});  // the tab's badge
  document.title = `${$("h2", view)?.textContent || "FaceTrack"} · FaceTrack`;
  if (focus) $("h2", view)?.focus(); else window.scrollTo(0, scroll);
  view.setAttribute("aria-busy", "false");
  if (refresh) state.timer = setTimeout(() => { if (!document.querySelector("dialog[open]")) route(); else state.timer = setTimeout(() => route(), refresh); }, refresh);
}

window.addEventListener("hashchange", () => route(true));
(async () => {
  try { state.features = (await api("api/info")).features; } catch { /* shown by the view */ }
  if (!state.features.inbox) $('nav a[data-view="inbox"]').hidden = true;
  route();
})();
