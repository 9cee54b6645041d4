// clipforge search page: plain JavaScript, no build step, no external requests.
// The URL holds the search (?q=TEXT or ?like=ID, plus dedup=1 / safe=0), so a search can be shared or bookmarked.
"use strict";

const $ = (id) => document.getElementById(id);
const grid = $("grid"), message = $("message"), drop = $("drop"), fileInput = $("file"), more = $("load-more");
const DEDUP = 0.95;  // cosine threshold of "hide near-duplicates" (serve/results.py DEFAULT_DEDUP)
let current = null;  // {kind: "text", q} | {kind: "like", id, what} | {kind: "image", file}
let shown = [];      // the results on the page, in rank order
let hidden = { duplicates: 0, flagged: 0 };
let moderation = false, lastImage = null;

function showMessage(text, kind) {
  message.textContent = text;
  message.className = "message" + (kind === "info" ? " info" : "");
  message.hidden = !text;
}

async function readJson(response) {
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `request failed (${response.status})`);
  return body;
}

function describe(query) {
  if (query.kind === "text") return `"${query.q}"`;
  if (query.kind === "like") return `images like ${query.what || "item " + query.id}`;
  return query.file.name ? `image ${query.file.name}` : "the image";
}

function pageParams(offset) {
  const p = new URLSearchParams({ k: $("k").value, offset: String(offset) });
  if ($("dedup").checked) p.set("dedup", String(DEDUP));
  if (moderation && $("safe").checked) p.set("safe", "true");
  return p;
}

function request(query, offset) {
  const p = pageParams(offset);
  if (query.kind === "text") { p.set("q", query.q); return fetch(`/search?${p}`); }
  if (query.kind === "like") return fetch(`/similar/${encodeURIComponent(query.id)}?${p}`);
  const form = new FormData();
  form.append("image", query.file, query.file.name || "image");
  return fetch(`/search?${p}`, { method: "POST", body: form });
}

function urlFor(query) {
  const p = new URLSearchParams();
  if (query && query.kind === "text") p.set("q", query.q);
  if (query && query.kind === "like") p.set("like", String(query.id));
  if ($("dedup").checked) p.set("dedup", "1");
  if (moderation && !$("safe").checked) p.set("safe", "0");
  const s = p.toString();
  return location.pathname + (s ? "?" + s : "");
}

function card(hit) {
  const el = document.createElement("article");
  el.className = "card" + (hit.flagged ? " flagged" : "");
  el.dataset.id = hit.id;
  el.dataset.score = hit.score;
  const open = document.createElement("a");
  open.className = "open";
  open.href = `/image/${encodeURIComponent(hit.id)}`;
  open.target = "_blank";
  open.rel = "noopener";
  open.title = "open full size";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = hit.caption || hit.path;
  img.src = `/thumb/${encodeURIComponent(hit.id)}`;
  open.appendChild(img);
  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("div");
  score.className = "score";
  score.innerHTML = `<span class="value"></span><span class="bar"><i></i></span>`;
  score.querySelector(".value").textContent = hit.score.toFixed(3);
  meta.appendChild(score);
  if (hit.flagged) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "flagged";
    meta.appendChild(badge);
  }
  if (hit.caption) {
    const cap = document.createElement("div");
    cap.className = "caption";
    cap.textContent = hit.caption;
    meta.appendChild(cap);
  }
  const path = document.createElement("div");
  path.className = "path";
  path.textContent = hit.path;
  path.title = hit.path;
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like secondary";
  like.textContent = "More like this";
  like.addEventListener("click", () => search({ kind: "like", id: hit.id, what: hit.path }, true));
  meta.append(path, like);
  el.append(open, meta);
  return el;
}

// Bars span the lowest to the highest score on the page: cosine scores of one query bunch together (often
// within a few hundredths), so a 0..1 scale would draw every bar nearly full.
function scaleBars() {
  const scores = shown.map((h) => h.score);
  const lo = Math.min(...scores), hi = Math.max(...scores);
  grid.querySelectorAll(".card").forEach((el) => {
    const s = Number(el.dataset.score);
    const pct = hi - lo > 1e-9 ? 8 + 92 * (s - lo) / (hi - lo) : 100;
    el.querySelector(".bar i").style.width = `${pct.toFixed(1)}%`;
  });
}

