/* TrainWatch dashboard: the fleet, the selected server's bottleneck and figures, and its charts.

   Requests: /api/servers/ once at start (and while the selected server has no samples yet);
   /api/metrics/latest/ at the server's sample interval (its `servers` list keeps the fleet
   current); /api/metrics/history/ once per refresh, at max(interval, resolution). Between full
   reads, a refresh asks only for the last minutes and merges them into the newest buckets.
   The URL holds server, range and zoom (?server=gpu-box-01&range=24h&from=…&to=…).

   window.trainwatch is a small read-only handle for tests and benchmarks: chart lengths, the
   state, every request made, and drawnAt (ms since navigation when all charts first drew;
   a 'trainwatch:drawn' event fires after every redraw with new history). */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, labels, states, clock, h, chip } = TW;

  const config = JSON.parse(document.getElementById("tw-config").textContent);
  const RANGES = [
    ["15m", 15],
    ["1h", 60],
    ["6h", 360],
    ["24h", 1440],
    ["7d", 10080],
    ["30d", 43200],
    ["90d", 129600],
  ].filter(([, minutes]) => minutes <= config.maxHistoryMinutes);
  const RANGE_MINUTES = Object.fromEntries(RANGES);
  const DEFAULT_RANGE = RANGE_MINUTES["1h"] ? "1h" : RANGES[RANGES.length - 1][0];
  const MIN_REFRESH_S = 2; // never poll faster than this, whatever the agent's interval
  const SLOW_POLL_S = 15; // a server that is not reporting is asked less often
  const WAIT_POLL_S = 5; // waiting for a first sample, or for a first server
  const FULL_EVERY_MS = 10 * 60 * 1000; // re-read the whole window now and then, not only its tail
  const TAIL_MAX_RESOLUTION_S = 600; // coarser than this, a tail read costs about what a full one does

  const $ = (id) => document.getElementById(id);
  const state = {
    server: null, // slug of the selected server
    range: DEFAULT_RANGE,
    zoom: null, // [from, to] in epoch seconds, or null
    servers: [],
    snapshot: null,
    history: null, // {points (as the API sends them), meta}
    fullAt: 0,
    generation: 0, // bumps on every selection, so that late answers for an old one are dropped
    failing: false,
    updatedAt: null,
  };
  const timers = { latest: null, history: null, servers: null };
  const charts = new TW.Charts($("charts"), { onZoom: zoomTo, onResetZoom: resetZoom });

  const debug = (window.trainwatch = {
    state,
    charts: charts.plots,
    requests: [],
    drawnAt: null,
    drawCount: 0,
    lengths: () => charts.lengths(),
    seriesCounts: () => Object.fromEntries(Object.entries(charts.plots).map(([id, u]) => [id, u.series.length - 1])),
  });

  // --- requests ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const query = new URLSearchParams(params || {}).toString();
    const url = path + (query ? "?" + query : "");
    const sentAt = Date.now();
    const record = { path, params: params || {}, status: null, at: sentAt };
    debug.requests.push(record);
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (err) {
      record.status = 0;
      throw new ApiError(0, "cannot reach TrainWatch");
    }
    record.status = response.status;
    if (response.status === 401) {
      // The session ended: sign in again and come back to this very view.
      location.assign("/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(401, "signed out");
    }
    const body = await response.json().catch(() => ({ ok: false, error: "unreadable answer" }));
    if (!response.ok) throw new ApiError(response.status, body.error || response.statusText);
    clock.fromResponse(response, sentAt, Date.now());
    return body;
  }

  function connection(ok, message) {
    state.failing = !ok;
    if (ok) state.updatedAt = Date.now();
    const el = $("conn");
    el.className = "conn " + (ok ? "ok" : "error");
    el.querySelector(".text").textContent = message || "";
    if (ok) tickConnection();
  }
  function tickConnection() {
    if (state.failing || !state.updatedAt) return;
    const age = (Date.now() - state.updatedAt) / 1000;
    $("conn").querySelector(".text").textContent = age < 1.5 ? "Updated just now" : "Updated " + fmt.ago(age);
  }
  function failed(err, what) {
    if (err.status === 401) return;
    connection(false, err.status === 0 ? "Cannot reach TrainWatch, retrying" : what + " failed: " + err.message);
  }

  // --- URL --------------------------------------------------------------------------------------

  function readUrl() {
    const q = new URLSearchParams(location.search);
    state.server = q.get("server") || null;
    state.range = RANGE_MINUTES[q.get("range")] ? q.get("range") : DEFAULT_RANGE;
    const from = Date.parse(q.get("from") || "");
    const to = Date.parse(q.get("to") || "");
    state.zoom = from < to ? [from / 1000, to / 1000] : null;
  }
  function iso(seconds) {
    return new Date(Math.round(seconds) * 1000).toISOString().replace(".000Z", "Z");
  }
  function writeUrl(how) {
    const q = new URLSearchParams();
    if (state.server) q.set("server", state.server);
    q.set("range", state.range);
    if (state.zoom) {
      q.set("from", iso(state.zoom[0]));
      q.set("to", iso(state.zoom[1]));
    }
    const url = location.pathname + "?" + q.toString();
    if (url === location.pathname + location.search) return;
    if (how === "push") history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }

  // --- selection and refresh --------------------------------------------------------------------

  function selectedServer() {
    return state.servers.find((s) => s.slug === state.server) || null;
  }
  function intervalOf(server) {
    return Math.max(MIN_REFRESH_S, (server && server.interval_seconds) || states.DEFAULT_INTERVAL);
  }
  function stopTimers() {
    for (const k of Object.keys(timers)) {
      clearTimeout(timers[k]);
      timers[k] = null;
    }
  }
  function schedule(name, seconds, fn) {
    clearTimeout(timers[name]);
    timers[name] = setTimeout(() => {
      timers[name] = null;
      // A hidden tab asks for nothing; it catches up the moment it is shown again.
      if (document.hidden) return;
      fn();
    }, seconds * 1000);
  }

  async function start() {
    readUrl();
    renderRanges();
    try {
      const body = await api("/api/servers/");
      state.servers = body.servers;
      connection(true);
    } catch (err) {
      failed(err, "Loading servers");
      schedule("servers", WAIT_POLL_S, start);
      return;
    }
    renderFleet();
    if (!state.server) {
      // As the API does without a `server`: the first server with samples, else the first.
      const first = state.servers.find((s) => s.latest_snapshot_at) || state.servers[0];
      state.server = first ? first.slug : null;
    }
    select(state.server, "replace");
  }

  /* Show a server: its figures, then its charts. `how` is how the URL changes: push, replace. */
  function select(slug, how) {
    const changed = slug !== (state.shownServer || null);
    state.server = slug;
    state.shownServer = slug;
    state.generation += 1;
    stopTimers();
    if (changed) {
      state.snapshot = null;
      state.history = null;
      charts.destroy();
    }
    writeUrl(how);
    renderFleet();
    renderRanges();
    const server = selectedServer();
    if (!server) return renderEmpty();
    $("empty").classList.add("hidden");
    if (!server.latest_snapshot_at) return waitForFirstSample();
    renderSelected();
    const generation = state.generation;
    loadLatest(generation);
    loadHistory(generation, "full");
  }

  async function loadLatest(generation) {
    try {
      const body = await api("/api/metrics/latest/", { server: state.server });
      if (generation !== state.generation) return;
      clock.fromSnapshot(body.snapshot, Date.now());
      state.servers = body.servers;
      state.snapshot = body.snapshot;
      connection(true);
      renderFleet();
      renderSelected();
    } catch (err) {
      if (generation !== state.generation) return;
      failed(err, "Latest sample");
    }
    const st = states.serverState(selectedServer() || {}, clock.now()).state;
    const period = st === "live" || st === "late" ? intervalOf(selectedServer()) : SLOW_POLL_S;
    schedule("latest", period, () => loadLatest(generation));
  }

  async function loadHistory(generation, mode) {
    const minutes = RANGE_MINUTES[state.range];
    const tail = mode !== "full" && tailMinutes(minutes);
    try {
      const body = await api("/api/metrics/history/", { server: state.server, minutes: tail || minutes });
      if (generation !== state.generation) return;
      if (tail) {
        state.history.points = mergeTail(state.history.points, body.points, state.history.meta);
      } else {
        state.history = { points: body.points, meta: meta(body) };
        state.fullAt = Date.now();
      }
      state.servers = body.servers;
      connection(true);
      renderFleet();
      drawCharts();
    } catch (err) {
      if (generation !== state.generation) return;
      failed(err, "History");
    }
    const resolution = state.history ? state.history.meta.resolution_seconds : 0;
    const period = Math.max(intervalOf(selectedServer()), resolution || 0);
    schedule("history", period, () => loadHistory(generation, "refresh"));
  }

  function meta(body) {
    const { minutes, point_count, stride, source, resolution_seconds } = body;
    return { minutes, point_count, stride, source, resolution_seconds: resolution_seconds || stride * 2 };
  }

  /* Minutes to ask for so that the answer covers the newest (still growing) point of the window,
     or false when the whole window must be read again. */
  function tailMinutes(minutes) {
    const h = state.history;
    if (!h || !h.points.length || h.meta.minutes !== minutes) return false;
    if (h.meta.resolution_seconds > TAIL_MAX_RESOLUTION_S || Date.now() - state.fullAt > FULL_EVERY_MS) return false;
    const newest = Date.parse(h.points[h.points.length - 1].collected_at) / 1000;
    const wanted = Math.ceil((clock.now() / 1000 - newest + 2) / 60);
    return wanted < minutes ? Math.max(1, wanted) : false;
  }

  /* The tail's samples replace the newest point of the window and extend it, grouped into
     buckets of the window's resolution (from that newest point's start), as the API groups them. */
  function mergeTail(points, tail, m) {
    if (!points.length) return tail;
    const cut = Date.parse(points[points.length - 1].collected_at) / 1000;
    const fresh = tail.filter((p) => Date.parse(p.collected_at) / 1000 >= cut);
    if (!fresh.length) return points;
    const kept = points.slice(0, -1);
    let merged;
    if (m.source === "raw" && m.stride === 1) merged = kept.concat(fresh);
    else {
      const buckets = new Map();
      for (const p of fresh) {
        const start = cut + Math.floor((Date.parse(p.collected_at) / 1000 - cut) / m.resolution_seconds) * m.resolution_seconds;
        if (!buckets.has(start)) buckets.set(start, []);
        buckets.get(start).push(p);
      }
      merged = kept.concat([...buckets].map(([start, group]) => average(start, group)));
    }
    const windowStart = clock.now() / 1000 - m.minutes * 60 - m.resolution_seconds;
    const first = merged.findIndex((p) => Date.parse(p.collected_at) / 1000 >= windowStart);
    return first > 0 ? merged.slice(first) : merged;
  }

  function meanOf(items, key) {
    let sum = 0;
    let n = 0;
    for (const it of items) {
      if (it[key] != null) {
        sum += it[key];
        n += 1;
      }
    }
    return n ? sum / n : null;
  }
  function average(startSeconds, group) {
    const out = { collected_at: new Date(startSeconds * 1000).toISOString() };
    for (const key of Object.keys(group[0])) {
      if (typeof group[0][key] === "number" || group[0][key] === null) out[key] = meanOf(group, key);
    }
    const votes = {};
    for (const p of group) if (p.bottleneck) votes[p.bottleneck] = (votes[p.bottleneck] || 0) + 1;
    out.bottleneck = Object.keys(votes).sort((a, b) => votes[b] - votes[a])[0] || null;
    out.gpus = averageDevices(group, "gpus", "gpu_index");
    out.disks = averageDevices(group, "disks", "device");
    return out;
  }
  function averageDevices(group, field, key) {
    const byKey = new Map();
    for (const p of group) {
      for (const d of p[field] || []) {
        if (!byKey.has(d[key])) byKey.set(d[key], []);
        byKey.get(d[key]).push(d);
      }
    }
    return [...byKey].map(([k, items]) => {
      const out = { [key]: k };
      for (const f of Object.keys(items[0])) if (f !== key) out[f] = meanOf(items, f);
      return out;
    });
  }

  async function waitForFirstSample() {
    renderSelected();
    renderWaiting();
    const generation = state.generation;
    schedule("servers", WAIT_POLL_S, async () => {
      try {
        const body = await api("/api/servers/");
        if (generation !== state.generation) return;
        state.servers = body.servers;
        connection(true);
      } catch (err) {
        failed(err, "Loading servers");
      }
      if (generation !== state.generation) return;
      const server = selectedServer();
      if (server && server.latest_snapshot_at) select(state.server, "replace");
      else waitForFirstSample();
    });
  }

  // --- time range and zoom ----------------------------------------------------------------------

  function windowScale() {
    const now = clock.now() / 1000;
    return [now - RANGE_MINUTES[state.range] * 60, now];
  }
  function setRange(range) {
    if (range === state.range && !state.zoom) return;
    const rangeChanged = range !== state.range;
    state.range = range;
    state.zoom = null;
    if (!rangeChanged) {
      writeUrl("push");
      renderRanges();
      return redrawScale();
    }
    state.history = null;
    select(state.server, "push");
  }
  function zoomTo(min, max) {
    state.zoom = [min, max];
    writeUrl("push");
    redrawScale();
  }
  function resetZoom() {
    if (!state.zoom) return;
    state.zoom = null;
    writeUrl("push");
    redrawScale();
  }
  function redrawScale() {
    renderZoom();
    if (state.history) drawCharts();
  }

  // --- rendering: fleet -------------------------------------------------------------------------

  const rows = new Map(); // slug -> {li, ...parts}

  function renderFleet() {
    const list = $("fleet");
    const now = clock.now();
    const seen = new Set();
    for (const server of state.servers) {
      seen.add(server.slug);
      let row = rows.get(server.slug);
      if (!row) {
        row = fleetRow(server);
        rows.set(server.slug, row);
      }
      list.append(row.li); // keeps the API's order (by name)
      updateRow(row, server, now);
    }
    for (const [slug, row] of rows) {
      if (!seen.has(slug)) {
        row.li.remove();
        rows.delete(slug);
      }
    }
    renderSummary(now);
  }

  function fleetRow(server) {
    const row = {
      dot: h("span", { class: "dot" }),
      name: h("span", { class: "name" }),
      seen: h("span", { class: "seen num" }),
      state: h("span", { class: "state" }),
      chip: h("span"),
      gpu: h("span", { class: "gpu num" }),
    };
    row.link = h(
      "a",
      { class: "server-row", href: "?server=" + encodeURIComponent(server.slug), "data-slug": server.slug },
      row.dot,
      row.name,
      row.seen,
      h("span", { class: "meta" }, row.state, row.chip, row.gpu)
    );
    row.link.addEventListener("click", (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; // new tab: let the browser do it
      e.preventDefault();
      if (server.slug !== state.server) {
        state.zoom = null;
        select(server.slug, "push");
      }
    });
    row.li = h("li", { "data-slug": server.slug }, row.link);
    return row;
  }

  function updateRow(row, server, now) {
    const { state: st, age } = states.serverState(server, now);
    row.link.setAttribute("aria-current", server.slug === state.server ? "true" : "false");
    row.li.dataset.state = st;
    row.dot.className = "dot " + st;
    row.name.textContent = server.name || server.slug;
    row.name.title = server.slug + (server.hostname ? " · " + server.hostname : "");
    row.seen.textContent = age == null ? "never seen" : fmt.ago(age);
    row.seen.title = server.last_seen_at ? "Last sample " + new Date(server.last_seen_at).toLocaleString() : "";
    row.state.className = "state " + st;
    row.state.textContent = st;
    row.state.title = states.STATE_HELP[st];
    const b = server.bottleneck;
    const label = b && b.label;
    if (row.chip.dataset.label !== (label || "")) {
      row.chip.replaceChildren(server.snapshot_count ? chip(label, label ? b.title : "pending") : "");
      row.chip.dataset.label = label || "";
    }
    const util = server.gpu_top_util_percent;
    row.gpu.replaceChildren(
      ...(util == null ? [] : [h("span", { class: "minibar" }, h("i", { style: "width:" + Math.min(100, util) + "%" })), "GPU " + fmt.pct(util, 0)])
    );
  }

  function renderSummary(now) {
    const counts = {};
    for (const s of state.servers) {
      const st = states.serverState(s, now).state;
      counts[st] = (counts[st] || 0) + 1;
    }
    const parts = ["live", "late", "stale", "offline"].filter((k) => counts[k]).map((k) => counts[k] + " " + k);
    const n = state.servers.length;
    $("fleet-summary").textContent = n ? n + (n === 1 ? " server" : " servers") + " · " + parts.join(" · ") : "";
    if (!n && !$("fleet").querySelector(".empty-fleet")) {
      $("fleet").append(h("li", { class: "empty-fleet" }, "No servers registered yet."));
    } else if (n) {
      const empty = $("fleet").querySelector(".empty-fleet");
      if (empty) empty.remove();
    }
  }

  // --- rendering: the selected server -----------------------------------------------------------

  function renderSelected() {
    const server = selectedServer();
    if (!server) return;
    $("selected").classList.remove("hidden");
    $("toolbar").classList.toggle("hidden", !server.latest_snapshot_at);
    renderHead(server);
    renderNotices(server);
    const snap = state.snapshot && state.snapshot.server.slug === server.slug ? state.snapshot : null;
    renderBanner(server, snap);
    renderTiles(snap);
    renderGpus(snap);
    document.title = (server.name || server.slug) + " · TrainWatch";
  }

  function renderHead(server) {
    const { state: st, age } = states.serverState(server, clock.now());
    const tags = Object.entries(server.labels || {}).map(([k, v]) => h("span", { class: "chip tag" }, k + ": " + v));
    $("server-head").replaceChildren(
      h("h1", { id: "server-name" }, server.name || server.slug),
      h(
        "span",
        { class: "facts" },
        h("span", { class: "state " + st, id: "server-state", title: states.STATE_HELP[st] }, h("span", { class: "dot " + st }), " ", st),
        h("span", { id: "server-seen" }, age == null ? "never seen" : "last sample " + fmt.ago(age)),
        server.interval_seconds ? h("span", {}, "every " + fmt.duration(server.interval_seconds).replace(/^0 s$/, "<1 s")) : null,
        server.hostname ? h("span", {}, server.hostname) : null,
        server.last_agent_version ? h("span", {}, "agent " + server.last_agent_version) : null,
        ...tags
      )
    );
  }

  function renderNotices(server) {
    const { state: st, age } = states.serverState(server, clock.now());
    const box = $("notices");
    if (st === "live" || !server.latest_snapshot_at) return box.replaceChildren();
    const text = {
      late: "Samples from this server are late: the newest is " + fmt.ago(age) + ".",
      stale: "This server stopped reporting " + fmt.ago(age) + "; what follows is its last known state.",
      offline: "This server is offline: its last sample is from " + fmt.ago(age) + ". What follows is its last known state.",
    }[st];
    box.replaceChildren(h("div", { class: "notice " + (st === "late" ? "warn" : "bad"), id: "server-notice", "data-state": st }, text));
  }

  function renderBanner(server, snap) {
    const b = snap ? snap.bottleneck : null;
    const el = $("banner");
    if (!snap) return el.replaceChildren();
    const st = states.serverState(server, clock.now()).state;
    if (!b) {
      return el.replaceChildren(
        h("div", { class: "banner", id: "bottleneck" }, h("span", { class: "kicker" }, "Now"), h("span", { class: "label-title" }, "Classifying…"), h("span", { class: "reason muted" }, "The newest sample has not been classified yet."))
      );
    }
    const since = b.since ? Date.parse(b.since) : null;
    const now = clock.now();
    el.replaceChildren(
      h(
        "div",
        {
          class: "banner" + (st === "live" || st === "late" ? "" : " offline"),
          id: "bottleneck",
          "data-label": b.label,
          style: "--b:" + labels.labelColor(b.label),
        },
        h("span", { class: "kicker" }, st === "live" || st === "late" ? "Now" : "Last"),
        h("span", { class: "label-title" }, b.title),
        h("span", { class: "reason" }, b.reason || ""),
        h("span", { class: "what" }, (labels.LABELS[b.label] || {}).help || ""),
        h(
          "div",
          { class: "side" },
          h("div", { class: "confidence num" }, fmt.pct(100 * b.confidence, 0)),
          h("div", {}, "confidence"),
          since ? h("div", { id: "bottleneck-since", title: new Date(since).toLocaleString() }, "since " + fmt.when(since, now) + " (" + fmt.duration((now - since) / 1000) + ")") : null
        )
      )
    );
  }

  function meter(value, color) {
    const v = value == null ? 0 : Math.max(0, Math.min(100, value));
    return h("div", { class: "meter" }, h("i", { style: "width:" + v + "%" + (color ? ";--m:" + color : "") }));
  }
  function usageColor(v) {
    return v == null ? null : v >= 90 ? "var(--bad)" : v >= 75 ? "var(--warn)" : null;
  }
  function tile(id, title, big, unit, bar, rows) {
    return h(
      "div",
      { class: "tile", id: "tile-" + id },
      h("h3", {}, title),
      h("div", { class: "big num" }, big, unit ? h("small", {}, unit) : null),
      bar,
      h("dl", {}, ...rows.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))
    );
  }

  function renderTiles(snap) {
    if (!snap) return $("tiles").replaceChildren();
    const { cpu, memory, disk, network = {} } = snap;
    const cores = cpu.count_logical ? cpu.count_logical + (cpu.count_physical ? " (" + cpu.count_physical + " physical)" : "") : null;
    const used = memory.used_bytes != null && memory.total_bytes ? fmt.bytes(memory.used_bytes) + " of " + fmt.bytes(memory.total_bytes) : null;
    const swap = memory.swap_total_bytes ? fmt.bytes(memory.swap_used_bytes) + " of " + fmt.bytes(memory.swap_total_bytes) : "none";
    const devices = (disk.devices || []).map((d) => [d.device, fmt.pct(d.util_percent, 0) + " · " + fmt.rate(d.read_bps) + " r · " + fmt.rate(d.write_bps) + " w"]);
    $("tiles").replaceChildren(
      tile("cpu", "CPU", fmt.pct(cpu.usage_percent, 0), null, meter(cpu.usage_percent, usageColor(cpu.usage_percent)), [
        ["I/O wait", fmt.pct(cpu.iowait_percent, 1)],
        ["Load 1 / 5 / 15", [cpu.load_1, cpu.load_5, cpu.load_15].map((v) => fmt.number(v, 1)).join(" / ")],
        cores ? ["Cores", cores] : null,
        snap.process_count != null ? ["Processes", fmt.number(snap.process_count)] : null,
      ]),
      tile("memory", "Memory", fmt.pct(memory.percent, 0), null, meter(memory.percent, usageColor(memory.percent)), [
        used ? ["Used", used] : null,
        ["Swap", fmt.pct(memory.swap_percent, 0) + (memory.swap_total_bytes ? " · " + swap : "")],
      ]),
      tile("disk", "Disk", fmt.rate((disk.read_bps || 0) + (disk.write_bps || 0)), null, meter(disk.util_percent, usageColor(disk.util_percent)), [
        ["Read", fmt.rate(disk.read_bps)],
        ["Write", fmt.rate(disk.write_bps)],
        ["Busiest disk", fmt.pct(disk.util_percent, 0) + " busy"],
        ...devices,
      ]),
      tile("network", "Network", fmt.rate((network.rx_bps || 0) + (network.tx_bps || 0)), null, null, [
        ["Received", fmt.rate(network.rx_bps)],
        ["Sent", fmt.rate(network.tx_bps)],
      ]),
      snap.gpu.present
        ? tile("gpu", "GPUs", fmt.pct(snap.gpu.top_util_percent, 0), "busiest of " + snap.gpu.count, meter(snap.gpu.top_util_percent), [
            ["Average", fmt.pct(avg(snap.gpu.devices.map((g) => g.utilization_gpu_percent)), 0)],
            ["Hottest", fmt.celsius(Math.max(...snap.gpu.devices.map((g) => g.temperature_c ?? -Infinity)))],
            ["Power", fmt.watts(sum(snap.gpu.devices.map((g) => g.power_w))) + " of " + fmt.watts(sum(snap.gpu.devices.map((g) => g.power_limit_w)))],
          ])
        : tile("gpu", "GPUs", "none", null, null, [["", "this server reports no GPU"]])
    );
  }
  function avg(values) {
    const v = values.filter((x) => x != null);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  }
  function sum(values) {
    const v = values.filter((x) => x != null);
    return v.length ? v.reduce((a, b) => a + b, 0) : null;
  }

  function renderGpus(snap) {
    const box = $("gpus");
    if (!snap || !snap.gpu.present) return box.replaceChildren();
    const head = ["GPU", "Utilization", "Memory", "Temp", "Power", "Processes", "Throttled by"];
    const body = snap.gpu.devices.map((g) =>
      h(
        "tr",
        { "data-gpu": g.gpu_index },
        h("td", {}, h("strong", {}, "GPU " + g.gpu_index), h("div", { class: "muted" }, g.name || "")),
        h("td", {}, h("div", { class: "bar" }, meter(g.utilization_gpu_percent), h("span", {}, fmt.pct(g.utilization_gpu_percent, 0)))),
        h(
          "td",
          {},
          h("div", { class: "bar" }, meter(g.memory_percent, usageColor(g.memory_percent)), h("span", {}, fmt.pct(g.memory_percent, 0))),
          g.memory_total_bytes ? h("div", { class: "muted" }, fmt.bytes(g.memory_used_bytes) + " of " + fmt.bytes(g.memory_total_bytes)) : null
        ),
        h("td", {}, fmt.celsius(g.temperature_c)),
        h(
          "td",
          {},
          fmt.watts(g.power_w) + (g.power_limit_w ? " / " + fmt.watts(g.power_limit_w) : ""),
          g.power_limit_w && g.power_w != null ? meter((100 * g.power_w) / g.power_limit_w, g.power_w >= 0.97 * g.power_limit_w ? "var(--bad)" : null) : null
        ),
        h("td", { class: "procs" }, ...processes(g.processes)),
        h("td", {}, h("div", { class: "throttle" }, ...(g.throttle_reasons || []).filter((r) => r !== "gpu_idle").map((r) => h("span", { class: "chip" }, r.replace(/_/g, " "))), (g.throttle_reasons || []).filter((r) => r !== "gpu_idle").length ? null : h("span", { class: "muted" }, (g.throttle_reasons || []).includes("gpu_idle") ? "idle" : "nothing")))
      )
    );
    box.replaceChildren(
      h("section", { class: "panel" }, h("h2", {}, "GPUs"), h("table", { class: "gpus" }, h("thead", {}, h("tr", {}, ...head.map((c) => h("th", {}, c)))), h("tbody", {}, ...body)))
    );
  }
  function processes(list) {
    if (!list || !list.length) return [h("span", {}, "none")];
    return list.map((p) =>
      h("div", {}, p.pid + " " + (p.name || "?") + (p.user ? " (" + p.user + ")" : "") + (p.used_memory_bytes != null ? " · " + fmt.bytes(p.used_memory_bytes) : ""))
    );
  }

  // --- rendering: charts and controls -----------------------------------------------------------

  function drawCharts() {
    const m = state.history.meta;
    const points = TW.chartData.prepare(state.history.points, m.resolution_seconds);
    const scale = state.zoom || windowScale();
    renderDataNote(m, points);
    renderChartsNote();
    charts.update({ points, resolution: m.resolution_seconds, scale });
    debug.history = Object.assign({}, m, { points: state.history.points.length });
    renderZoom();
    // uPlot draws in a microtask after setData; by the next frame every chart has drawn.
    requestAnimationFrame(() => {
      debug.drawCount += 1;
      if (debug.drawnAt == null) {
        performance.mark("trainwatch:drawn");
        debug.drawnAt = performance.now();
      }
      window.dispatchEvent(new CustomEvent("trainwatch:drawn", { detail: { server: state.server, range: state.range, points: state.history.points.length } }));
    });
  }

  function renderDataNote(m) {
    const source = { raw: "raw samples", "1m": "1-minute tier", "1h": "1-hour tier" }[m.source] || m.source;
    const n = state.history.points.length;
    $("data-note").textContent = source + " · " + fmt.duration(m.resolution_seconds) + " per point · " + n.toLocaleString("en-US") + (n === 1 ? " point" : " points");
  }

  // No samples in the window, although the server has some: say so and offer a range that has them.
  function renderChartsNote() {
    const box = $("charts-note");
    const server = selectedServer();
    if (state.history.points.length || !server || !server.latest_snapshot_at) return box.replaceChildren();
    const age = (clock.now() - Date.parse(server.latest_snapshot_at)) / 1000;
    const fit = RANGES.find(([, minutes]) => minutes * 60 > age + 60);
    box.replaceChildren(
      h(
        "div",
        { class: "notice warn", id: "no-data-in-range" },
        "No samples in the last " + rangeText(state.range) + ": the newest is from " + fmt.ago(age) + ". ",
        fit ? h("button", { class: "btn", type: "button", onclick: () => setRange(fit[0]) }, "Show the last " + rangeText(fit[0])) : null
      )
    );
  }
  function rangeText(range) {
    return range.replace(/m$/, " minutes").replace(/h$/, " hours").replace(/d$/, " days").replace(/^1 hours$/, "hour");
  }

  function renderRanges() {
    const box = $("ranges");
    if (!box.childElementCount) {
      for (const [range] of RANGES) {
        box.append(h("button", { type: "button", "data-range": range, onclick: () => setRange(range) }, range));
      }
    }
    for (const b of box.children) b.setAttribute("aria-pressed", b.dataset.range === state.range ? "true" : "false");
    renderZoom();
  }

  function renderZoom() {
    $("zoom").classList.toggle("hidden", !state.zoom);
    if (state.zoom) {
      const now = clock.now();
      $("zoom-text").textContent = "Zoomed to " + fmt.when(state.zoom[0] * 1000, now) + " – " + fmt.when(state.zoom[1] * 1000, now);
    }
  }

  // --- empty states -----------------------------------------------------------------------------

  function renderEmpty() {
    $("selected").classList.add("hidden");
    $("toolbar").classList.add("hidden");
    $("notices").replaceChildren();
    const box = $("empty");
    box.classList.remove("hidden");
    if (!state.servers.length) {
      box.replaceChildren(
        h(
          "div",
          { class: "empty", id: "no-servers" },
          h("h2", {}, "No servers yet"),
          h("p", {}, "Register a training node, then start the agent on it with the token this prints:"),
          h("p", {}, h("code", {}, "python3 manage.py register_server gpu-box-01 --name \"GPU Box 01\"")),
          h("p", {}, "This page updates by itself once the node is registered.")
        )
      );
      schedule("servers", WAIT_POLL_S, start);
    } else {
      box.replaceChildren(
        h(
          "div",
          { class: "empty", id: "unknown-server" },
          h("h2", {}, state.server ? "No active server “" + state.server + "”" : "Pick a server"),
          h("p", {}, "It may have been renamed or disabled. Pick one of the fleet on the left.")
        )
      );
    }
  }

  function renderWaiting() {
    const server = selectedServer();
    $("toolbar").classList.add("hidden");
    charts.destroy();
    const box = $("empty");
    box.classList.remove("hidden");
    box.replaceChildren(
      h(
        "div",
        { class: "empty", id: "waiting" },
        h("h2", {}, "Waiting for the first sample from " + (server.name || server.slug)),
        h("p", {}, "Start the agent on that node with its ingest token:"),
        h("p", {}, h("code", {}, "trainwatch-agent --url " + location.origin + " --server " + server.slug + " --token …")),
        h("p", {}, "Charts appear here as soon as it reports.")
      )
    );
  }

  // --- clocks -----------------------------------------------------------------------------------

  // Ages ("3 s ago") and states move with time even when nothing new arrives.
  setInterval(() => {
    if (document.hidden) return;
    const now = clock.now();
    for (const server of state.servers) {
      const row = rows.get(server.slug);
      if (row) updateRow(row, server, now);
    }
    renderSummary(now);
    const server = selectedServer();
    if (server && !$("selected").classList.contains("hidden")) {
      renderHead(server);
      renderNotices(server);
    }
    tickConnection();
  }, 1000);

  document.addEventListener("visibilitychange", () => {
    if (document.hidden || !state.server || !selectedServer()) return;
    // Catch up at once on whatever was skipped while hidden.
    const generation = state.generation;
    if (!timers.latest && state.snapshot) loadLatest(generation);
    if (!timers.history && state.history) loadHistory(generation, "refresh");
    if (!timers.servers && !selectedServer().latest_snapshot_at) waitForFirstSample();
  });

  window.addEventListener("popstate", () => {
    const before = { server: state.server, range: state.range };
    readUrl();
    renderRanges();
    if (state.server !== before.server || state.range !== before.range) {
      if (state.range !== before.range) state.history = null;
      select(state.server, "replace");
    } else redrawScale();
  });
  $("reset-zoom").addEventListener("click", resetZoom);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") resetZoom();
  });

  start();
})();
