// xmodal's page for moderators: calls the JSON gateway under /v1/ (the same
// operations as the NATS subjects xmodal.v1.*).
//
// Views are tabs. A tab is an object registered with xmodal.registerTab:
//   { id, label, panel (its <section>), keys (the URL parameters it owns),
//     load(params) (show the state the URL names: run its query, or clear),
//     focusInput() (optional: what "/" focuses) }
// The state of the page lives in the URL (?tab=ID&...), so a view is
// shareable and the back button walks through it. Later views (Banks,
// Trending) plug in the same way; results render with xmodal.card.
"use strict";

const $ = (id) => document.getElementById(id);

// What GET /v1/ says of this server.
const server = { endpoints: new Set(), post_url: "", admin: false, pdq_low_quality: 50, neardup_distance: 31 };

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
  if (text !== undefined && text !== null) n.textContent = text;
  return n;
}


function splitList(s) {
  return (s || "").split(",").map((x) => x.trim()).filter((x) => x);
}

// UTC <-> <input type="datetime-local"> (the page works in UTC, as the index does).
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return d.toISOString().slice(0, 19);
}
function fromLocalInput(v) {
  if (!v) return "";
  const d = new Date(v.length === 16 ? v + ":00Z" : v + "Z");
  return isNaN(d) ? "" : d.toISOString().replace(".000Z", "Z");
}
function showTime(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d) || d.getUTCFullYear() < 1900) return "";
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// ---- tabs and the URL ----

const tabs = [];
let current = null;

function registerTab(t) {
  tabs.push(t);
  const b = el("button", "", t.label);
  b.type = "button";
  b.id = "tabbtn-" + t.id;
  b.setAttribute("role", "tab");
  b.setAttribute("aria-controls", t.panel.id);
  b.addEventListener("click", () => go(t.id, t.stateOf ? t.stateOf() : {}, true));
  $("tabs").appendChild(b);
  t.button = b;
}

function tabById(id) { return tabs.find((t) => t.id === id) || tabs[0]; }

function activate(t) {
  current = t;
  for (const x of tabs) {
    x.panel.hidden = x !== t;
    x.button.setAttribute("aria-selected", String(x === t));
    x.button.tabIndex = x === t ? 0 : -1;
  }
  document.body.dataset.tab = t.id;
}

// go shows tab id in the state params (an object), recording it in the URL
// (push: a new history entry; else the current one is replaced).
function go(id, params, push) {
  const t = tabById(id);
  const p = new URLSearchParams();
  p.set("tab", t.id);
  for (const k of t.keys) {
    const v = params[k];
    if (v !== undefined && v !== null && v !== "" && v !== false) p.set(k, String(v));
  }
  const url = "?" + p.toString();
  if (url !== location.search) {
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }
  route();
}

function route() {
  const p = new URLSearchParams(location.search);
  const t = tabById(p.get("tab") || "search");
  activate(t);
  showError("");
  return t.load(p);
}

window.addEventListener("popstate", () => route());

// ---- result cards ----

