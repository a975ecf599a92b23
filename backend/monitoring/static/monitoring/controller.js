/* TrainWatch dashboard: what the page asks for and when (poller.js runs the timers), and which
   view shows the answer.

   Requests: /api/servers/ once at start (and while the selected server has no samples yet);
   /api/metrics/latest/ at the server's sample interval (its `servers` list keeps the fleet
   current); /api/alerts/ at the same pace, for the whole fleet (the fleet's badges, the selected
   server's alert list and the bands on its charts); /api/metrics/history/ once per refresh, at
   max(interval, resolution). Between full reads, a refresh asks only for the last minutes and
   merges them into the newest buckets.
   The view (server, range, zoom) lives in the URL (router.js).

   The fleet report (?view=fleet) asks /api/fleet/report/ for the range (days = its minutes / 1440)
   or for from – to, again every few minutes unless the window is fixed, and /api/servers/ every
   15 s for the fleet list; the alerts' poll goes on. The last server shown is remembered, for
   the Server tab.

   window.trainwatch is a small read-only handle for tests and benchmarks: chart lengths, the
   state, every request made, and drawnAt (ms since navigation when all charts first drew;
   a 'trainwatch:drawn' event fires after every redraw with new history). */
(function () {
  "use strict";
  const TW = window.TW;
  const { states, clock, router, api, fleet, panels, toolbar, status, alerts, report } = TW;
  const $ = (id) => document.getElementById(id);

  const MIN_REFRESH_S = 2; // never poll faster than this, whatever the agent's interval
  const SLOW_POLL_S = 15; // a server that is not reporting is asked less often
  const WAIT_POLL_S = 5; // waiting for a first sample, or for a first server
  const FULL_EVERY_MS = 10 * 60 * 1000; // re-read the whole window now and then, not only its tail
  const TAIL_MAX_RESOLUTION_S = 600; // coarser than this, a tail read costs about what a full one does
  const REPORT_REFRESH_S = { "1m": 60, "1h": 300 }; // the fleet report, by its source

  const state = {
    view: "server", // or "fleet": the fleet report
    server: null, // slug of the selected server (in the fleet report: the last one shown)
    shownServer: null, // the server whose charts are built
    range: router.DEFAULT_RANGE,
    zoom: null, // [from, to] in epoch seconds, or null
    servers: [],
    snapshot: null,
    history: null, // {points (as the API sends them), meta, xids (the window's XID errors)}
    fullAt: 0,
    generation: 0, // bumps on every selection, so that late answers for an old one are dropped
    failing: false,
    updatedAt: null,
    alerts: null, // the last answer of /api/alerts/ (the whole fleet's), or null before the first
    sort: null, // the fleet report's table: a column's key, "-" first for descending; null: the API's order
    report: null, // the last answer of /api/fleet/report/ for the window shown
  };
  // The alerts are the fleet's, not the selected server's: a new selection leaves their poll running.
  const poller = new TW.Poller(["alerts"]);
  const schedule = poller.schedule.bind(poller);
  let firingBySlug = {};
  const charts = new TW.Charts(document.getElementById("charts"), { onZoom: zoomTo, onResetZoom: resetZoom });

  const debug = (window.trainwatch = {
    state,
    get charts() {
      return charts.plots;
    },
    requests: api.requests,
    drawnAt: null,
    drawCount: 0,
    lengths: () => charts.lengths(),
    seriesCounts: () => Object.fromEntries(Object.entries(charts.plots).map(([id, u]) => [id, u.series.length - 1])),
  });

  // --- the connection ---------------------------------------------------------------------------

  function connection(ok, message) {
    state.failing = !ok;
    if (ok) state.updatedAt = Date.now();
    status.showConnection(ok, message);
    if (ok) tickConnection();
  }
  function tickConnection() {
    if (state.failing || !state.updatedAt) return;
    status.showUpdated((Date.now() - state.updatedAt) / 1000);
  }
  function failed(err, what) {
    if (err.status === 401) return;
    connection(false, err.status === 0 ? "Cannot reach TrainWatch, retrying" : what + " failed: " + err.message);
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

  async function start() {
    Object.assign(state, router.read());
    renderRanges();
    try {
      const body = await api.get("/api/servers/");
      setServers(body.servers);
      connection(true);
    } catch (err) {
      failed(err, "Loading servers");
      schedule("servers", WAIT_POLL_S, start);
      return;
    }
    renderFleet();
    if (!poller.waiting("alerts") && !state.alerts) loadAlerts();
    if (!state.server) state.server = defaultServer();
    if (state.view === "fleet") showReport("replace");
    else select(state.server, "replace");
  }

  // The first live server, else the first with samples, else the first (null: none).
  function defaultServer() {
    const now = clock.now();
    const first =
      state.servers.find((s) => states.serverState(s, now).state === "live") ||
      state.servers.find((s) => s.latest_snapshot_at) ||
      state.servers[0];
    return first ? first.slug : null;
  }

  /* Show a server: its figures, then its charts. `how` is how the URL changes: push, replace. */
  function select(slug, how) {
    const changed = slug !== state.shownServer;
    if (state.view === "fleet") {
      $("data-note").textContent = "";
      document.title = "TrainWatch";
    }
    setView("server");
    state.server = slug;
    state.shownServer = slug;
    state.generation += 1;
    poller.stop();
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
    status.hideEmpty();
    renderAlerts();
    if (!server.latest_snapshot_at) return waitForFirstSample();
    renderSelected();
    const generation = state.generation;
    loadLatest(generation);
    loadHistory(generation, "full");
  }

  async function loadLatest(generation) {
    try {
      const body = await api.get("/api/metrics/latest/", { server: state.server });
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

  /* Every firing, pending and recently resolved alert episode of the fleet, as often as the selected
     server's latest sample is asked for (every 5 s while no server with samples is shown). */
  let alertsInFlight = false;
  async function loadAlerts() {
    if (alertsInFlight) return;
    alertsInFlight = true;
    try {
      const body = await api.get("/api/alerts/");
      state.alerts = { firing: body.firing || [], pending: body.pending || [], recent: body.recent || [] };
      firingBySlug = alerts.firingBySlug(state.alerts);
      renderFleet();
      if (selectedServer()) renderAlerts();
    } catch (err) {
      failed(err, "Alerts");
    } finally {
      alertsInFlight = false;
    }
    const server = selectedServer();
    let period = WAIT_POLL_S;
    if (server && server.latest_snapshot_at) period = isQuiet(server) ? SLOW_POLL_S : intervalOf(server);
    schedule("alerts", period, loadAlerts);
  }

  async function loadHistory(generation, mode) {
    const minutes = router.RANGE_MINUTES[state.range];
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
        const body = await api.get("/api/metrics/history/", {
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
          state.history.xids = TW.history.mergeEvents(
            state.history.xids,
            body.xid_errors,
            now - state.history.meta.minutes * 60,
          );
        } else {
          state.history = { points: body.points, meta: TW.history.meta(body), xids: body.xid_errors || [] };
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
    toolbar.show(false);
    charts.destroy();
    status.showWaiting(selectedServer());
    const generation = state.generation;
    schedule("servers", WAIT_POLL_S, async () => {
      try {
        const body = await api.get("/api/servers/");
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
    return [now - router.RANGE_MINUTES[state.range] * 60, now];
  }
  function setRange(range) {
    if (range === state.range && !state.zoom) return;
    if (state.view === "fleet") {
      state.range = range;
      state.zoom = null;
      return showReport("push");
    }
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
    if (state.view === "fleet") return showReport("push");
    writeUrl("push");
    redrawScale();
  }
  function redrawScale() {
    toolbar.renderZoom(state.zoom);
    if (state.history) drawCharts();
  }
  function pick(slug) {
    if (slug === state.server && state.view === "server") return;
    state.zoom = null;
    select(slug, "push");
  }

  // --- the fleet report ---------------------------------------------------------------------------

  // Which view the page shows: the server's parts or the fleet report's (styles/views.css hides the other's).
  function setView(view) {
    state.view = view;
    $("dashboard").dataset.view = view;
  }

  /* Show the fleet report over the range (or from – to): the server's charts and timers go, the
     report is asked for. `how` is how the URL changes: push, replace. */
  function showReport(how) {
    setView("fleet");
    state.generation += 1;
    poller.stop();
    state.shownServer = null;
    state.snapshot = null;
    state.history = null;
    state.report = null;
    debug.report = null;
    charts.destroy();
    panels.hide();
    status.hideEmpty();
    toolbar.renderChartsNote(null);
    toolbar.show(true);
    $("data-note").textContent = "";
    writeUrl(how);
    renderFleet();
    renderRanges();
    document.title = "Fleet report · TrainWatch";
    report.loading();
    const generation = state.generation;
    loadReport(generation);
    schedule("servers", SLOW_POLL_S, () => loadServers(generation));
  }

  function reportParams() {
    if (state.zoom) return { from: router.iso(state.zoom[0]), to: router.iso(state.zoom[1]) };
    return { days: String(router.RANGE_MINUTES[state.range] / 1440) };
  }

  async function loadReport(generation) {
    try {
      const body = await api.get("/api/fleet/report/", reportParams());
      if (generation !== state.generation) return;
      state.report = body;
      connection(true);
      renderReport();
    } catch (err) {
      if (generation !== state.generation) return;
      failed(err, "Fleet report");
      if (err.status !== 401) report.showError(err.message);
    }
    // A window that ends now moves on; a fixed one (from – to) does not.
    if (!state.zoom) {
      const period = REPORT_REFRESH_S[state.report && state.report.source] || REPORT_REFRESH_S["1h"];
      schedule("report", period, () => loadReport(generation));
    }
  }

  // The fleet list, while the report is shown (in the server view /api/metrics/latest/ keeps it current).
  async function loadServers(generation) {
    try {
      const body = await api.get("/api/servers/");
      if (generation !== state.generation) return;
      setServers(body.servers);
      connection(true);
      renderFleet();
    } catch (err) {
      if (generation !== state.generation) return;
      failed(err, "Loading servers");
    }
    schedule("servers", SLOW_POLL_S, () => loadServers(generation));
  }

  function renderReport() {
    if (!state.report) return;
    toolbar.renderReportNote(state.report);
    report.render(state.report, {
      title: state.zoom ? "From – to" : "Last " + toolbar.rangeText(state.range),
      sort: state.sort,
      onSort: sortReport,
      onOpen: openServer,
      hrefFor: (slug) => "?" + router.serialise({ view: "server", server: slug, range: state.range, zoom: state.zoom }),
      csvHref: "/api/fleet/report/?" + new URLSearchParams(Object.assign(reportParams(), { format: "csv" })),
    });
    debug.report = { from: state.report.from, to: state.report.to, servers: state.report.servers.length };
    window.dispatchEvent(new CustomEvent("trainwatch:report", { detail: debug.report }));
  }

  // The table's order; in the URL, without a step of its own for Back.
  function sortReport(sort) {
    state.sort = sort;
    writeUrl("replace");
    renderReport();
  }

  // A server of the report, over the same range (and from – to).
  function openServer(slug) {
    select(slug, "push");
  }

  // The URL, and the view tabs' links, which keep the range and from – to.
  function writeUrl(how) {
    router.write(state, how);
    renderTabs();
  }
  function renderTabs() {
    const fleetTab = $("view-fleet");
    const serverTab = $("view-server");
    fleetTab.href = "?" + router.serialise(Object.assign({}, state, { view: "fleet" }));
    serverTab.href =
      "?" + router.serialise(Object.assign({}, state, { view: "server", server: state.server || defaultServer() }));
    fleetTab.setAttribute("aria-current", state.view === "fleet" ? "page" : "false");
    serverTab.setAttribute("aria-current", state.view === "server" ? "page" : "false");
  }
  function onTab(tab, open) {
    tab.addEventListener("click", (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; // new tab: let the browser do it
      e.preventDefault();
      open();
    });
  }
  onTab($("view-fleet"), () => {
    if (state.view !== "fleet") showReport("push");
  });
  onTab($("view-server"), () => {
    if (state.view === "server") return;
    if (!state.server) state.server = defaultServer();
    select(state.server, "push");
  });

  // --- handing the state to the views -----------------------------------------------------------

  function renderFleet() {
    fleet.render(state.servers, state.view === "server" ? state.server : null, pick, firingBySlug);
  }

  // The selected server's alert list, and its episodes as bands on its charts.
  function renderAlerts() {
    const mine = alerts.ofServer(state.alerts, state.server);
    alerts.renderList(mine);
    charts.setEpisodes(mine.firing.concat(mine.pending, mine.recent));
  }

  function renderSelected() {
    const server = selectedServer();
    if (!server) return;
    toolbar.show(Boolean(server.latest_snapshot_at));
    const snap = state.snapshot && state.snapshot.server.slug === server.slug ? state.snapshot : null;
    panels.render(server, snap);
  }

  function renderRanges() {
    toolbar.renderRanges(state.range, setRange);
    toolbar.renderZoom(state.zoom);
  }

  function drawCharts() {
    const m = state.history.meta;
    const count = state.history.points.length;
    const points = TW.chartData.prepare(state.history.points, m.resolution_seconds);
    const scale = state.zoom || windowScale();
    toolbar.renderDataNote(m, count);
    toolbar.renderChartsNote(selectedServer(), state.range, count, setRange);
    charts.update({ points, resolution: m.resolution_seconds, scale, xids: state.history.xids });
    debug.history = Object.assign({}, m, { points: count });
    toolbar.renderZoom(state.zoom);
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

  function renderEmpty() {
    panels.hide();
    toolbar.show(false);
    if (!state.servers.length) {
      status.showNoServers();
      schedule("servers", WAIT_POLL_S, start);
    } else {
      status.showUnknownServer(state.server);
    }
  }

  // --- clocks and events ------------------------------------------------------------------------

  // Ages ("3 s ago") and states move with time even when nothing new arrives.
  setInterval(() => {
    if (document.hidden) return;
    renderFleet();
    const server = selectedServer();
    if (server) panels.tick(server);
    tickConnection();
  }, 1000);

  router.onChange((view) => {
    if (view.view === "fleet") {
      const same =
        state.view === "fleet" &&
        view.range === state.range &&
        JSON.stringify(view.zoom) === JSON.stringify(state.zoom) &&
        state.report;
      // The fleet report's URL names no server: the last one shown stays the Server tab's.
      Object.assign(state, { range: view.range, zoom: view.zoom, sort: view.sort });
      if (same) {
        renderTabs();
        return renderReport();
      }
      return showReport("replace");
    }
    const before = { server: state.server, range: state.range };
    const fromReport = state.view === "fleet";
    Object.assign(state, view, { sort: state.sort }); // the report's order, for when it is shown again
    renderRanges();
    if (fromReport) return select(state.server, "replace");
    if (state.server !== before.server || state.range !== before.range) {
      if (state.range !== before.range) state.history = null;
      select(state.server, "replace");
    } else redrawScale();
  });
  toolbar.onResetZoom(resetZoom);

  start();
})();
