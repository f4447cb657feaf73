// The pipeline dashboard: plain JavaScript over the public API, no build step.
// Polls /v1/queues and /v1/streams every second, dead letters, products and seats every two;
// follows /v1/events (server-sent events) for live job progress. When the API cannot be
// reached it says "disconnected" and keeps retrying; the last values stay on screen, dimmed.
"use strict";

(() => {
  const POLL_MS = 1000;
  const SLOW_POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const LAG_WINDOW_MS = 120000;
  const EVENTS_RETRY_MS = 3000;
  const MAX_JOBS_SHOWN = 40;
  const DEAD_LIMIT = 100;
  const QUEUE_FIELDS = ["waiting", "active", "delayed", "completed", "failed", "dead",
                        "consumers"];
  const JOB_EVENTS = ["job.created", "job.progress", "job.completed", "job.retried",
                      "job.failed", "job.dead_lettered", "job.redriven"];
  const LEDGER_EVENTS = ["inventory.defined", "inventory.stock_added", "reservation.confirmed",
                         "reservation.rejected", "reservation.cancelled"];
  const COLORS = ["#2f6fde", "#d9480f", "#1f8a4c", "#8e44ad", "#c2255c", "#0b7285",
                  "#e67700", "#495057"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

  function el(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) {
      const first = node.textContent === "";
      node.textContent = value;
      if (!first && node.tagName === "TD") {   // a short highlight on change
        node.classList.remove("changed");
        void node.offsetWidth;
        node.classList.add("changed");
      }
    }
  }

  // ---------------------------------------------------------------- connection

  const down = new Map();   // poller name -> error text, for the pollers failing now

  function showConnection() {
    const badge = $("connection");
    const detail = $("connection-detail");
    const state = down.size ? "disconnected" : "connected";
    badge.dataset.state = state;
    badge.textContent = state;
    document.body.classList.toggle("stale", down.size > 0);
    detail.hidden = down.size === 0;
    detail.textContent = down.size ? `${[...down.values()][0]}; retrying…` : "";
    if (!down.size) $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, {
        cache: "no-store",
        headers: { Accept: "application/json" },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        ...options,
      });
    } catch (err) {
      throw new Error(`the API cannot be reached (${err.message || err})`);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // Run `fn` now and again `ms` after each run ends (never two at once); `wake()` runs it soon.
  function poller(name, ms, fn) {
    let timer = null;
    let running = false;
    let again = false;
    async function run() {
      clearTimeout(timer);
      if (running) { again = true; return; }
      running = true;
      try {
        await fn();
        down.delete(name);
      } catch (err) {
        down.set(name, err.message || String(err));
      }
      running = false;
      showConnection();
      timer = setTimeout(run, again ? 0 : ms);
      again = false;
    }
    run();
    return { wake: () => { clearTimeout(timer); timer = setTimeout(run, 50); } };
  }

  // Keep the rows of `tbody` in step with `items`, by key, reusing the rows that stay (so a
  // button being clicked is not replaced under the pointer).
  function syncRows(tbody, items, key, build, update) {
    const rows = new Map([...tbody.children].map((row) => [row.dataset.key, row]));
    let previous = null;
    for (const item of items) {
      const k = key(item);
      let row = rows.get(k);
      if (!row) {
        row = build(item);
        row.dataset.key = k;
      }
      rows.delete(k);
      update(row, item);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== wanted) tbody.insertBefore(row, wanted);
      previous = row;
    }
    for (const row of rows.values()) row.remove();
  }

  // ---------------------------------------------------------------- queues

  let knownQueues = [];

  async function refreshQueues() {
    const queues = await api("v1/queues");
    syncRows($("queues").tBodies[0], queues, (q) => q.queue, (q) => {
      const row = el("tr", { "data-testid": `queue-${q.queue}` });
      row.append(el("th", { scope: "row", "data-testid": `queue-${q.queue}-name` }, q.queue));
      for (const field of QUEUE_FIELDS) {
        row.append(el("td", { class: "num", "data-testid": `queue-${q.queue}-${field}` }));
      }
      return row;
    }, (row, q) => {
      QUEUE_FIELDS.forEach((field, i) => {
        setText(row.cells[i + 1], q[field] === null ? "–" : q[field]);
      });
    });
    $("queues-empty").hidden = queues.length > 0;
    const names = queues.map((q) => q.queue);
    if (!source || names.some((n) => !knownQueues.includes(n))) {
      knownQueues = names;
      connectEvents();   // the first time, and to follow a new queue's events too
    }
    const dead = queues.reduce((n, q) => n + q.dead, 0);
    $("dead-total").textContent = dead ? `(${dead} in all)` : "";
  }

  // ---------------------------------------------------------------- dead letters

  function notice(text, isError) {
    const node = $("dead-notice");
    node.hidden = false;
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  async function redrive(button, d) {
    button.disabled = true;
    button.textContent = "Redriving…";
    try {
      const path = `v1/deadletters/${encodeURIComponent(d.queue)}/` +
                   `${encodeURIComponent(d.dead_id)}/redrive`;
      const moved = await api(path, { method: "POST" });
      notice(`Redrove ${d.event_id || d.dead_id} onto queue ${d.queue} ` +
             `(new entry ${moved.entry_id}).`, false);
      button.closest("tr").remove();
    } catch (err) {
      notice(`Redrive of ${d.event_id || d.dead_id} failed: ${err.message}`, true);
      button.disabled = false;
      button.textContent = "Redrive";
    }
    deadPoller.wake();
    queuePoller.wake();
  }

  async function refreshDead() {
    const letters = await api(`v1/deadletters?limit=${DEAD_LIMIT}`);
    syncRows($("deadletters").tBodies[0], letters, (d) => `${d.queue}/${d.dead_id}`, (d) => {
      const row = el("tr", { "data-testid": `dead-${d.queue}-${d.dead_id}` });
      row.append(el("td", {}, d.queue));
      row.append(el("td", { class: "mono" }, d.event_id || "(no id)"));
      row.append(el("td", {}, d.reason));
      row.append(el("td", { class: "error", title: d.error }, d.error));
      row.append(el("td", { class: "num" }, String(d.attempts)));
      row.append(el("td", { title: new Date(d.dead_at).toISOString() }));
      const button = el("button", {
        type: "button",
        "data-testid": `redrive-${d.queue}-${d.dead_id}`,
        "aria-label": `Redrive ${d.event_id || d.dead_id} of queue ${d.queue}`,
      }, "Redrive");
      button.addEventListener("click", () => redrive(button, d));
      const action = el("td");
      action.append(button);
      row.append(action);
      return row;
    }, (row, d) => {
      row.cells[5].textContent = since(d.dead_at);
    });
    $("dead-empty").hidden = letters.length > 0;
  }

  function since(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(ms).toLocaleString();
  }

  // ---------------------------------------------------------------- stock and seats

  async function refreshStock() {
    const [products, seats] = await Promise.all([api("v1/products"), api("v1/seats")]);
    syncRows($("stock").tBodies[0], products, (p) => String(p.id), (p) => {
      const row = el("tr", { "data-testid": `product-${p.id}` });
      row.append(el("th", { scope: "row" }, p.name));
      row.append(el("td", { class: "num" }));
      row.append(el("td", { class: "num", "data-testid": `stock-${p.id}` }));
      row.append(el("td", { class: "num", "data-testid": `initial-${p.id}` }));
      const share = el("td", { class: "share" });
      const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
                              "aria-label": `${p.name}: share left` });
      bar.append(el("div", { class: "fill" }));
      share.append(bar);
      row.append(share);
      return row;
    }, (row, p) => {
      setText(row.cells[0], p.name);
      setText(row.cells[1], p.price);
      setText(row.cells[2], p.available);
      setText(row.cells[3], p.initial_quantity);
      const bar = row.cells[4].firstChild;
      bar.setAttribute("aria-valuemax", String(p.initial_quantity));
      bar.setAttribute("aria-valuenow", String(p.available));
      const pct = p.initial_quantity ? Math.min(100, 100 * p.available / p.initial_quantity) : 0;
      bar.firstChild.style.width = `${pct}%`;
    });
    $("seats-available").textContent = String(seats.available);
    $("seats-initial").textContent = String(seats.initial);
    const blocked = $("seats-blocked");
    blocked.hidden = !seats.blocked;
    blocked.dataset.state = seats.blocked ? "on" : "off";
  }

  // ---------------------------------------------------------------- lag chart

  const lagHistory = new Map();   // "topic / group" -> [[time ms, lag], ...]
  const lagColors = new Map();

  async function refreshLag() {
    const streams = await api("v1/streams");
    const now = Date.now();
    for (const s of streams) {
      const topic = s.partition ? `${s.topic}#${s.partition}` : s.topic;
      for (const g of s.groups) {
        if (g.lag === null) continue;
        const key = `${topic} / ${g.group}`;
        if (!lagHistory.has(key)) lagHistory.set(key, []);
        lagHistory.get(key).push([now, g.lag]);
      }
    }
    for (const [key, points] of lagHistory) {
      while (points.length && points[0][0] < now - LAG_WINDOW_MS) points.shift();
      if (!points.length) lagHistory.delete(key);
    }
    drawLag(now);
  }

  function color(key) {
    if (!lagColors.has(key)) lagColors.set(key, COLORS[lagColors.size % COLORS.length]);
    return lagColors.get(key);
  }

  function niceMax(value) {
    if (value <= 5) return 5;
    const step = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function svg(tag, attrs, text = null) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }

  function drawLag(now) {
    const chart = $("lag-chart");
    // one SVG unit per CSS pixel, so text is never stretched
    const W = Math.max(320, Math.round(chart.getBoundingClientRect().width) || 640);
    const [H, left, right, top, bottom] = [220, 46, 10, 10, 22];
    chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
    let max = 0;
    for (const points of lagHistory.values()) for (const [, lag] of points) max = Math.max(max, lag);
    max = niceMax(max);
    const x = (t) => left + (W - left - right) * (1 - (now - t) / LAG_WINDOW_MS);
    const y = (v) => top + (H - top - bottom) * (1 - v / max);

    const grid = chart.querySelector(".grid");
    grid.replaceChildren();
    for (const v of [0, max / 2, max]) {
      grid.append(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v) }));
      grid.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" },
                      Number.isInteger(v) ? String(v) : v.toFixed(1)));
    }
    for (const [label, ago] of [["2 min ago", LAG_WINDOW_MS], ["1 min ago", 60000], ["now", 0]]) {
      const anchor = ago === LAG_WINDOW_MS ? "start" : ago === 0 ? "end" : "middle";
      grid.append(svg("text", { x: x(now - ago), y: H - 6, "text-anchor": anchor }, label));
    }

    const lines = chart.querySelector(".lines");
    lines.replaceChildren();
    const legend = $("lag-legend");
    legend.replaceChildren();
    for (const [key, points] of [...lagHistory].sort(([a], [b]) => a.localeCompare(b))) {
      const stroke = color(key);
      const coords = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      const line = svg("polyline", { points: coords.join(" "), stroke,
                                     "data-testid": `lag-line-${key}` });
      line.append(svg("title", {}, key));
      lines.append(line);
      const [lt, lv] = points[points.length - 1];
      lines.append(svg("circle", { cx: x(lt), cy: y(lv), r: 3, fill: stroke }));
      const item = el("li", { "data-testid": `lag-${key}` });
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = stroke;
      item.append(swatch, `${key}: `, el("strong", {}, String(lv)));
      legend.append(item);
    }
    if (!lagHistory.size) legend.append(el("li", { class: "muted" }, "No consumer group yet."));
  }

  // ---------------------------------------------------------------- live jobs

  const jobs = new Map();   // job id -> { item, timer }
  let hiddenJobs = 0;

  function jobItem(id) {
    let job = jobs.get(id);
    if (job) return job;
    if (jobs.size >= MAX_JOBS_SHOWN) {
      hiddenJobs += 1;
      showJobCounts();
      return null;
    }
    const item = el("li", { class: "job", "data-testid": `job-${id}` });
    const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0",
                            "aria-valuemax": "100", "aria-valuenow": "0",
                            "aria-label": `Job ${id} progress` });
    bar.append(el("div", { class: "fill" }));
    item.append(el("span", { class: "id", title: id }, id), bar,
                el("span", { class: "state", "data-testid": `job-${id}-state` }, "active"));
    $("jobs").append(item);
    job = { item, timer: null };
    jobs.set(id, job);
    showJobCounts();
    return job;
  }

  function showJobCounts() {
    $("jobs-empty").hidden = jobs.size > 0;
    const more = $("jobs-more");
    more.hidden = hiddenJobs === 0;
    more.textContent = hiddenJobs ? `${hiddenJobs} more job updates not shown` : "";
  }

  function setJob(id, { percent = null, state, cls = "active", fadeMs = 0 }) {
    const job = jobItem(id);
    if (!job) return;
    clearTimeout(job.timer);
    job.item.classList.remove("fading", "completed", "failed", "retried", "active");
    job.item.classList.add(cls);
    if (percent !== null) {
      const bar = job.item.querySelector(".bar");
      bar.setAttribute("aria-valuenow", String(percent));
      bar.firstChild.style.width = `${percent}%`;
    }
    const label = job.item.querySelector(".state");
    label.textContent = state;
    label.title = state;
    if (fadeMs) {
      job.timer = setTimeout(() => {
        job.item.classList.add("fading");
        job.timer = setTimeout(() => {
          job.item.remove();
          jobs.delete(id);
          if (hiddenJobs && jobs.size === 0) hiddenJobs = 0;
          showJobCounts();
        }, 1600);
      }, fadeMs);
    }
  }

  function onJobEvent(message) {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const data = event.data || {};
    const id = data.job_id;
    if (!id) return;
    switch (event.type || message.type) {
      case "job.progress":
        setJob(id, { percent: data.percent, state: `${data.percent}%` });
        break;
      case "job.completed":
        setJob(id, { percent: 100, state: "completed", cls: "completed", fadeMs: 2500 });
        queuePoller.wake();
        break;
      case "job.retried":
        if (jobs.has(id)) {
          setJob(id, { state: `retry ${data.attempt || ""}`.trim(), cls: "retried",
                       fadeMs: 2500 });
        }
        break;
      case "job.failed":
      case "job.dead_lettered":
        setJob(id, { state: "failed", cls: "failed", fadeMs: 5000 });
        queuePoller.wake();
        deadPoller.wake();
        break;
      case "job.redriven":
        deadPoller.wake();
        break;
      default:
        break;   // job.created: shown once a worker reports progress
    }
  }

  let source = null;
  let retryTimer = null;

  function showEvents(state) {
    const badge = $("events-state");
    badge.dataset.state = state;
    badge.textContent = state;
  }

  // A new connection replaces the old one only once it is open, so no event falls in between
  // (one that both deliver is shown twice, which changes nothing).
  function connectEvents() {
    clearTimeout(retryTimer);
    const previous = source;
    const params = new URLSearchParams({ since: "now" });
    for (const q of knownQueues) params.append("topic", `jobs:${q}`);
    params.append("topic", "reservations");
    const es = new EventSource(`v1/events?${params}`);
    source = es;
    if (!previous) showEvents("connecting");
    es.onopen = () => {
      showEvents("live");
      if (previous) previous.close();
    };
    es.onerror = () => {
      if (source !== es) {   // replaced meanwhile
        es.close();
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        // refused (not there, or an error status): the browser gives up, so do we, for now
        if (previous) previous.close();
        showEvents("unavailable");
        retryTimer = setTimeout(connectEvents, EVENTS_RETRY_MS);
      } else {
        showEvents("reconnecting");
      }
    };
    for (const type of JOB_EVENTS) es.addEventListener(type, onJobEvent);
    for (const type of LEDGER_EVENTS) es.addEventListener(type, () => stockPoller.wake());
  }

  // ---------------------------------------------------------------- start

  const queuePoller = poller("queues", POLL_MS, refreshQueues);
  const lagPoller = poller("streams", POLL_MS, refreshLag);
  const deadPoller = poller("deadletters", SLOW_POLL_MS, refreshDead);
  const stockPoller = poller("stock", SLOW_POLL_MS, refreshStock);
  void lagPoller;
  showJobCounts();   // the event stream starts after the first answer from /v1/queues
})();