// A card shows one post: its picture (blurred until clicked), the modality
// lists it was found in with its rank there, its labels, author, time, text,
// and links to the post and its picture.
function card(group, opts) {
  opts = opts || {};
  const h = group.hits[0];
  const c = el("div", "hit");
  c.tabIndex = 0;
  c.setAttribute("role", "listitem");
  c.dataset.postId = h.post_id;
  c.dataset.pk = h.pk;
  c.dataset.modality = h.modality;
  if (selected.has(h.post_id)) c.classList.add("selected");
  if (takenDown.has(h.post_id)) c.classList.add("taken-down");
  if (server.admin) {
    const pick = el("input", "pick");
    pick.type = "checkbox";
    pick.title = "select for takedown (x)";
    pick.setAttribute("aria-label", "select " + h.post_id);
    pick.checked = selected.has(h.post_id);
    pick.addEventListener("change", () => toggleSelect(c, pick.checked));
    c.appendChild(pick);
  }
  const withThumb = group.hits.find((x) => x.thumbnail);
  const withMedia = group.hits.find((x) => x.media_url && /^https?:/.test(x.media_url));
  if (withThumb || withMedia) {
    const wrap = el("div", "thumbwrap");
    wrap.title = "click to reveal (v)";
    const img = el("img", "thumb");
    img.alt = "picture of " + h.post_id;
    img.referrerPolicy = "no-referrer";
    img.src = withThumb ? "data:image/jpeg;base64," + withThumb.thumbnail : withMedia.media_url;
    wrap.appendChild(img);
    wrap.appendChild(el("span", "veil", "click to reveal"));
    wrap.addEventListener("click", () => wrap.classList.toggle("revealed"));
    c.appendChild(wrap);
  } else {
    c.appendChild(el("div", "noimg", h.text || h.post_id));
  }
  const meta = el("div", "meta");
  if (h.cluster && h.cluster.size > 1) {
    const b = el("button", "linklike cluster", `${h.cluster.size} copies`);
    b.type = "button";
    b.title = `near-duplicate cluster ${h.cluster.id}, first seen ${showTime(h.cluster.first_seen)}: list it`;
    b.addEventListener("click", (ev) => { ev.stopPropagation(); go("trending", { cluster: String(h.cluster.id) }, true); });
    meta.appendChild(b);
  }
  if (h.distance !== undefined && h.distance !== null) {
    const d = el("span", "score", "distance " + h.distance);
    d.title = h.distance + " of 256 PDQ bits differ";
    meta.appendChild(d);
    if (h.transform && h.transform !== "original") meta.appendChild(el("span", "badge rank", h.transform));
  } else {
    meta.appendChild(el("span", "score", Number(h.score).toFixed(3)));
  }
  for (const x of group.hits) {
    const b = el("span", "badge " + x.modality, x.modality + (group.ranks ? " #" + group.ranks[group.hits.indexOf(x)] : ""));
    b.title = group.ranks ? `rank ${group.ranks[group.hits.indexOf(x)]} in the ${x.modality} list, score ${Number(x.score).toFixed(3)}` : x.modality;
    meta.appendChild(b);
  }
  c.appendChild(meta);
  if (h.labels && h.labels.length) {
    const ls = el("div", "labels");
    for (const l of h.labels) {
      const b = el("button", "label", l);
      b.type = "button";
      b.title = "filter by label " + l;
      b.addEventListener("click", () => opts.onLabel && opts.onLabel(l));
      ls.appendChild(b);
    }
    c.appendChild(ls);
  }
  if (h.text) c.appendChild(el("div", "text", h.text));
  const who = el("div", "who");
  if (h.author) {
    const a = el("button", "linklike author", "@" + h.author);
    a.type = "button";
    a.title = "filter by author " + h.author;
    a.addEventListener("click", () => opts.onAuthor && opts.onAuthor(h.author));
    who.appendChild(a);
  }
  const t = showTime(h.created_at);
  if (t) {
    const time = el("time", "created", t);
    time.dateTime = h.created_at;
    who.appendChild(time);
  }
  who.appendChild(el("span", "postid", h.post_id));
  if (server.post_url) {
    const a = el("a", "post-link", "post ↗");
    a.href = server.post_url.replace("{id}", encodeURIComponent(h.post_id));
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    who.appendChild(a);
  }
  if (withMedia) {
    const a = el("a", "media-link", "image ↗");
    a.href = withMedia.media_url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    who.appendChild(a);
  }
  c.appendChild(who);
  const img = group.hits.find((x) => x.modality === "image" || x.modality === "fused");
  if (img && server.endpoints.has("neardup")) {
    const actions = el("div", "actions");
    const b = el("button", "dup", "near-duplicates");
    b.type = "button";
    b.title = "copies of this picture (d)";
    b.addEventListener("click", () => dupsOfPK(img.pk));
    actions.appendChild(b);
    c.appendChild(actions);
  }
  return c;
}

// groupByPost turns a hit list merged by rank into one group per post, in
// the order of each post's first appearance, keeping each hit's rank within
// its modality list.
function groupByPost(hits) {
  const perMod = {};
  const groups = new Map();
  for (const h of hits) {
    perMod[h.modality] = (perMod[h.modality] || 0) + 1;
    let g = groups.get(h.post_id);
    if (!g) { g = { hits: [], ranks: [] }; groups.set(h.post_id, g); }
    g.hits.push(h);
    g.ranks.push(perMod[h.modality]);
  }
  return Array.from(groups.values());
}

function render(gridId, groups, opts) {
  $(gridId).replaceChildren(...groups.map((g) => card(g, opts)));
}

// ---- selection and takedown ----

const selected = new Set();
const takenDown = new Set();

