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
  const { fmt, states, clock, h, panels } = TW;

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
    shownServer: null, // the server whose charts are built
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
  const skipped = {}; // what came due while the tab was hidden
  const charts = new TW.Charts($("charts"), { onZoom: zoomTo, onResetZoom: resetZoom });

  const debug = (window.trainwatch = {
    state,
    get charts() {
      return charts.plots;
    },
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
    const record = { path, params: Object.fromEntries(new URLSearchParams(params || {})), status: null, at: sentAt };
    debug.requests.push(record);
    if (debug.requests.length > 500) debug.requests.splice(0, 100); // a tab may stay open for weeks
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

  // By name as people read it: gpu-box-2 before gpu-box-10, case aside.
  const byName = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  function setServers(servers) {
    state.servers = servers.slice().sort((a, b) => byName.compare(a.name || a.slug, b.name || b.slug));
  }

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
      delete skipped[k];
    }
  }
  function schedule(name, delay, fn) {
    clearTimeout(timers[name]);
    timers[name] = setTimeout(() => {
      timers[name] = null;
      // A hidden tab asks for nothing; it catches up the moment it is shown again.
      if (document.hidden) skipped[name] = fn;
      else fn();
    }, delay * 1000);
  }

  async function start() {
    readUrl();
    renderRanges();
    try {
      const body = await api("/api/servers/");
      setServers(body.servers);
      connection(true);
    } catch (err) {
      failed(err, "Loading servers");
      schedule("servers", WAIT_POLL_S, start);
      return;
    }
    renderFleet();
    if (!state.server) {
      // The first live server, else the first with samples, else the first.
      const now = clock.now();
      const first =
        state.servers.find((s) => states.serverState(s, now).state === "live") ||
        state.servers.find((s) => s.latest_snapshot_at) ||
        state.servers[0];
      state.server = first ? first.slug : null;
    }
    select(state.server, "replace");
  }

  /* Show a server: its figures, then its charts. `how` is how the URL changes: push, replace. */
  function select(slug, how) {
    const changed = slug !== state.shownServer;
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
    hideEmpty();
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
      setServers(body.servers);
      state.snapshot = body.snapshot;
      connection(true);
      renderFleet();
      renderSelected();
    } catch (err) {
      if (generation !== state.generation) return;
      failed(err, "Latest sample");
    }
    const period = isQuiet(selectedServer()) ? SLOW_POLL_S : intervalOf(selectedServer());
    schedule("latest", period, () => loadLatest(generation));
  }

  async function loadHistory(generation, mode) {
    const minutes = RANGE_MINUTES[state.range];
    const server = selectedServer();
    const quiet = isQuiet(server);
    if (
      mode !== "full" &&
      quiet &&
      state.history &&
      state.history.key === dataKey(server) &&
      Date.now() - state.fullAt < FULL_EVERY_MS
    ) {
      // Nothing new from a server that stopped reporting: only the window moves on.
      drawCharts();
    } else {
      const tail = mode !== "full" && refreshFrom(minutes);
      const key = dataKey(server);
      try {
        const body = await api("/api/metrics/history/", {
          server: state.server,
          minutes: tail ? tail.minutes : minutes,
        });
        if (generation !== state.generation) return;
        if (tail) {
          const now = clock.now() / 1000;
          state.history.points = TW.history.mergeTail(
            state.history.points,
            body.points,
            state.history.meta,
            tail.from,
            now,
          );
        } else {
          state.history = { points: body.points, meta: TW.history.meta(body) };
          state.fullAt = Date.now();
        }
        state.history.key = key;
        setServers(body.servers);
        connection(true);
        renderFleet();
        drawCharts();
      } catch (err) {
        if (generation !== state.generation) return;
        failed(err, "History");
      }
    }
    const resolution = state.history ? state.history.meta.resolution_seconds : 0;
    const period = Math.max(quiet ? SLOW_POLL_S : intervalOf(selectedServer()), resolution || 0);
    schedule("history", period, () => loadHistory(generation, "refresh"));
  }

  // Only the newest minutes, unless the window is coarse or was read in full a while ago.
  function refreshFrom(minutes) {
    const h = state.history;
    if (!h || h.meta.minutes !== minutes || h.meta.resolution_seconds > TAIL_MAX_RESOLUTION_S) return false;
    if (Date.now() - state.fullAt > FULL_EVERY_MS) return false;
    return TW.history.tailFrom(h.points, minutes, clock.now() / 1000);
  }

  function isQuiet(server) {
    const st = states.serverState(server || {}, clock.now()).state;
    return st === "stale" || st === "offline";
  }
  // Changes whenever the server stores a sample, including a late one replayed from an agent's spool.
  function dataKey(server) {
    return server ? server.latest_snapshot_at + "/" + server.snapshot_count : "";
  }

  async function waitForFirstSample() {
    renderSelected();
    renderWaiting();
    const generation = state.generation;
    schedule("servers", WAIT_POLL_S, async () => {
      try {
        const body = await api("/api/servers/");
        if (generation !== state.generation) return;
        setServers(body.servers);
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

  // --- rendering ----------------------------------------------------------------------------------

  function renderFleet() {
    panels.renderFleet(state.servers, state.server, pick);
  }
  function pick(slug) {
    if (slug === state.server) return;
    state.zoom = null;
    select(slug, "push");
  }

  // --- rendering: the selected server -----------------------------------------------------------

  function renderSelected() {
    const server = selectedServer();
    if (!server) return;
    $("selected").classList.remove("hidden");
    $("toolbar").classList.toggle("hidden", !server.latest_snapshot_at);
    panels.renderHead(server);
    panels.renderNotices(server);
    const snap = state.snapshot && state.snapshot.server.slug === server.slug ? state.snapshot : null;
    panels.renderBanner(server, snap);
    panels.renderTiles(snap);
    panels.renderGpus(snap);
    document.title = (server.name || server.slug) + " · TrainWatch";
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
      window.dispatchEvent(
        new CustomEvent("trainwatch:drawn", {
          detail: { server: state.server, range: state.range, points: state.history.points.length },
        }),
      );
    });
  }

  function renderDataNote(m) {
    const source = { raw: "raw samples", "1m": "1-minute tier", "1h": "1-hour tier" }[m.source] || m.source;
    const n = state.history.points.length;
    $("data-note").textContent =
      source +
      " · " +
      fmt.duration(m.resolution_seconds) +
      " per point · " +
      n.toLocaleString("en-US") +
      (n === 1 ? " point" : " points");
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
        fit
          ? h(
              "button",
              { class: "btn", type: "button", onclick: () => setRange(fit[0]) },
              "Show the last " + rangeText(fit[0]),
            )
          : null,
      ),
    );
  }
  function rangeText(range) {
    return range
      .replace(/m$/, " minutes")
      .replace(/h$/, " hours")
      .replace(/d$/, " days")
      .replace(/^1 hours$/, "hour");
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
      $("zoom-text").textContent =
        "Zoomed to " + fmt.when(state.zoom[0] * 1000, now) + " – " + fmt.when(state.zoom[1] * 1000, now);
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
          h("p", {}, h("code", {}, 'python3 manage.py register_server gpu-box-01 --name "GPU Box 01"')),
          h("p", {}, "This page updates by itself once the node is registered."),
        ),
      );
      schedule("servers", WAIT_POLL_S, start);
    } else {
      box.replaceChildren(
        h(
          "div",
          { class: "empty", id: "unknown-server" },
          h("h2", {}, state.server ? "No active server “" + state.server + "”" : "Pick a server"),
          h("p", {}, "It may have been renamed or disabled. Pick one of the fleet on the left."),
        ),
      );
    }
  }

  function hideEmpty() {
    $("empty").classList.add("hidden");
    $("empty").replaceChildren();
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
        h(
          "p",
          {},
          h("code", {}, "trainwatch-agent --url " + location.origin + " --server " + server.slug + " --token …"),
        ),
        h("p", {}, "Charts appear here as soon as it reports."),
      ),
    );
  }

  // --- clocks -----------------------------------------------------------------------------------

  // Ages ("3 s ago") and states move with time even when nothing new arrives.
  setInterval(() => {
    if (document.hidden) return;
    renderFleet();
    const server = selectedServer();
    if (server && !$("selected").classList.contains("hidden")) {
      panels.renderHead(server);
      panels.renderNotices(server);
    }
    tickConnection();
  }, 1000);

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    // Catch up at once on whatever came due while hidden.
    for (const [name, fn] of Object.entries(skipped)) {
      delete skipped[name];
      fn();
    }
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
