// xmodal's page for moderators: calls the JSON gateway under /v1/ (the same
// operations as the NATS subjects xmodal.v1.*).
//
// Views are tabs. A tab is an object registered with xmodal.registerTab:
//   { id, label, panel (its <section>), keys (the URL parameters it owns),
//     load(params) (show the state the URL names: run its query, or clear),
//     focusInput() (optional: what "/" focuses) }
// The state of the page lives in the URL (?tab=ID&...), so a view is
// shareable and the back button walks through it. The Banks tab and later
// views (Trending) plug in the same way; results render with xmodal.card.
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
    d.title = h.kind === "window" ? `${h.distance} of 256 bits differ in the best of the agreeing windows` : h.distance + " of 256 PDQ bits differ";
    meta.appendChild(d);
    if (h.kind === "window" && h.shown && h.shown.length === 4) {
      const w = Math.round(100 * (h.shown[2] - h.shown[0])), ht = Math.round(100 * (h.shown[3] - h.shown[1]));
      const c = el("span", "badge rank", `crop ${w}% × ${ht}%`);
      c.title = `found by ${h.windows} windows (of the ${h.visible_windows} in the part shown) that agree on one placement: the query shows ${w}% × ${ht}% of this picture (x ${h.shown[0].toFixed(2)}–${h.shown[2].toFixed(2)}, y ${h.shown[1].toFixed(2)}–${h.shown[3].toFixed(2)})`;
      meta.appendChild(c);
    }
    if (h.kind === "part" && h.region && h.region.length === 4) {
      const c = el("span", "badge rank", "part of the query");
      c.title = `this picture is a crop of the query: found by ${h.windows} windows that agree on one placement; it lies at x0,y0–x1,y1 ${h.region.join(",")} in query pixels`;
      meta.appendChild(c);
    }
    if (h.transform && h.transform !== "original") meta.appendChild(el("span", "badge rank", h.transform));
    if (h.kind === "cleaned" || h.kind === "area") {
      const k = el("span", "badge rank", h.kind === "cleaned" ? "watermark cleaned" : "downscale");
      k.title = h.kind === "cleaned" ? "matched with bright thin overlays such as a watermark suppressed (the cleaned hash)" : "matched by the area-averaged hash (a downscaled copy)";
      meta.appendChild(k);
    }
    if (h.region && h.region.length === 4) {
      const r = el("span", "badge rank", (h.kind === "part" ? "at " : "inside ") + h.region[0] + "," + h.region[1] + "–" + h.region[2] + "," + h.region[3]);
      r.title = h.kind === "part" ? "where this picture lies in the query: x0,y0–x1,y1 in query pixels" :
        "matched the picture inside the query (caption band, frame or borders cut away): x0,y0–x1,y1 in query pixels";
      meta.appendChild(r);
    }
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
  const body = { image: b64 };
  if ($("nd-parts").checked) body.parts = true;
  const res = await runNearDup(body, "image " + file.name);
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


// ---- the banks tab ----

// The moderation banks: look content up (an image, a hash, a text), list
// the banks, create one and add entries (admin token).
const banksTab = {
  id: "banks",
  label: "Banks",
  panel: $("tab-banks"),
  keys: ["q"],
  focusInput: () => $("bk-q"),
  stateOf() { return { q: $("bk-q").value.trim() }; },
  async load(p) {
    $("bk-q").value = p.get("q") || "";
    await loadBanks();
    await loadEvents();
    if (p.get("q")) await runMatch(signalOf(p.get("q")), p.get("q"));
    else { $("bk-matches").hidden = true; $("bk-status").textContent = ""; delete $("tab-banks").dataset.state; }
  },
};

// signalOf reads what a lookup box holds: 64 hex characters a PDQ hash, 32 an
// MD5, a URL, else a text.
function signalOf(q) {
  q = q.trim();
  if (/^[0-9a-fA-F]{64}$/.test(q)) return { pdq: q };
  if (/^[0-9a-fA-F]{32}$/.test(q)) return { md5: q };
  if (/^(https?:\/\/)?[^\s\/]+\.[a-z]{2,}(\/\S*)?$/i.test(q)) return { urls: [q] };
  return { text: q };
}