function toggleSelect(c, on) {
  const id = c.dataset.postId;
  if (on === undefined) on = !selected.has(id);
  if (on) selected.add(id); else selected.delete(id);
  for (const x of document.querySelectorAll(`.hit[data-post-id="${CSS.escape(id)}"]`)) {
    x.classList.toggle("selected", on);
    const p = x.querySelector(".pick");
    if (p) p.checked = on;
  }
  updateBulk();
}

function updateBulk() {
  $("bulk").hidden = selected.size === 0;
  $("bulk-count").textContent = `${selected.size} selected`;
}

async function takeDown() {
  const reason = $("reason").value.trim();
  if (!reason) { $("bulk-status").textContent = "give a reason: it is recorded with the takedown"; $("reason").focus(); return; }
  const token = $("token").value || sessionStorage.getItem("xmodal-admin-token") || "";
  if (!token) { $("bulk-status").textContent = "the admin token is needed (http.admin_token)"; $("token").focus(); return; }
  const ids = Array.from(selected);
  $("bulk-status").textContent = "taking down…";
  try {
    const res = await api("admin.delete", { post_ids: ids, reason }, { Authorization: "Bearer " + token });
    sessionStorage.setItem("xmodal-admin-token", token);
    for (const id of res.deleted) {
      takenDown.add(id);
      for (const x of document.querySelectorAll(`.hit[data-post-id="${CSS.escape(id)}"]`)) x.classList.add("taken-down");
    }
    selected.clear();
    for (const x of document.querySelectorAll(".hit.selected")) {
      x.classList.remove("selected");
      const p = x.querySelector(".pick");
      if (p) p.checked = false;
    }
    $("bulk").hidden = false;
    $("bulk-count").textContent = "0 selected";
    $("bulk-status").textContent = `took down ${res.count}: ${res.deleted.join(", ")} (reason: ${reason})`;
    $("bulk").dataset.done = String(res.count);
  } catch (e) {
    $("bulk-status").textContent = `takedown failed (${e.code}): ${e.message}`;
  }
}

// ---- the search tab ----

const searchTab = {
  id: "search",
  label: "Search",
  panel: $("tab-search"),
  keys: ["q", "target", "author", "labels", "since", "until", "k", "plan", "recent"],
  focusInput: () => $("q"),
  stateOf() {
    return {
      q: $("q").value.trim(), target: $("target").value, author: splitList($("author").value).join(","),
      labels: splitList($("labels").value).join(","), since: fromLocalInput($("since").value), until: fromLocalInput($("until").value),
      k: $("k").value !== "24" ? $("k").value : "", plan: $("plan").value, recent: $("recent").checked ? "1" : "",
    };
  },
  async load(p) {
    $("q").value = p.get("q") || "";
    $("target").value = p.get("target") || "any";
    $("author").value = (p.get("author") || "").split(",").filter((x) => x).join(", ");
    $("labels").value = (p.get("labels") || "").split(",").filter((x) => x).join(", ");
    $("since").value = toLocalInput(p.get("since"));
    $("until").value = toLocalInput(p.get("until"));
    $("k").value = p.get("k") || "24";
    $("plan").value = p.get("plan") || "";
    $("recent").checked = p.get("recent") === "1";
    if (!p.get("q")) {
      $("results").replaceChildren();
      $("status").textContent = "";
      $("merge-note").hidden = true;
      return;
    }
    const req = searchRequest();
    req.text = p.get("q");
    await runSearch(req, JSON.stringify(p.get("q")));
  },
};

function searchRequest() {
  const req = { target: $("target").value, k: Math.max(1, Math.min(1000, parseInt($("k").value, 10) || 24)), thumbnails: true };
  if ($("plan").value) req.plan = $("plan").value;
  if ($("recent").checked) req.recency = { half_life_hours: 24, weight: 0.1 };
  const f = {};
  const authors = splitList($("author").value);
  const labels = splitList($("labels").value);
  if (authors.length) f.authors = authors;
  if (labels.length) f.labels = labels;
  if (fromLocalInput($("since").value)) f.since = fromLocalInput($("since").value);
  if (fromLocalInput($("until").value)) f.until = fromLocalInput($("until").value);
  if (Object.keys(f).length) req.filter = f;
  return req;
}

const cardOpts = {
  onLabel: (l) => { const ls = splitList($("labels").value); if (!ls.includes(l)) ls.push(l); $("labels").value = ls.join(", "); submitSearch(); },
  onAuthor: (a) => { $("author").value = a; submitSearch(); },
};