function summary(query, ms) {
  if (!shown.length) return `no results for ${describe(query)}`;
  const parts = [`${shown.length} results for ${describe(query)} in ${ms} ms`];
  if (hidden.duplicates) parts.push(`${hidden.duplicates} near-duplicates hidden`);
  if (hidden.flagged) parts.push(`${hidden.flagged} flagged hidden (safe mode)`);
  return parts.join(" · ");
}

async function fetchPage(query, append) {
  showMessage("searching…", "info");
  more.disabled = true;
  try {
    const data = await readJson(await request(query, append ? shown.length : 0));
    if (query !== current) return;  // a newer search started meanwhile
    if (!append) { shown = []; grid.replaceChildren(); }
    shown = shown.concat(data.results);
    hidden = data.hidden || { duplicates: 0, flagged: 0 };
    grid.append(...data.results.map(card));
    scaleBars();
    more.hidden = !data.more;
    showMessage(summary(query, data.took_ms), "info");
  } catch (err) { showMessage(err.message); } finally { more.disabled = false; }
}

function search(query, push) {
  current = query;
  if (push) history.pushState(null, "", urlFor(query));
  if (query.kind === "text") $("q").value = query.q;
  window.scrollTo(0, 0);
  return fetchPage(query, false);
}

function searchText(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) { showMessage("Type something to search for."); return; }
  search({ kind: "text", q }, true);
}

function searchImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") { showMessage(`${file.name} is not an image.`); return; }
  if (file.size > 20 * 1024 * 1024) { showMessage(`${file.name} is larger than 20 MB.`); return; }
  lastImage = file;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("labels-form").hidden = false;  // classifying needs an image: the form appears with the first one
  search({ kind: "image", file }, true);
}

async function classify(event) {
  event.preventDefault();
  const labels = $("labels").value.trim();
  if (!lastImage || !labels) { showMessage("Drop an image and type labels separated by commas."); return; }
  const form = new FormData();
  form.append("image", lastImage, lastImage.name || "image");
  form.append("labels", labels);
  try {
    const data = await readJson(await fetch("/classify", { method: "POST", body: form }));
    const list = $("label-results");
    list.replaceChildren(...data.labels.map((l) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="name"></span><span class="bar"><i style="width:${(l.prob * 100).toFixed(1)}%"></i></span><span class="value"></span>`;
      li.querySelector(".name").textContent = l.label;
      li.querySelector(".name").title = l.label;
      li.querySelector(".value").textContent = `${(l.prob * 100).toFixed(1)}%`;
      return li;
    }));
    list.hidden = false;
    const note = $("label-probability");
    note.textContent = data.probability === "sigmoid"
      ? "sigmoid probability per label (SigLIP): labels are judged independently"
      : "softmax probability over these labels (CLIP)";
    note.hidden = false;
  } catch (err) { showMessage(err.message); }
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  $("dedup").checked = p.get("dedup") === "1";
  $("safe").checked = p.get("safe") !== "0";
  const q = (p.get("q") || "").trim(), like = p.get("like");
  if (q) search({ kind: "text", q }, false);
  else if (like !== null && /^\d+$/.test(like)) search({ kind: "like", id: Number(like) }, false);
}

function refilter() {
  if (!current) return;
  if (current.kind !== "image") history.replaceState(null, "", urlFor(current));
  fetchPage(current, false);
}

$("text-form").addEventListener("submit", searchText);
$("labels-form").addEventListener("submit", classify);
$("dedup").addEventListener("change", refilter);
$("safe").addEventListener("change", refilter);
$("k").addEventListener("change", refilter);
more.addEventListener("click", () => { if (current) fetchPage(current, true); });
fileInput.addEventListener("change", () => searchImage(fileInput.files[0]));
drop.addEventListener("click", (e) => { if (e.target.tagName !== "LABEL") fileInput.click(); });
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => searchImage(e.dataTransfer.files[0]));
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
  if (item) searchImage(item.getAsFile());
});
window.addEventListener("popstate", fromUrl);

// The URL's search runs once the server has said whether it has moderation concepts (safe mode's default).
fetch("/health").then(readJson).then((h) => {
  $("status").textContent = `${h.count.toLocaleString()} images indexed (${h.index === "flat" ? "exact search" : "IVF index"})`;
  moderation = (h.moderation || []).length > 0;
  $("safe-option").hidden = !moderation;
  $("safe-concepts").textContent = moderation ? `hides ${h.moderation.join(", ")}` : "";
}).catch(() => { $("status").textContent = "index unavailable"; }).finally(fromUrl);
