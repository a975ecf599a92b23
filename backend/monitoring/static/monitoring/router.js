/* TrainWatch dashboard: the view in the URL, so that a link opens the same view and Back and
   Forward step through the changes:
     ?server=gpu-box-01&range=24h&from=…&to=…   a server (from and to in UTC, ISO 8601, while zoomed)
     ?view=fleet&range=7d&from=…&to=…&sort=…     the fleet report over the range, or from – to;
                                                 sort: a column of its table, "-" first for descending
   A view is {view: "server" | "fleet", server, range, zoom: [from, to] in epoch seconds or null,
   sort: string or null}. The fleet report's URL names no server; the page remembers the last one. */
(function () {
  "use strict";
  const TW = window.TW;

  // The ranges the page offers: those within the server's MONITORING_MAX_HISTORY_MINUTES.
  const RANGES = [
    ["15m", 15],
    ["1h", 60],
    ["6h", 360],
    ["24h", 1440],
    ["7d", 10080],
    ["30d", 43200],
    ["90d", 129600],
  ].filter(([, minutes]) => minutes <= TW.config.maxHistoryMinutes);
  const RANGE_MINUTES = Object.fromEntries(RANGES);
  const DEFAULT_RANGE = RANGE_MINUTES["1h"] ? "1h" : RANGES[RANGES.length - 1][0];
  // The fleet report looks back a week unless told otherwise (as its API does).
  const FLEET_DEFAULT_RANGE = RANGE_MINUTES["7d"] ? "7d" : RANGES[RANGES.length - 1][0];

  function parse(search) {
    const q = new URLSearchParams(search);
    const from = Date.parse(q.get("from") || "");
    const to = Date.parse(q.get("to") || "");
    const fleet = q.get("view") === "fleet";
    return {
      view: fleet ? "fleet" : "server",
      server: q.get("server") || null,
      range: RANGE_MINUTES[q.get("range")] ? q.get("range") : fleet ? FLEET_DEFAULT_RANGE : DEFAULT_RANGE,
      zoom: from < to ? [from / 1000, to / 1000] : null,
      sort: (fleet && q.get("sort")) || null,
    };
  }

  function iso(seconds) {
    return new Date(Math.round(seconds) * 1000).toISOString().replace(".000Z", "Z");
  }
  function serialise(view) {
    const q = new URLSearchParams();
    const fleet = view.view === "fleet";
    if (fleet) q.set("view", "fleet");
    else if (view.server) q.set("server", view.server);
    q.set("range", view.range);
    if (view.zoom) {
      q.set("from", iso(view.zoom[0]));
      q.set("to", iso(view.zoom[1]));
    }
    if (fleet && view.sort) q.set("sort", view.sort);
    return q.toString();
  }

  function read() {
    return parse(location.search);
  }
  /* Puts the view in the URL, unless it is there already. `how`: "push" (a step Back returns
     from) or "replace". */
  function write(view, how) {
    const url = location.pathname + "?" + serialise(view);
    if (url === location.pathname + location.search) return;
    if (how === "push") history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }
  // onChange(view) after Back or Forward.
  function onChange(listener) {
    window.addEventListener("popstate", () => listener(read()));
  }

  TW.router = { RANGES, RANGE_MINUTES, DEFAULT_RANGE, FLEET_DEFAULT_RANGE, parse, serialise, iso, read, write, onChange };
})();