async function loadBanks() {
  const body = $("bk-list").tBodies[0];
  try {
    const res = await api("banks.list", {});
    body.replaceChildren();
    const sel = $("bk-bank");
    const keep = sel.value;
    sel.replaceChildren();
    for (const b of res.banks) {
      const tr = el("tr");
      tr.dataset.bank = b.name;
      const counts = Object.entries(b.counts || {}).map(([k, v]) => `${k}:${v}`).join(" ");
      for (const v of [b.name, b.enabled ? "yes" : "no", b.action, (b.thresholds && b.thresholds.pdq !== undefined) ? b.thresholds.pdq : 31,
        b.entries, counts, (b.labels || []).join(", ")]) tr.appendChild(el("td", "", String(v)));
      body.appendChild(tr);
      const o = el("option", "", b.name);
      o.value = b.name;
      sel.appendChild(o);
    }
    if (keep) sel.value = keep;
    $("bk-list").dataset.banks = String(res.banks.length);
  } catch (e) {
    showError(`banks: ${e.message}`);
  }
}

// loadEvents shows the newest match events, with the posts' thumbnails.
async function loadEvents() {
  const tb = $("bk-events").tBodies[0];
  if (!server.endpoints.has("banks.events")) return;
  try {
    const res = await api("banks.events", { limit: 20 });
    const ids = Array.from(new Set(res.events.map((e) => e.post_id)));
    const thumbs = {};
    if (ids.length) {
      try {
        const recs = await api("get", { post_ids: ids.slice(0, 300), thumbnails: true, limit: 1000 });
        for (const r of recs.records || []) if (r.thumbnail && !thumbs[r.post_id]) thumbs[r.post_id] = r.thumbnail;
      } catch (e) { /* posts taken down (block banks) have no records */ }
    }
    tb.replaceChildren();
    for (const e of res.events) {
      const tr = el("tr", "action-" + e.action);
      tr.dataset.postId = e.post_id;
      const td = el("td");
      if (thumbs[e.post_id]) {
        const img = el("img", "evthumb");
        img.alt = "";
        img.src = "data:image/jpeg;base64," + thumbs[e.post_id];
        img.addEventListener("click", () => img.classList.toggle("revealed"));
        td.appendChild(img);
      }
      tr.appendChild(td);
      const d = e.distance !== undefined && e.distance !== null ? `distance ${e.distance}` : (e.score !== undefined && e.score !== null ? `score ${e.score.toFixed(3)}` : "exact");
      for (const v of [showTime(e.matched_at), e.bank, e.action, e.post_id, e.signal_type, d, e.source]) tr.appendChild(el("td", "", v));
      tb.appendChild(tr);
    }
    $("bk-events").dataset.events = String(res.events.length);
  } catch (e) {
    showError(`match events: ${e.message}`);
  }
}

async function runMatch(body, label) {
  const sec = $("tab-banks");
  $("bk-status").textContent = "looking up…";
  delete sec.dataset.state;
  try {
    const res = await api("match", body);
    const tb = $("bk-matches").tBodies[0];
    tb.replaceChildren();
    for (const m of res.matches) {
      const tr = el("tr", "action-" + m.action);
      const d = m.distance !== undefined && m.distance !== null ? `distance ${m.distance}` : (m.score !== undefined && m.score !== null ? `score ${m.score.toFixed(3)}` : "exact");
      tr.appendChild(el("td", "", m.bank));
      tr.appendChild(el("td", "", m.action));
      tr.appendChild(el("td", "", (m.labels || []).join(", ")));
      tr.appendChild(el("td", "", m.signal_type));
      tr.appendChild(el("td", "", d));
      // A match through the picture inside a caption band or a frame says where it was.
      const where = m.region ? `picture at ${m.region[0]},${m.region[1]}–${m.region[2]},${m.region[3]}` : "";
      const cleaned = m.cleaned ? "watermark cleaned" : "";
      // A crop of an entry added with its windows: the part of it shown.
      const crop = m.shown && m.shown.length === 4 ?
        `crop ${Math.round(100 * (m.shown[2] - m.shown[0]))}% × ${Math.round(100 * (m.shown[3] - m.shown[1]))}% of the entry (${m.windows} windows, pixels ${(m.pixels || 0).toFixed(2)})` : "";
      tr.appendChild(el("td", "", [m.transform && m.transform !== "original" ? m.transform : "", where, cleaned, crop].filter(Boolean).join(" · ") || (m.transform || "")));
      tr.appendChild(el("td", "mono", m.entry_id));
      tb.appendChild(tr);
    }
    $("bk-matches").hidden = res.matches.length === 0;
    const q = res.quality !== undefined && res.quality !== null ? ` · PDQ quality ${res.quality}` : "";
    $("bk-status").textContent = (res.matches.length ? `${res.matches.length} ${res.matches.length === 1 ? "match" : "matches"}` : "no match") +
      ` for ${label}${q} · ${res.took_ms.toFixed(1)} ms`;
    if (res.quality !== undefined && res.quality !== null && res.quality < server.pdq_low_quality) {
      $("bk-status").textContent += ` · low PDQ quality (below ${server.pdq_low_quality}): PDQ matches may be unrelated pictures`;
    }
    sec.dataset.state = res.matches.length ? "match" : "none";
    sec.dataset.matches = String(res.matches.length);
  } catch (e) {
    $("bk-matches").hidden = true;
    $("bk-status").textContent = "";
    sec.dataset.state = "error";
    showError(`lookup failed (${e.code}): ${e.message}`);
  }
}

