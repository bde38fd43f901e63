// smsmesh console: polls the router's JSON API and draws tables and charts.
// No framework, no build step, nothing loaded from elsewhere. Every value from the API is
// put into the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "smsmesh.console.key";
  const POLL_MS = 2000;
  const STATS_EVERY = 2; // polls
  const ROUTES_EVERY = 15; // polls
  const REQUEST_TIMEOUT_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  let key = null;
  let timer = null;
  let polls = 0;
  let selected = null; // message id whose timeline is open
  let filter = {};
  let olderCursor = null; // next_cursor of the last page shown
  let extraPages = []; // messages loaded with "Older messages"

  // -- key handling -------------------------------------------------------------------------

  function takeKeyFromFragment() {
    // `#key=...` lets a script open the console logged in; the fragment never reaches the
    // server, and is removed from the address bar at once.
    const match = /(?:^#|&)key=([^&]+)/.exec(location.hash);
    if (!match) return null;
    history.replaceState(null, "", location.pathname + location.search);
    return decodeURIComponent(match[1]);
  }

  function showLogin(message) {
    stop();
    key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    $("main").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    document.body.dataset.state = "login";
    $("key").focus();
  }

  function start(newKey) {
    key = newKey;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    polls = 0;
    poll();
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  // -- API ----------------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path) {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch(path, {
        headers: { Authorization: "Bearer " + key, Accept: "application/json" },
        signal: controller.signal,
        cache: "no-store",
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401) throw new Unauthorized(body.message || "unauthorized");
      if (!response.ok) {
        const err = new Error(body.message || response.statusText);
        err.body = body;
        throw err;
      }
      return body;
    } finally {
      clearTimeout(timeout);
    }
  }

  function searchPath(cursor) {
    const params = new URLSearchParams({ limit: "25" });
    for (const [name, value] of Object.entries(filter)) if (value) params.set(name, value);
    if (cursor) params.set("cursor", cursor);
    return "v1/messages?" + params.toString();
  }

  async function poll() {
    stop();
    try {
      const jobs = [
        api("v1/connections").then(drawConnections),
        api(searchPath(null)).then(drawMessages),
      ];
      if (polls % STATS_EVERY === 0) jobs.push(api("v1/stats?window=600&bucket=10").then(drawStats));
      if (polls % ROUTES_EVERY === 0) jobs.push(api("v1/routes").then(drawRoutes));
      if (selected) jobs.push(loadTimeline(selected));
      await Promise.all(jobs);
      polls += 1;
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.state = "ready";
    } catch (err) {
      if (err instanceof Unauthorized) {
        showLogin("The router refused this key: " + err.message);
        return;
      }
      if (err.body && err.body.details && err.body.details.parameter) {
        $("filter-error").textContent = err.message;
      }
      $("status").textContent = "update failed: " + err.message;
      document.body.dataset.state = "error";
    }
    if (key !== null) timer = setTimeout(poll, POLL_MS);
  }

  // -- drawing helpers ----------------------------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }

  function td(child) {
    const cell = document.createElement("td");
    cell.appendChild(child);
    return cell;
  }

  function badge(text, kind) {
    return td(el("span", text, "badge " + kind));
  }

  function time(isoString) {
    if (!isoString) return "–";
    return new Date(isoString).toLocaleTimeString();
  }

  function replaceRows(table, rows) {
    const body = $(table).tBodies[0];
    body.replaceChildren(...rows);
  }

  // -- connections, routes ------------------------------------------------------------------

  function drawConnections(data) {
    replaceRows(
      "connections",
      data.connections.map((c) => {
        const tr = row([
          el("td", c.name),
          badge(c.state, c.state),
          el("td", c.queued, "num queued"),
          el("td", c.tps.toFixed(1), "num tps"),
          el("td", c.tps_limit == null ? "unlimited" : c.tps_limit, "num"),
          el("td", c.window_size ? c.window_in_use + " / " + c.window_size : "–", "num"),
          el("td", c.updated_at ? time(c.updated_at) + " (" + c.age_seconds + " s ago)" : "never"),
          el("td", c.last_error || (c.throttled_until ? "throttled until " + time(c.throttled_until) : "")),
        ]);
        tr.dataset.connection = c.name;
        tr.dataset.state = c.state;
        return tr;
      }),
    );
  }

  function describeMatch(m) {
    const parts = [];
    if (m.destination_prefixes.length) parts.push("prefix " + m.destination_prefixes.join(", "));
    if (m.countries.length) parts.push("country " + m.countries.join(", "));
    if (m.senders.length) parts.push("sender " + m.senders.join(", "));
    if (m.applications.length) parts.push("application " + m.applications.join(", "));
    if (m.priorities.length) parts.push("priority " + m.priorities.join(", "));
    return parts.length ? parts.join("; ") : "everything";
  }

  function drawRoutes(data) {
    replaceRows(
      "routes",
      data.routes.map((r, i) => {
        const targets = r.targets
          .map((t) => t.connection + (t.weight == null ? "" : " (weight " + t.weight + ")"))
          .join(" → ");
        const tr = row([el("td", i + 1), el("td", r.name), el("td", r.priority, "num"),
          el("td", describeMatch(r.match)), el("td", targets)]);
        tr.dataset.route = r.name;
        return tr;
      }),
    );
    $("route-problems").replaceChildren(...data.problems.map((p) => el("li", p)));
  }

  // -- messages and timelines ---------------------------------------------------------------

  function messageRow(m) {
    const tr = row([
      el("td", time(m.created_at)),
      el("td", "+" + m.to),
      badge(m.status, m.status),
      el("td", m.route),
      el("td", m.connection),
      el("td", m.attempts, "num"),
      el("td", m.id, "id"),
    ]);
    tr.dataset.id = m.id;
    tr.dataset.status = m.status;
    tr.tabIndex = 0;
    if (m.id === selected) tr.classList.add("selected");
    return tr;
  }

  function drawMessages(data) {
    if (!extraPages.length) olderCursor = data.next_cursor;
    const firstIds = new Set(data.messages.map((m) => m.id));
    const older = extraPages.filter((m) => !firstIds.has(m.id));
    replaceRows("messages", data.messages.concat(older).map(messageRow));
    $("more").hidden = !olderCursor;
  }

  async function loadOlder() {
    if (!olderCursor) return;
    const data = await api(searchPath(olderCursor));
    extraPages = extraPages.concat(data.messages);
    olderCursor = data.next_cursor;
    const body = $("messages").tBodies[0];
    for (const m of data.messages) body.appendChild(messageRow(m));
    $("more").hidden = !olderCursor;
  }

  async function loadTimeline(id) {
    const m = await api("v1/messages/" + encodeURIComponent(id));
    if (selected !== id) return;
    $("timeline").hidden = false;
    $("timeline").dataset.id = id;
    $("timeline-id").textContent = id;
    const facts = [
      ["status", m.status], ["to", "+" + m.to], ["from", m.from], ["route", m.route],
      ["targets", m.targets.join(" → ")], ["segments", m.segments], ["attempts", m.attempts],
      ["client ref", m.client_ref || "–"], ["SMSC ids", m.smsc_message_ids.join(", ") || "–"],
      ["expires", new Date(m.expires_at).toLocaleString()],
    ];
    $("timeline-facts").replaceChildren(
      ...facts.flatMap(([name, value]) => [el("dt", name), el("dd", value)]),
    );
    $("timeline-events").replaceChildren(
      ...m.events.map((e) => {
        const li = el("li");
        li.dataset.kind = e.kind;
        li.appendChild(el("time", new Date(e.at).toLocaleTimeString() + "." +
          String(new Date(e.at).getMilliseconds()).padStart(3, "0")));
        li.appendChild(el("strong", e.kind));
        if (e.status) li.appendChild(el("span", e.status, "badge " + e.status));
        if (e.connection) li.appendChild(el("span", "on " + e.connection, "muted"));
        if (e.detail && Object.keys(e.detail).length) {
          li.appendChild(el("code", JSON.stringify(e.detail)));
        }
        return li;
      }),
    );
  }

  function select(id) {
    selected = id;
    for (const tr of $("messages").tBodies[0].rows) {
      tr.classList.toggle("selected", tr.dataset.id === id);
    }
    loadTimeline(id).catch((err) => {
      $("status").textContent = "timeline failed: " + err.message;
    });
  }

  // -- charts -------------------------------------------------------------------------------

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const CHART = { w: 600, h: 180, left: 44, right: 8, top: 10, bottom: 22 };

  function niceMax(value) {
    if (value <= 0) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 5, 10]) if (value <= m * step) return m * step;
    return 10 * step;
  }

  function axes(svg, buckets, max, unit) {
    const { w, h, left, right, top, bottom } = CHART;
    const children = [];
    for (const frac of [0, 0.5, 1]) {
      const y = top + (1 - frac) * (h - top - bottom);
      children.push(svgEl("line", { x1: left, x2: w - right, y1: y, y2: y, class: "grid" }));
      const label = (max * frac).toFixed(max * frac < 10 && frac > 0 ? 1 : 0);
      children.push(svgEl("text", { x: left - 4, y: y + 4, class: "axis", "text-anchor": "end" }, label));
    }
    if (buckets.length) {
      children.push(svgEl("text", { x: left, y: h - 6, class: "axis" }, time(buckets[0].start)));
      children.push(svgEl("text", { x: w - right, y: h - 6, class: "axis", "text-anchor": "end" },
        "now"));
    }
    children.push(svgEl("text", { x: left + 4, y: top + 10, class: "axis" }, unit));
    svg.replaceChildren(...children);
  }

  function drawThroughput(buckets, seconds) {
    const svg = $("throughput-chart");
    const rates = (name) => buckets.map((b) => b[name] / seconds);
    const series = ["accepted", "submitted", "delivered"].map((name) => [name, rates(name)]);
    const max = niceMax(Math.max(0, ...series.flatMap(([, values]) => values)));
    axes(svg, buckets, max, "messages/s");
    const { w, h, left, right, top, bottom } = CHART;
    const step = (w - left - right) / Math.max(1, buckets.length - 1);
    for (const [name, values] of series) {
      const points = values.map((v, i) =>
        (left + i * step).toFixed(1) + "," + (top + (1 - v / max) * (h - top - bottom)).toFixed(1));
      svg.appendChild(svgEl("polyline", { points: points.join(" "), class: "line " + name }));
    }
    const total = buckets.reduce((sum, b) => sum + b.submitted, 0);
    $("throughput-caption").textContent =
      "last " + Math.round((buckets.length * seconds) / 60) + " min, " + seconds + " s buckets; " +
      total + " submitted";
  }

  function drawOutcomes(buckets) {
    const svg = $("outcomes-chart");
    const max = niceMax(Math.max(0, ...buckets.map((b) => b.delivered + b.failed)));
    axes(svg, buckets, max, "receipts per bucket");
    const { w, h, left, right, top, bottom } = CHART;
    const slot = (w - left - right) / Math.max(1, buckets.length);
    const scale = (v) => (v / max) * (h - top - bottom);
    buckets.forEach((b, i) => {
      const x = left + i * slot;
      const width = Math.max(1, slot - 1);
      const hd = scale(b.delivered);
      const hf = scale(b.failed);
      const base = h - bottom;
      if (hd > 0) svg.appendChild(svgEl("rect", { x, y: base - hd, width, height: hd, class: "bar delivered" }));
      if (hf > 0) svg.appendChild(svgEl("rect", { x, y: base - hd - hf, width, height: hf, class: "bar failed" }));
    });
    const delivered = buckets.reduce((s, b) => s + b.delivered, 0);
    const failed = buckets.reduce((s, b) => s + b.failed, 0);
    const total = delivered + failed;
    $("outcomes-caption").textContent = total
      ? (100 * delivered / total).toFixed(1) + "% delivered of " + total
      : "no receipts yet";
    svg.dataset.delivered = delivered;
    svg.dataset.failed = failed;
  }

  function drawStats(data) {
    drawThroughput(data.buckets, data.bucket_seconds);
    drawOutcomes(data.buckets);
  }

  // -- wiring -------------------------------------------------------------------------------

  function readFilter() {
    filter = {
      to: $("filter-to").value.trim(),
      status: $("filter-status").value,
      connection: $("filter-connection").value.trim(),
    };
    extraPages = [];
    olderCursor = null;
    $("filter-error").textContent = "";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("key").value.trim();
      $("key").value = "";
      if (value) start(value);
    });
    $("logout").addEventListener("click", () => showLogin(""));
    $("filter").addEventListener("submit", (event) => {
      event.preventDefault();
      readFilter();
      poll();
    });
    $("filter-clear").addEventListener("click", () => {
      $("filter").reset();
      readFilter();
      poll();
    });
    $("more").addEventListener("click", () => {
      loadOlder().catch((err) => { $("status").textContent = "loading failed: " + err.message; });
    });
    const messages = $("messages").tBodies[0];
    messages.addEventListener("click", (event) => {
      const tr = event.target.closest("tr");
      if (tr && tr.dataset.id) select(tr.dataset.id);
    });
    messages.addEventListener("keydown", (event) => {
      const tr = event.target.closest("tr");
      if (event.key === "Enter" && tr && tr.dataset.id) select(tr.dataset.id);
    });
    const saved = takeKeyFromFragment() || sessionStorage.getItem(KEY_STORAGE);
    if (saved) start(saved);
    else showLogin("");
  });
})();