async function runSearch(req, label) {
  $("status").textContent = "searching…";
  delete $("status").dataset.hits;
  try {
    const res = await api("search", req);
    const any = req.target === "any";
    const groups = any ? groupByPost(res.hits) : res.hits.map((h, i) => ({ hits: [h], ranks: null, rank: i + 1 }));
    render("results", groups, cardOpts);
    $("merge-note").hidden = !any;
    $("status").textContent = `${res.hits.length} hits` + (any ? ` in ${groups.length} posts` : "") +
      ` for ${label} · ${res.took_ms.toFixed(1)} ms · plan ${res.plan}` + (res.cached ? " · cached" : "") + ` · ${res.model}`;
    $("status").dataset.hits = String(res.hits.length);
    $("status").dataset.cached = String(res.cached);
  } catch (e) {
    $("status").textContent = "";
    $("results").replaceChildren();
    showError(`search failed (${e.code}): ${e.message}`);
  }
}

function submitSearch() {
  const text = $("q").value.trim();
  if (!text) { showError("type something to search for, or drop an image"); return; }
  go("search", searchTab.stateOf(), true);
}

$("form").addEventListener("submit", (ev) => { ev.preventDefault(); submitSearch(); });
$("clear").addEventListener("click", () => {
  for (const id of ["author", "labels", "since", "until"]) $(id).value = "";
  $("target").value = "any";
  if ($("q").value.trim()) submitSearch();
});

function readFile(file) {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(String(fr.result));
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(file);
  });
}

function dropZone(zone, input, onFile) {
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    onFile(f);
  });
  input.addEventListener("change", (ev) => onFile(ev.target.files[0]));
}

async function imageOf(file, preview) {
  if (!file) return null;
  if (!file.type.startsWith("image/")) { showError(`${file.name} is not an image`); return null; }
  const url = await readFile(file);
  preview.src = url;
  preview.hidden = false;
  return url.slice(url.indexOf(",") + 1);
}

dropZone($("drop"), $("file"), async (file) => {
  const b64 = await imageOf(file, $("preview"));
  if (!b64) return;
  // An image query is not kept in the URL (too large); the text box is cleared.
  $("q").value = "";
  history.replaceState(null, "", "?tab=search");
  const req = searchRequest();
  req.image = b64;
  await runSearch(req, "image " + file.name);
});

// ---- the near-duplicate tab ----

const neardupTab = {
  id: "neardup",
  label: "Near-duplicates",
  panel: $("tab-neardup"),
  keys: ["pdq", "max", "minq"],
  focusInput: () => $("nd-pdq"),
  stateOf() {
    return { pdq: $("nd-pdq").value.trim(), max: $("nd-max").value !== String(server.neardup_distance) ? $("nd-max").value : "",
      minq: $("nd-minq").value !== "0" ? $("nd-minq").value : "" };
  },
  async load(p) {
    $("nd-pdq").value = p.get("pdq") || "";
    $("nd-max").value = p.get("max") || String(server.neardup_distance);
    $("nd-minq").value = p.get("minq") || "0";
    if (!p.get("pdq")) {
      $("dups").replaceChildren();
      $("nd-status").textContent = "";
      $("nd-warning").hidden = true;
      return;
    }
    await runNearDup({ pdq: p.get("pdq") }, "PDQ " + p.get("pdq").slice(0, 12) + "…", p.get("quality"));
  },
};

// ---- trending: the clusters that grew most (xmodal.v1.trending) ----
const trendingTab = {
  id: "trending",
  label: "Trending",
  panel: $("tab-trending"),
  keys: ["window", "cluster"],
  focusInput: () => $("tr-window"),
  stateOf() { return { window: $("tr-window").value }; },
  async load(p) {
    $("tr-window").value = p.get("window") || "1h";
    await runTrending(p.get("cluster"));
  },
};

