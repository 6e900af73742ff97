// Over 400 lines: the page is one self-contained HTML document (CSS and JS inline).
// The review page: static HTML, CSS and JS compiled into the binary (no CDN, no network).
// One page, two views (#queue, #summary) per line; keyboard: N normal, D defect, S skip,
// U undo, J/K or arrows next/previous.
enum PageAssets {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rstpm review</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>rstpm review</h1>
  <label>Line <select id="line"></select></label>
  <nav><a id="tab-queue" href="#queue">Queue</a> <a id="tab-summary" href="#summary">Summary</a></nav>
  <label id="who-box">Reviewer <input id="who" size="10" autocomplete="username" placeholder="your name"></label>
  <span id="who-auth"></span>
</header>
<main>
<section id="queue-view">
  <form id="filters">
    <fieldset><legend>Verdict</legend>
      <label><input type="checkbox" name="verdict" value="defect" checked> defect</label>
      <label><input type="checkbox" name="verdict" value="ok" checked> ok</label>
      <label><input type="checkbox" name="verdict" value="error"> error</label>
    </fieldset>
    <label>Score <input name="min" type="number" step="any" size="5" placeholder="min"> – <input name="max" type="number" step="any" size="5" placeholder="max"></label>
    <label>From <input name="from" type="date"></label>
    <label>To <input name="to" type="date"></label>
    <label>Show <select name="answered"><option value="no">unanswered</option><option value="yes">answered</option><option value="all">all</option></select></label>
    <button type="submit">Apply</button>
  </form>
  <div id="workspace">
    <article id="current" aria-live="polite">
      <p id="empty">Nothing to review with these filters.</p>
      <div id="item" hidden>
        <div class="meta">
          <strong id="item-file"></strong>
          <span id="item-verdict" class="badge"></span>
          <span id="item-answer" class="badge answered" hidden></span>
        </div>
        <div class="scoreline"><div id="score-bar"><div id="score-fill"></div><div id="score-threshold"></div></div>
          <span id="item-score"></span></div>
        <div class="meta small"><span id="item-model"></span> · <span id="item-time"></span> · <span id="item-regions"></span></div>
        <div class="images">
          <figure><div class="frame"><img id="img-original" alt="original image"><svg id="regions" preserveAspectRatio="none"></svg></div><figcaption>original</figcaption></figure>
          <figure><div class="frame"><img id="img-heatmap" alt="heatmap"></div><figcaption>heatmap</figcaption></figure>
        </div>
        <div class="answers">
          <button id="answer-normal" class="normal" title="N">Normal <kbd>N</kbd></button>
          <button id="answer-defect" class="defect" title="D">Defect <kbd>D</kbd></button>
          <button id="answer-skip" title="S">Skip <kbd>S</kbd></button>
          <button id="answer-undo" title="U">Undo <kbd>U</kbd></button>
        </div>
        <div class="defect-details">
          <label>Defect label <input id="defect-label" list="labels" size="14" placeholder="e.g. scratch"></label>
          <datalist id="labels"><option value="scratch"><option value="crack"><option value="contamination"><option value="broken"><option value="missing part"></datalist>
          <label>Note <input id="defect-note" size="24"></label>
        </div>
      </div>
      <p id="status" role="status"></p>
    </article>
    <aside><h2>Queue <span id="queue-count"></span></h2><ol id="queue-list"></ol></aside>
  </div>
</section>
<section id="summary-view" hidden>
  <div class="cards">
    <div class="card"><h2>Today (UTC)</h2><table id="today"></table></div>
    <div class="card"><h2>Reviewers vs model</h2><table id="agreement"></table></div>
    <div class="card"><h2>Learning</h2><table id="learning"></table></div>
  </div>
  <div class="card wide"><h2>Reject rate, last 14 days</h2><svg id="reject-chart" viewBox="0 0 700 200" role="img" aria-label="reject rate per day"></svg></div>
  <div class="card wide"><h2>Model versions</h2><table id="models"><thead><tr><th>version</th><th>gate</th><th>false-reject</th><th>AUROC</th><th>decided</th><th>reason</th></tr></thead><tbody></tbody></table></div>
</section>
</main>
</body>
</html>
"""#

    static let style = #"""
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 16px/1.4 system-ui, sans-serif; color: #1d232a; background: #f3f4f6; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.2rem; padding: .5rem 1rem; background: #1d232a; color: #fff; }
header h1 { font-size: 1.1rem; margin: 0; }
header a { color: #cbd5e1; padding: .4rem .6rem; text-decoration: none; border-radius: 4px; }
header a.active { background: #3b4656; color: #fff; }
select, input, button { font: inherit; }
input, select { padding: .3rem; }
main { padding: .8rem; }
#filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; margin-bottom: .8rem; }
#filters fieldset { border: 1px solid #cbd5e1; padding: .2rem .6rem; margin: 0; }
#workspace { display: grid; grid-template-columns: minmax(0, 1fr) 18rem; gap: 1rem; }
@media (max-width: 900px) { #workspace { grid-template-columns: 1fr; } }
article, aside, .card { background: #fff; border-radius: 8px; padding: .8rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
aside h2, .card h2 { font-size: 1rem; margin: 0 0 .5rem; }
#queue-list { list-style: none; padding: 0; margin: 0; max-height: 75vh; overflow-y: auto; }
#queue-list li { display: flex; justify-content: space-between; gap: .5rem; padding: .45rem .5rem; border-bottom: 1px solid #eef0f3; cursor: pointer; min-height: 2.6rem; align-items: center; }
#queue-list li.selected { background: #e0ecff; }
#queue-list li.done { opacity: .55; }
#queue-list .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: 999px; font-size: .85rem; background: #e5e7eb; }
.badge.defect { background: #fde2e1; color: #9b1c1c; }
.badge.ok { background: #dcfce7; color: #166534; }
.badge.error { background: #fef3c7; color: #92400e; }
.badge.answered { background: #1d4ed8; color: #fff; }
.meta { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.small { font-size: .85rem; color: #4b5563; margin: .3rem 0; }
.scoreline { display: flex; align-items: center; gap: .6rem; margin: .4rem 0; }
#score-bar { position: relative; flex: 1; height: .7rem; background: #e5e7eb; border-radius: 4px; }
#score-fill { position: absolute; left: 0; top: 0; bottom: 0; background: #2563eb; border-radius: 4px; }
#score-threshold { position: absolute; top: -.25rem; bottom: -.25rem; width: 3px; background: #dc2626; }
.images { display: grid; grid-template-columns: 1fr 1fr; gap: .6rem; }
@media (max-width: 600px) { .images { grid-template-columns: 1fr; } }
figure { margin: 0; }
figcaption { font-size: .8rem; color: #6b7280; text-align: center; }
.frame { position: relative; background: #111; min-height: 6rem; }
.frame img { display: block; width: 100%; height: auto; }
#regions { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
#regions rect { fill: none; stroke: #facc15; stroke-width: 2; vector-effect: non-scaling-stroke; }
.answers { display: flex; flex-wrap: wrap; gap: .6rem; margin: .8rem 0 .4rem; }
.answers button { flex: 1 1 8rem; min-height: 3.2rem; border: 0; border-radius: 6px; background: #e5e7eb; font-size: 1.05rem; cursor: pointer; }
.answers button.normal { background: #16a34a; color: #fff; }
.answers button.defect { background: #dc2626; color: #fff; }
.answers button:disabled { opacity: .4; cursor: not-allowed; }
kbd { font-size: .75rem; border: 1px solid currentColor; border-radius: 3px; padding: 0 .25rem; margin-left: .3rem; opacity: .8; }
.defect-details { display: flex; flex-wrap: wrap; gap: .6rem; }
#status { min-height: 1.4rem; margin: .4rem 0 0; }
#status.error { color: #b91c1c; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); gap: 1rem; margin-bottom: 1rem; }
.card.wide { margin-bottom: 1rem; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .25rem .4rem; border-bottom: 1px solid #eef0f3; font-size: .92rem; }
tr.current td { font-weight: 600; }
#reject-chart { width: 100%; height: auto; max-height: 240px; }
#reject-chart .bar { fill: #dc2626; }
#reject-chart .axis { stroke: #9ca3af; }
#reject-chart text { font-size: 11px; fill: #4b5563; }
"""#

    static let script = #"""
"use strict";
const state = { session: null, line: null, items: [], index: 0, busy: false };
const $ = (id) => document.getElementById(id);

function requestID() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function loadSession() {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (!response.ok) throw new Error("session: HTTP " + response.status);
  state.session = await response.json();
}

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
  return body;
}

// A write: the same request id on every retry, so the server records it once.
async function post(path, payload) {
  payload.request_id = requestID();
  if (!state.session.authenticated) payload.reviewer = $("who").value.trim();
  for (let attempt = 0; attempt < 4; attempt++) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
        body: JSON.stringify(payload),
      });
    } catch (networkError) {
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      continue;
    }
    const body = await response.json().catch(() => ({}));
    if (response.status === 403 && attempt === 0) { await loadSession(); continue; }  // restarted station: new token
    if (!response.ok) throw new Error(body.error + (body.hint ? " (" + body.hint + ")" : ""));
    return body;
  }
  throw new Error("the station does not answer");
}

function base() { return "/api/lines/" + encodeURIComponent(state.line); }
function itemPath(item) { return base() + "/items/" + encodeURIComponent(item.item); }

function say(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function filterQuery() {
  const form = $("filters");
  const params = new URLSearchParams();
  params.set("verdict", Array.from(form.querySelectorAll("input[name=verdict]:checked"), (box) => box.value).join(","));
  for (const name of ["min", "max", "from", "to", "answered"]) {
    const value = form.elements[name].value;
    if (value !== "") params.set(name, value);
  }
  return params.toString();
}

async function loadQueue() {
  try {
    const queue = await getJSON(base() + "/queue?" + filterQuery());
    state.items = queue.items;
    state.index = 0;
    renderList();
    renderItem();
  } catch (error) { say(error.message, true); }
}

function renderList() {
  const list = $("queue-list");
  list.textContent = "";
  $("queue-count").textContent = "(" + state.items.length + ")";
  state.items.forEach((item, index) => {
    const row = document.createElement("li");
    row.dataset.item = item.item;
    row.dataset.index = index;
    if (index === state.index) row.className = "selected";
    if (item.answer) row.classList.add("done");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.file;
    const badge = document.createElement("span");
    badge.className = "badge " + (item.answer ? "answered" : item.verdict);
    badge.textContent = item.answer ? item.answer.answer : (item.score == null ? item.verdict : item.verdict + " " + item.score.toFixed(3));
    row.append(name, badge);
    row.addEventListener("click", () => { state.index = index; renderList(); renderItem(); });
    list.append(row);
  });
  const selected = list.querySelector("li.selected");
  if (selected) selected.scrollIntoView({ block: "nearest" });
}

function renderItem() {
  const item = state.items[state.index];
  $("empty").hidden = !!item;
  $("item").hidden = !item;
  $("current").dataset.item = item ? item.item : "";
  if (!item) return;
  $("item-file").textContent = item.file;
  const verdict = $("item-verdict");
  verdict.textContent = item.verdict;
  verdict.className = "badge " + item.verdict;
  const answered = $("item-answer");
  answered.hidden = !item.answer;
  if (item.answer) answered.textContent = "answered " + item.answer.answer + " by " + item.answer.who + (item.answer.label ? " (" + item.answer.label + ")" : "");
  if (item.score != null && item.threshold != null) {
    const top = Math.max(item.score, item.threshold) * 1.5;
    $("score-fill").style.width = (100 * item.score / top) + "%";
    $("score-threshold").style.left = (100 * item.threshold / top) + "%";
    $("item-score").textContent = "score " + item.score.toFixed(4) + " / threshold " + item.threshold.toFixed(4);
  } else {
    $("score-fill").style.width = "0";
    $("item-score").textContent = item.error ? item.error.kind + ": " + item.error.message : "no score";
  }
  $("item-model").textContent = "model " + item.model.id + " " + item.model.version;
  $("item-time").textContent = item.decided_at.replace("T", " ").replace("Z", " UTC");
  $("item-regions").textContent = item.regions.length + (item.regions_truncated ? "+" : "") + " region(s)";
  $("img-original").src = item.has_image ? itemPath(item) + "/image" : "";
  $("img-original").alt = item.has_image ? "original image" : "original not in the archive";
  $("img-heatmap").src = item.has_heatmap ? itemPath(item) + "/heatmap" : "";
  const svg = $("regions");
  svg.textContent = "";
  if (item.size.width && item.size.height) {
    svg.setAttribute("viewBox", "0 0 " + item.size.width + " " + item.size.height);
    for (const region of item.regions) {
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      for (const [key, value] of [["x", region.x], ["y", region.y], ["width", region.width], ["height", region.height]]) rect.setAttribute(key, value);
      svg.append(rect);
    }
  }
  const line = state.session.lines.find((l) => l.name === state.line) || {};
  $("answer-normal").disabled = !!item.answer || !item.has_image || !line.accepts;
  $("answer-defect").disabled = !!item.answer || !item.has_image || !line.keeps_defects;
  $("answer-skip").disabled = !!item.answer;
  $("answer-undo").disabled = !item.answer;
}

async function answer(kind) {
  const item = state.items[state.index];
  if (!item || state.busy) return;
  const button = $(kind === "undo" ? "answer-undo" : "answer-" + kind);
  if (button.disabled) return;
  state.busy = true;
  try {
    let record;
    if (kind === "undo") {
      record = await post(itemPath(item) + "/undo", {});
      item.answer = null;
      say("undone: " + item.file);
    } else {
      const payload = { answer: kind };
      if (kind === "defect") { payload.label = $("defect-label").value; payload.note = $("defect-note").value; }
      record = await post(itemPath(item) + "/answer", payload);
      item.answer = record;
      say(kind + ": " + item.file + (record.stored_as ? " → " + record.stored_as : ""));
      $("defect-note").value = "";
      if (state.index < state.items.length - 1) state.index++;
    }
    renderList();
    renderItem();
  } catch (error) {
    say(error.message, true);
  } finally {
    state.busy = false;
  }
}

function move(step) {
  const next = state.index + step;
  if (next < 0 || next >= state.items.length) return;
  state.index = next;
  renderList();
  renderItem();
}

async function loadSummary() {
  try {
    const s = await getJSON(base() + "/summary");
    const rows = (table, pairs) => {
      table.textContent = "";
      for (const [key, value] of pairs) {
        const row = table.insertRow();
        row.insertCell().textContent = key;
        row.insertCell().textContent = value;
      }
    };
    const percent = (x) => x == null ? "–" : (100 * x).toFixed(1) + " %";
    rows($("today"), [["ok", s.today.ok], ["defect", s.today.defect], ["error", s.today.error], ["reject rate", percent(s.today.reject_rate)]]);
    rows($("agreement"), [["answered normal/defect", s.agreement.answered], ["normal, model said defect", s.agreement.normal_but_defect],
      ["defect, model said ok", s.agreement.defect_but_ok], ["skipped", s.agreement.skipped], ["disagreement", percent(s.agreement.disagreement_rate)]]);
    const l = s.learning;
    rows($("learning"), l.enabled ? [["waiting in accepted/", l.waiting_in_accepted], ["new since last training", l.new_images_since_training + " of " + l.min_new_images],
      ["window", l.window || "any time"], ["retrain requested", l.retrain_requested ? "yes" : "no"], ["run in progress", l.run_in_progress ? "yes" : "no"]]
      : [["learning", "off for this line"]]);
    drawChart(s.days);
    const body = $("models").tBodies[0];
    body.textContent = "";
    for (const m of s.models.slice().reverse()) {
      const row = body.insertRow();
      if (m.current) row.className = "current";
      for (const value of [m.version + (m.current ? " *" : ""), m.decision || "–", m.false_reject_rate == null ? "–" : m.false_reject_rate.toFixed(4),
        m.auroc == null ? "–" : m.auroc.toFixed(4), m.decided_at || "–", m.reason || ""]) row.insertCell().textContent = value;
    }
    if (s.models.length === 0) body.insertRow().insertCell().textContent = "a single model bundle (no model store)";
  } catch (error) { say(error.message, true); }
}

function drawChart(days) {
  const svg = $("reject-chart");
  svg.textContent = "";
  const ns = "http://www.w3.org/2000/svg";
  const add = (name, attributes, text) => {
    const node = document.createElementNS(ns, name);
    for (const key in attributes) node.setAttribute(key, attributes[key]);
    if (text != null) node.textContent = text;
    svg.append(node);
    return node;
  };
  const top = Math.max(0.05, ...days.map((d) => d.reject_rate || 0));
  const width = 640 / days.length;
  add("line", { x1: 50, y1: 170, x2: 690, y2: 170, class: "axis" });
  add("text", { x: 4, y: 24 }, (100 * top).toFixed(1) + " %");
  add("text", { x: 4, y: 170 }, "0 %");
  days.forEach((d, i) => {
    const x = 50 + i * width;
    if (d.reject_rate != null) {
      const h = 150 * d.reject_rate / top;
      const bar = add("rect", { x: x + 4, y: 170 - h, width: width - 8, height: Math.max(h, 1), class: "bar" });
      const tip = document.createElementNS(ns, "title");
      tip.textContent = d.day + ": " + (100 * d.reject_rate).toFixed(1) + " % of " + (d.ok + d.defect);
      bar.append(tip);
    }
    add("text", { x: x + 2, y: 188 }, d.day.slice(5));
  });
}

function route() {
  const summary = location.hash === "#summary";
  $("queue-view").hidden = summary;
  $("summary-view").hidden = !summary;
  $("tab-queue").className = summary ? "" : "active";
  $("tab-summary").className = summary ? "active" : "";
  if (summary) loadSummary(); else loadQueue();
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest && event.target.closest("input, select, textarea")) return;
  if (event.ctrlKey || event.metaKey || event.altKey || location.hash === "#summary") return;
  const key = event.key.toLowerCase();
  const actions = { n: () => answer("normal"), d: () => answer("defect"), s: () => answer("skip"), u: () => answer("undo"),
    j: () => move(1), arrowdown: () => move(1), arrowright: () => move(1), k: () => move(-1), arrowup: () => move(-1), arrowleft: () => move(-1) };
  if (actions[key]) { event.preventDefault(); actions[key](); }
});

async function start() {
  try {
    await loadSession();
  } catch (error) { say(error.message, true); return; }
  const select = $("line");
  for (const line of state.session.lines) select.append(new Option(line.name, line.name));
  state.line = localStorage.getItem("rstpm.review.line") || state.session.lines[0]?.name;
  if (!state.session.lines.some((l) => l.name === state.line)) state.line = state.session.lines[0]?.name;
  select.value = state.line;
  select.addEventListener("change", () => { state.line = select.value; localStorage.setItem("rstpm.review.line", state.line); route(); });
  if (state.session.authenticated) {
    $("who-box").hidden = true;
    $("who-auth").textContent = "signed in as " + state.session.reviewer;
  } else {
    $("who").value = localStorage.getItem("rstpm.review.who") || "";
    $("who").addEventListener("change", () => localStorage.setItem("rstpm.review.who", $("who").value.trim()));
  }
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); loadQueue(); });
  $("answer-normal").addEventListener("click", () => answer("normal"));
  $("answer-defect").addEventListener("click", () => answer("defect"));
  $("answer-skip").addEventListener("click", () => answer("skip"));
  $("answer-undo").addEventListener("click", () => answer("undo"));
  window.addEventListener("hashchange", route);
  route();
}
start();
"""#
}