function adminToken() {
  const t = $("bk-token").value || sessionStorage.getItem("xmodal-admin-token") || "";
  return t;
}

async function bankAdmin(endpoint, body, done) {
  const token = adminToken();
  if (!token) { $("bk-admin-status").textContent = "the admin token is needed (http.admin_token)"; $("bk-token").focus(); return; }
  $("bk-admin-status").textContent = "…";
  try {
    const res = await api(endpoint, body, { Authorization: "Bearer " + token });
    sessionStorage.setItem("xmodal-admin-token", token);
    const msg = done(res);
    await loadBanks(); // the list shows the change before the status says it is done
    $("bk-admin-status").textContent = msg;
    $("bk-admin").dataset.done = String(Number($("bk-admin").dataset.done || 0) + 1);
  } catch (e) {
    $("bk-admin-status").textContent = `failed (${e.code}): ${e.message}`;
  }
}

$("bk-match-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!$("bk-q").value.trim()) { showError("type a hash, a text or a URL, or drop an image"); return; }
  go("banks", banksTab.stateOf(), true);
});

dropZone($("bk-match-drop"), $("bk-match-file"), async (file) => {
  const b64 = await imageOf(file, $("bk-match-preview"));
  if (!b64) return;
  await runMatch({ image: b64 }, "image " + file.name);
});

$("bk-create-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("bk-name").value.trim();
  bankAdmin("admin.banks.create", { name, labels: splitList($("bk-labels").value), action: $("bk-action").value,
    thresholds: { pdq: parseInt($("bk-pdq").value, 10) }, actor: "search page" }, () => {
    $("bk-bank").dataset.want = name;
    return `created bank ${name}`;
  }).then(() => { if ($("bk-bank").dataset.want) $("bk-bank").value = $("bk-bank").dataset.want; });
});

$("bk-add-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const bank = $("bk-bank").value;
  bankAdmin("admin.banks.add", { bank, entries: [{ signal_type: $("bk-type").value, signal: $("bk-signal").value }],
    note: $("bk-note").value, actor: "search page" }, (r) => `bank ${bank}: ${r.result.added} added, ${r.result.replaced} replaced`);
});

dropZone($("bk-add-drop"), $("bk-add-file"), async (file) => {
  if (!file || !file.type.startsWith("image/")) { showError("drop an image"); return; }
  const url = await readFile(file);
  const bank = $("bk-bank").value;
  await bankAdmin("admin.banks.add", { bank, image: url.slice(url.indexOf(",") + 1), note: $("bk-note").value || file.name, actor: "search page" },
    (r) => `bank ${bank}: ${file.name} added (${r.result.added} entries: its PDQ hash and MD5)`);
});

// ---- keyboard ----

function cards() {
  return Array.from(current.panel.querySelectorAll(".hit"));
}

function focusedCard() {
  const a = document.activeElement;
  return a && a.closest ? a.closest(".hit") : null;
}

let slashPending = false;
document.addEventListener("keypress", (ev) => { if (slashPending && ev.key === "/") ev.preventDefault(); });
document.addEventListener("keyup", (ev) => {
  if (ev.key !== "/" || !slashPending) return;
  slashPending = false;
  if (current.focusInput) current.focusInput().focus();
});

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
      // Focused on the key's release, after its own keypress and input
      // events (a timer could fire between them on a busy machine, and the
      // "/" would be typed into the box).
      ev.preventDefault();
      slashPending = true;
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
  if (server.endpoints.has("banks.list")) registerTab(banksTab);
  const bt = sessionStorage.getItem("xmodal-admin-token");
  if (bt) $("bk-token").value = bt;
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