async function runTrending(cluster) {
  const sec = $("tab-trending");
  $("tr-members").replaceChildren();
  $("tr-members-title").hidden = true;
  if (!server.endpoints.has("trending")) {
    $("trends").replaceChildren();
    $("tr-status").textContent = "this server keeps no clusters (trending needs the embedded index with clusters.enabled)";
    sec.dataset.state = "unavailable";
    return;
  }
  $("tr-status").textContent = "ranking…";
  delete sec.dataset.state;
  try {
    const win = $("tr-window").value;
    const res = await api("trending", { window: win, k: 24, thumbnails: true });
    const cl = res.clusters || [];
    $("trends").replaceChildren(...cl.filter((c) => c.representative).map((c) => {
      const cd = card({ hits: [c.representative], ranks: null }, {});
      cd.dataset.cluster = c.id;
      const g = el("div", "meta trend");
      g.appendChild(el("span", "score", `+${c.current} in ${res.window} (${c.previous} before)`));
      g.appendChild(el("span", null, ` · ${c.size} posts · score ${c.score.toFixed(1)} · since ${showTime(c.first_seen)}`));
      const more = el("button", "linklike", "members");
      more.type = "button";
      more.addEventListener("click", () => go("trending", { window: win, cluster: String(c.id) }, true));
      g.appendChild(more);
      cd.appendChild(g);
      return cd;
    }));
    $("tr-status").textContent = `${cl.length} trending ${cl.length === 1 ? "cluster" : "clusters"} in the ${res.window} to ${showTime(res.now)} · ${res.took_ms.toFixed(1)} ms`;
    sec.dataset.state = cl.length ? "ok" : "none";
    if (cluster) await showMembers(cluster);
  } catch (e) {
    $("trends").replaceChildren();
    $("tr-status").textContent = "";
    sec.dataset.state = "error";
    showError(`trending failed (${e.code}): ${e.message}`);
  }
}

async function showMembers(id) {
  const res = await api("cluster", { id: Number(id), limit: 100, thumbnails: true });
  const t = $("tr-members-title");
  t.textContent = `Cluster ${res.cluster.id}: ${res.cluster.size} posts, newest first` + (res.next_cursor ? " (first 100)" : "");
  t.hidden = false;
  render("tr-members", (res.members || []).map((h) => ({ hits: [h], ranks: null })), {});
}

$("tr-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  go("trending", trendingTab.stateOf(), true);
});

// runNearDup asks for the copies of an image or a hash; knownQuality is the
// quality of an indexed picture's hash (a hash query has none of its own).
async function runNearDup(body, label, knownQuality) {
  const sec = $("tab-neardup");
  if (!server.endpoints.has("neardup")) {
    $("dups").replaceChildren();
    $("nd-status").textContent = "this server has no near-duplicate endpoint";
    sec.dataset.state = "unavailable";
    return;
  }
  body.thumbnails = true;
  body.max_distance = Math.max(0, Math.min(256, parseInt($("nd-max").value, 10) || 0));
  const minq = parseInt($("nd-minq").value, 10) || 0;
  if (minq) body.min_quality = minq;
  $("nd-status").textContent = "searching…";
  delete sec.dataset.state;
  try {
    const res = await api("neardup", body);
    const hits = res.matches || [];
    render("dups", hits.map((h) => ({ hits: [h], ranks: null })), {});
    const q = res.quality !== undefined && res.quality !== null ? res.quality : (knownQuality !== undefined && knownQuality !== null && knownQuality !== "" ? Number(knownQuality) : null);
    const warn = $("nd-warning");
    if (q !== null && q < server.pdq_low_quality) {
      warn.textContent = `Low PDQ quality: the query picture's hash has quality ${q}, below ${server.pdq_low_quality}. ` +
        "Flat or featureless pictures hash poorly: matches at any distance may be unrelated pictures. Check them by eye.";
      warn.hidden = false;
    } else {
      warn.hidden = true;
    }
    $("nd-status").textContent = `${hits.length} ${hits.length === 1 ? "copy" : "copies"} of ${label} within distance ${res.max_distance} of 256 bits` +
      (q !== null ? ` · query quality ${q}` : "") + ` · ${res.took_ms.toFixed(1)} ms`;
    sec.dataset.state = hits.length ? "ok" : "none";
    return res;
  } catch (e) {
    $("dups").replaceChildren();
    $("nd-status").textContent = "";
    sec.dataset.state = e.code === 404 ? "none" : "error";
    if (e.code === 404) $("nd-status").textContent = "no copies";
    else showError(`near-duplicate search failed (${e.code}): ${e.message}`);
  }
}

$("nd-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!/^[0-9a-fA-F]{64}$/.test($("nd-pdq").value.trim())) { showError("a PDQ hash is 64 hex characters (or drop an image)"); return; }
  go("neardup", neardupTab.stateOf(), true);
});

