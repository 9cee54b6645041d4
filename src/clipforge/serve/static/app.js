// clipforge search page: plain JavaScript, no build step, no external requests.
"use strict";

const $ = (id) => document.getElementById(id);
const grid = $("grid"), message = $("message"), drop = $("drop"), fileInput = $("file");
let lastImage = null;

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

function card(hit) {
  const el = document.createElement("article");
  el.className = "card";
  el.dataset.id = hit.id;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = hit.caption || hit.path;
  img.src = `/thumb/${encodeURIComponent(hit.id)}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("div");
  score.className = "score";
  const pct = Math.max(0, Math.min(1, hit.score)) * 100;
  score.innerHTML = `<span class="value"></span><span class="bar"><i style="width:${pct.toFixed(1)}%"></i></span>`;
  score.querySelector(".value").textContent = hit.score.toFixed(3);
  meta.appendChild(score);
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
  meta.appendChild(path);
  el.append(img, meta);
  return el;
}

function render(data, what) {
  grid.replaceChildren(...data.results.map(card));
  showMessage(data.results.length ? `${data.results.length} results for ${what} in ${data.took_ms} ms` : `no results for ${what}`, "info");
}

async function searchText(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) { showMessage("Type something to search for."); return; }
  showMessage("searching…", "info");
  try {
    const data = await readJson(await fetch(`/search?q=${encodeURIComponent(q)}&k=${$("k").value}`));
    render(data, `"${q}"`);
  } catch (err) { showMessage(err.message); }
}

async function searchImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") { showMessage(`${file.name} is not an image.`); return; }
  if (file.size > 20 * 1024 * 1024) { showMessage(`${file.name} is larger than 20 MB.`); return; }
  lastImage = file;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("labels-form").hidden = false;
  showMessage("searching…", "info");
  const form = new FormData();
  form.append("image", file, file.name || "image");
  try {
    const data = await readJson(await fetch(`/search?k=${$("k").value}`, { method: "POST", body: form }));
    render(data, file.name ? `image ${file.name}` : "the image");
  } catch (err) { showMessage(err.message); }
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

$("text-form").addEventListener("submit", searchText);
$("labels-form").addEventListener("submit", classify);
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

fetch("/health").then(readJson).then((h) => {
  $("status").textContent = `${h.count.toLocaleString()} images indexed (${h.index === "flat" ? "exact search" : "IVF index"})`;
}).catch(() => { $("status").textContent = "index unavailable"; });
