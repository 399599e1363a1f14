// The status page of tradingd: one EventSource on /events, the DOM filled with textContent
// only (nothing from the daemon is parsed as HTML), charts drawn as SVG. The control token
// lives in this page's memory only: never in a URL, a cookie or storage.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const series = [];          // [unix seconds, equity, drawdown]
let last = null;            // the last snapshot
let receivedAt = 0;         // when it came (this page's clock, ms)
let token = "";
let source = null;

const $ = (id) => document.getElementById(id);

function text(id, value, cls) {
  const el = $(id);
  el.textContent = value;
  el.className = cls || "";
}

function money(v) {
  const n = Number(v);
  if (!Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function pct(v) {
  const n = Number(v);
  return Number.isFinite(n) ? (n * 100).toFixed(2) + "%" : "–";
}

function qty(v) {
  const n = Number(v);
  return Number.isFinite(n) ? String(n) : "–";
}

function clock(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "–";
}

function age(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function rows(id, items, cells, empty) {
  const body = $(id).tBodies[0];
  const out = [];
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    }
    out.push(tr);
  }
  if (out.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.className = "empty";
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.textContent = empty;
    tr.appendChild(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function usage(used, limit) {
  const outer = document.createElement("span");
  outer.className = "bar";
  const inner = document.createElement("span");
  const share = limit > 0 ? Math.min(Math.max(used / limit, 0), 1) : 0;
  inner.style.width = (share * 100).toFixed(1) + "%";
  inner.className = share >= 0.9 ? "bad" : share >= 0.7 ? "warn" : "";
  outer.appendChild(inner);
  return outer;
}

function yes(flag, good, bad) {
  return flag ? [good, "good"] : [bad, "bad"];
}

function header(s) {
  const st = s.state;
  const r = s.readiness || {};
  text("h-mode", st.mode || s.info.mode || "–");
  text("h-account", s.info.account || "–");
  if (st.market_open === undefined) text("h-market", "–");
  else text("h-market", ...yes(st.market_open, "open", "closed"));
  const feed = st.feed ? st.feed.connected : r.feed;
  text("h-feed", ...(feed === undefined ? ["–", ""] : yes(feed, "up", "down")));
  const broker = st.broker ? st.broker.stream_connected : r.broker_stream;
  text("h-broker", ...(broker === undefined ? ["–", ""] : yes(broker, "up", "down")));
  const failing = Object.keys(r).filter((k) => !r[k]);
  text("h-ready", failing.length ? "no: " + failing.join(", ") : "yes", failing.length ? "warn" : "good");
  const kill = st.kill_switch || {};
  text("h-kill", kill.tripped ? "TRIPPED (" + kill.reason + ")" : "armed", kill.tripped ? "bad" : "good");
  text("h-halted", st.halted ? "HALTED" : "trading", st.halted ? "bad" : "good");
  sliceAge();
}

// The last slice's age, on the daemon's market clock, moved on by this page's clock between
// pushes (so the daemon need not push every second for it).
function sliceAge() {
  if (!last) return;
  const slice = last.state.last_slice;
  if (slice && last.now) {
    const now = last.now + (Date.now() - receivedAt) / 1000;
    text("h-slice", clock(slice) + " (" + age(now - Date.parse(slice) / 1000) + ")");
  } else if (slice) {
    text("h-slice", clock(slice));
  } else {
    text("h-slice", "none yet");
  }
}

function chart(id, values, times, area) {
  const svg = $(id);
  const box = svg.viewBox.baseVal;
  const parts = [];
  if (values.length > 0) {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (area) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (hi - lo < 1e-9) { hi += 1; lo -= area ? 0 : 1; }
    const t0 = times[0];
    const span = Math.max(times[times.length - 1] - t0, 1);
    const x = (t) => ((t - t0) / span) * box.width;
    const y = (v) => box.height - 4 - ((v - lo) / (hi - lo)) * (box.height - 8);
    let d = "";
    values.forEach((v, i) => { d += (i ? "L" : "M") + x(times[i]).toFixed(1) + "," + y(v).toFixed(1); });
    const path = document.createElementNS(SVG, "path");
    if (area) {
      d = "M0," + y(0).toFixed(1) + d.replace(/^M/, "L") + "L" + x(times[times.length - 1]).toFixed(1) + "," + y(0).toFixed(1) + "Z";
      path.setAttribute("class", "area");
    } else {
      path.setAttribute("class", "line");
    }
    path.setAttribute("d", d);
    parts.push(path);
  }
  svg.replaceChildren(...parts);
}

function charts() {
  const times = series.map((p) => p[0]);
  chart("equity-chart", series.map((p) => p[1]), times, false);
  chart("drawdown-chart", series.map((p) => -p[2]), times, true);
}

function tables(s) {
  const st = s.state;
  const account = st.account || {};
  text("equity-now", money(account.equity));
  text("drawdown-now", pct(account.drawdown));
  const composed = (st.targets && st.targets.composed) || {};
  const positions = Object.entries(st.positions || {});
  rows("positions", positions, ([sym, p]) => {
    const value = Number(p.qty) * Number(p.last_price);
    const upnl = (Number(p.last_price) - Number(p.avg_cost)) * Number(p.qty);
    return [sym, qty(p.qty), money(p.avg_cost), money(p.last_price), money(value), pct(p.weight),
      sym in composed ? pct(composed[sym]) : "–", money(upnl)];
  }, "no positions");
  rows("open-orders", st.open_orders || [], (o) =>
    [clock(o.time), o.symbol, o.side, qty(o.qty), qty(o.remaining), o.accepted ? "yes" : "no"], "none");
  rows("fills", (s.fills || []).slice(-15).reverse(), (f) =>
    [clock(f.time), f.symbol, f.side, qty(f.qty), money(f.price)], "none yet");
  rows("orders", (s.orders || []).slice().reverse(), (o) =>
    [clock(o.time), o.symbol, o.side, qty(o.requested), qty(o.qty), pct(o.target_weight), o.risk,
      o.risk_reason || "", o.status], "none today");
  const risk = st.risk || {};
  const limits = ["max_weight", "max_gross", "max_drawdown", "daily_loss_limit"]
    .filter((k) => risk[k] && typeof risk[k] === "object");
  rows("risk", limits, (k) => [k + " " + pct(risk[k].limit), pct(risk[k].used), usage(risk[k].used, risk[k].limit)], "–");
  const targets = st.targets;
  const head = $("targets").tHead.rows[0];
  const strategies = targets ? Object.keys(targets.by_strategy || {}) : [];
  const titles = ["symbol", "composed", ...strategies];
  if (head.cells.length !== titles.length || [...head.cells].some((c, i) => c.textContent !== titles[i])) {
    head.replaceChildren(...titles.map((t) => { const th = document.createElement("th"); th.textContent = t; return th; }));
  }
  rows("targets", Object.keys(composed).sort(), (sym) =>
    [sym, pct(composed[sym]), ...strategies.map((k) => pct((targets.by_strategy[k] || {})[sym] || 0))], "no targets yet");
}

function render(s) {
  last = s;
  receivedAt = Date.now();
  if (s.point && (series.length === 0 || series[series.length - 1][0] < s.point[0])) series.push(s.point);
  else if (s.point && series.length) series[series.length - 1] = s.point;
  header(s);
  charts();
  tables(s);
  $("controls-off").hidden = s.control;
  $("controls-on").hidden = !s.control;
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  document.body.dataset.lastSlice = s.state.last_slice || "";
}

async function act(path, label) {
  token = $("token").value.trim() || token;
  const result = $("control-result");
  if (!token) { result.textContent = "enter the control token first"; result.className = "warn"; return; }
  result.textContent = label + "…";
  result.className = "";
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token },
      cache: "no-store",
      credentials: "omit",
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      result.textContent = label + ": done";
      result.className = "good";
      $("token").value = "";  // kept in memory for the next action, not in the field
    } else {
      if (response.status === 401) token = "";
      result.textContent = label + " refused (" + response.status + "): " + (body.error || response.statusText);
      result.className = "bad";
    }
  } catch (e) {
    result.textContent = label + " failed: " + e;
    result.className = "bad";
  }
}

function connect() {
  source = new EventSource("/events");
  source.addEventListener("history", (e) => {
    series.length = 0;
    for (const p of JSON.parse(e.data).series) series.push(p);
  });
  source.onmessage = (e) => { render(JSON.parse(e.data)); text("h-link", "live", "good"); };
  source.onerror = () => text("h-link", "reconnecting", "warn");
}

document.addEventListener("DOMContentLoaded", () => {
  $("do-halt").addEventListener("click", () => act("/halt", "halt"));
  $("do-resume").addEventListener("click", () => act("/resume", "resume"));
  $("do-reset").addEventListener("click", () => act("/kill-switch/reset", "reset kill switch"));
  $("do-flatten").addEventListener("click", () => { $("confirm-flatten").hidden = false; });
  $("do-flatten-no").addEventListener("click", () => { $("confirm-flatten").hidden = true; });
  $("do-flatten-yes").addEventListener("click", () => {
    $("confirm-flatten").hidden = true;
    act("/flatten", "flatten");
  });
  connect();
  setInterval(sliceAge, 1000);
});
// Close the stream with the page, so the daemon stops pushing to it at once.
window.addEventListener("pagehide", () => { if (source) source.close(); });