dropZone($("nd-drop"), $("nd-file"), async (file) => {
  const b64 = await imageOf(file, $("nd-preview"));
  if (!b64) return;
  const res = await runNearDup({ image: b64 }, "image " + file.name);
  // The query's hash makes the view shareable (a hash query matches that
  // hash only; the image query matched its rotations and mirrors too).
  if (res && res.pdq) {
    $("nd-pdq").value = res.pdq;
    history.pushState(null, "", "?" + new URLSearchParams({ tab: "neardup", pdq: res.pdq }).toString());
  }
});

// dupsOfPK opens the near-duplicate view on an indexed picture's hash.
async function dupsOfPK(pk) {
  try {
    const rec = await api("get", { pks: [pk] });
    const r = rec.records && rec.records[0];
    if (!r || !r.pdq) { showError("this record has no PDQ hash"); return; }
    const p = { pdq: r.pdq }; // get replies with the hash in hex, as neardup takes it
    const u = new URLSearchParams({ tab: "neardup", pdq: p.pdq });
    if (r.pdq_quality !== undefined) u.set("quality", String(r.pdq_quality));
    history.pushState(null, "", "?" + u.toString());
    route();
  } catch (e) {
    showError(`near-duplicates: ${e.message}`);
  }
}
neardupTab.keys.push("quality");

// ---- keyboard ----

function cards() {
  return Array.from(current.panel.querySelectorAll(".hit"));
}

function focusedCard() {
  const a = document.activeElement;
  return a && a.closest ? a.closest(".hit") : null;
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  if (typing) {
    if (ev.key === "Escape") t.blur();
    return;
  }
  const cs = cards();
  const c = focusedCard();
  const i = c ? cs.indexOf(c) : -1;
  switch (ev.key) {
    case "/":
      // Focused after this key's own events, so that the "/" is not typed.
      ev.preventDefault();
      if (current.focusInput) setTimeout(() => current.focusInput().focus(), 0);
      return;
    case "?":
      $("help").showModal();
      return;
    case "j": case "ArrowDown": case "ArrowRight":
      if (cs.length) { ev.preventDefault(); cs[Math.min(i + 1, cs.length - 1)].focus(); }
      return;
    case "k": case "ArrowUp": case "ArrowLeft":
      if (cs.length) { ev.preventDefault(); cs[Math.max(i - 1, 0)].focus(); }
      return;
  }
  if (/^[1-9]$/.test(ev.key) && tabs[Number(ev.key) - 1]) {
    const nt = tabs[Number(ev.key) - 1];
    go(nt.id, nt.stateOf ? nt.stateOf() : {}, true);
    return;
  }
  if (!c) return;
  switch (ev.key) {
    case "v": {
      const w = c.querySelector(".thumbwrap");
      if (w) w.classList.toggle("revealed");
      return;
    }
    case "x":
      if (server.admin) toggleSelect(c);
      return;
    case "d": {
      const b = c.querySelector("button.dup");
      if (b) b.click();
      return;
    }
    case "o": {
      const a = c.querySelector("a.post-link") || c.querySelector("a.media-link");
      if (a) window.open(a.href, "_blank", "noopener");
      return;
    }
  }
});

$("help-btn").addEventListener("click", () => $("help").showModal());
$("takedown").addEventListener("click", takeDown);
$("unselect").addEventListener("click", () => {
  for (const id of Array.from(selected)) {
    const c = document.querySelector(`.hit[data-post-id="${CSS.escape(id)}"]`);
    if (c) toggleSelect(c, false); else selected.delete(id);
  }
  updateBulk();
});

async function init() {
  try {
    const res = await fetch("/v1/");
    const d = await res.json();
    server.endpoints = new Set(d.endpoints || []);
    server.post_url = d.post_url || "";
    server.admin = !!d.admin;
    if (d.pdq_low_quality) server.pdq_low_quality = d.pdq_low_quality;
    if (d.neardup_distance) server.neardup_distance = d.neardup_distance;
  } catch (e) { /* keep the defaults */ }
  registerTab(searchTab);
  registerTab(neardupTab);
  registerTab(trendingTab);
  const tok = sessionStorage.getItem("xmodal-admin-token");
  if (tok) $("token").value = tok;
  try {
    const st = await (await fetch("/v1/stats")).json();
    if (st.model) $("model").textContent = `${st.model} · ${Object.values(st.records || {}).reduce((a, b) => a + b, 0)} records`;
  } catch (e) { /* stats are decoration */ }
  await route();
  document.body.dataset.ready = "true";
}

window.xmodal = { registerTab, go, api, card, groupByPost, render, server };

init();
