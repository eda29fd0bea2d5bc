// xmodal search page: calls the JSON gateway under /v1/ (the same operations as
// the NATS subjects xmodal.v1.*).
"use strict";

const $ = (id) => document.getElementById(id);
let endpoints = new Set();

async function api(endpoint, body, headers) {
  const res = await fetch("/v1/" + endpoint.replace(/\./g, "/"), {
    method: "POST",
    headers: Object.assign({ "Content-Type": "application/json" }, headers || {}),
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error && data.error.message) || res.statusText);
    err.code = (data && data.error && data.error.code) || res.status;
    throw err;
  }
  return data;
}

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
}

function card(h) {
  const c = el("div", "hit");
  c.dataset.postId = h.post_id;
  c.dataset.pk = h.pk;
  c.dataset.modality = h.modality;
  if (h.thumbnail) {
    const img = el("img", "thumb");
    img.alt = h.post_id;
    img.src = "data:image/jpeg;base64," + h.thumbnail;
    c.appendChild(img);
  } else if (h.media_url && /^https?:/.test(h.media_url)) {
    const img = el("img", "thumb");
    img.alt = h.post_id;
    img.loading = "lazy";
    img.referrerPolicy = "no-referrer";
    img.src = h.media_url;
    c.appendChild(img);
  } else {
    c.appendChild(el("div", "noimg", h.text || h.post_id));
  }
  const meta = el("div", "meta");
  const score = h.distance !== undefined && h.distance !== null
    ? "distance " + h.distance
    : "score " + Number(h.score).toFixed(3);
  meta.appendChild(el("span", "score", score));
  meta.appendChild(el("span", "mod " + h.modality, h.modality));
  c.appendChild(meta);
  if (h.transform && h.transform !== "original") c.appendChild(el("div", "who", "matched as " + h.transform));
  if (h.text) c.appendChild(el("div", "text", h.text));
  c.appendChild(el("div", "who", h.post_id + (h.author ? " · @" + h.author : "")));
  if (h.modality === "image" || h.modality === "fused") {
    const b = el("button", "dup", "near-duplicates");
    b.type = "button";
    b.addEventListener("click", () => dupsOfHit(h));
    c.appendChild(b);
  }
  return c;
}

function render(gridId, hits) {
  const g = $(gridId);
  g.replaceChildren(...(hits || []).map(card));
}

function baseRequest() {
  const req = { target: $("target").value, k: Math.max(1, Math.min(1000, parseInt($("k").value, 10) || 12)), thumbnails: true };
  if ($("plan").value) req.plan = $("plan").value;
  if ($("recent").checked) req.recency = { half_life_hours: 24, weight: 0.1 };
  return req;
}

async function search(req, label) {
  showError("");
  $("status").textContent = "searching…";
  try {
    const res = await api("search", req);
    render("results", res.hits);
    $("results-title").hidden = false;
    $("results-title").textContent = "Results for " + label;
    $("status").textContent = `${res.hits.length} hits · ${res.took_ms.toFixed(1)} ms · plan ${res.plan}` +
      (res.cached ? " · cached" : "") + ` · ${res.model}`;
    $("status").dataset.cached = String(res.cached);
  } catch (e) {
    $("status").textContent = "";
    showError(`search failed (${e.code}): ${e.message}`);
  }
}

// nearDups shows near-duplicates, or says why it cannot.
async function nearDups(body) {
  $("dups-section").hidden = false;
  $("dups-note").textContent = "";
  if (!endpoints.has("neardup")) {
    render("dups", []);
    $("dups-note").textContent = "(this server has no near-duplicate endpoint; see the image search results below)";
    $("dups-section").dataset.state = "unavailable";
    return;
  }
  try {
    body.thumbnails = true;
    const res = await api("neardup", body);
    const hits = res.matches || res.hits || [];
    render("dups", hits);
    $("dups-note").textContent = hits.length ? `(${hits.length})` : "(none)";
    $("dups-section").dataset.state = "ok";
  } catch (e) {
    render("dups", []);
    $("dups-section").dataset.state = e.code === 404 ? "none" : "error";
    $("dups-note").textContent = e.code === 404 ? "(none)" : `(unavailable: ${e.code} ${e.message})`;
  }
}

async function dupsOfHit(h) {
  let body = null;
  try {
    const rec = await api("get", { pks: [h.pk] });
    const r = rec.records && rec.records[0];
    if (r && r.pdq) body = { pdq: r.pdq }; // hex, as neardup takes it
  } catch (e) { /* fall back to the thumbnail */ }
  if (!body && h.thumbnail) body = { image: h.thumbnail };
  if (!body) { showError("this hit has neither a PDQ hash nor a thumbnail"); return; }
  await nearDups(body);
  $("dups-section").scrollIntoView({ behavior: "smooth" });
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(String(fr.result));
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(file);
  });
}

async function byImage(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { showError(`${file.name} is not an image`); return; }
  const url = await readFile(file);
  $("preview").src = url;
  $("preview").hidden = false;
  const b64 = url.slice(url.indexOf(",") + 1);
  const req = baseRequest();
  req.image = b64;
  await Promise.all([nearDups({ image: b64 }), search(req, "image " + file.name)]);
}

async function init() {
  try {
    const res = await fetch("/v1/");
    const data = await res.json();
    endpoints = new Set(data.endpoints || []);
  } catch (e) { /* keep the defaults */ }
  try {
    const st = await (await fetch("/v1/stats")).json();
    if (st.model) $("model").textContent = `${st.model} · ${Object.values(st.records || {}).reduce((a, b) => a + b, 0)} records`;
  } catch (e) { /* stats are decoration */ }
  document.body.dataset.ready = "true";
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("q").value.trim();
  if (!text) { showError("type something to search for, or drop an image"); return; }
  const req = baseRequest();
  req.text = text;
  $("dups-section").hidden = true;
  search(req, JSON.stringify(text));
});

const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
  byImage(f);
});
$("file").addEventListener("change", (ev) => byImage(ev.target.files[0]));

$("admin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {};
  if ($("del-id").value.trim()) body.post_ids = [$("del-id").value.trim()];
  if ($("del-author").value.trim()) body.authors = [$("del-author").value.trim()];
  try {
    const res = await api("admin.delete", body, { Authorization: "Bearer " + $("token").value });
    $("admin-status").textContent = `deleted ${res.count}: ${res.deleted.join(", ")}`;
  } catch (e) {
    $("admin-status").textContent = `delete failed (${e.code}): ${e.message}`;
  }
});

init();
