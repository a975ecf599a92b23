/* TrainWatch dashboard: numbers, units, times, server states, the server's clock and a DOM builder.
   Plain scripts: each hangs what it offers off window.TW, in the order dashboard.html loads them. */
(function () {
  "use strict";
  const TW = (window.TW = window.TW || {});

  // Server states, from the age of the newest sample against the server's sample interval.
  // live: at most 3 intervals (5 s at least, for network and clock jitter);
  // late: at most 10 intervals (30 s at least); stale: at most an hour; offline: older or never seen.
  const DEFAULT_INTERVAL = 2;
  const STATE_HELP = {
    live: "reporting on time (newest sample at most 3 intervals old)",
    late: "samples are late (3 to 10 intervals old)",
    stale: "no sample for more than 10 intervals, less than an hour",
    offline: "no sample for more than an hour, or never",
  };
  function serverState(server, nowMs) {
    const seen = server.last_seen_at || server.latest_snapshot_at;
    if (!seen) return { state: "offline", age: null };
    const age = Math.max(0, (nowMs - Date.parse(seen)) / 1000);
    const interval = server.interval_seconds || DEFAULT_INTERVAL;
    let state = "offline";
    if (age <= Math.max(3 * interval, 5)) state = "live";
    else if (age <= Math.max(10 * interval, 30)) state = "late";
    else if (age <= 3600) state = "stale";
    return { state, age };
  }

  // The page and the server may disagree about the time; ages use the server's clock.
  const clock = {
    skewMs: 0,
    precise: false,
    now() {
      return Date.now() + this.skewMs;
    },
    // From a snapshot's own age (millisecond precise) ...
    fromSnapshot(snapshot, receivedAt) {
      if (!snapshot || snapshot.age_seconds == null) return;
      this.skewMs = Date.parse(snapshot.collected_at) + snapshot.age_seconds * 1000 - receivedAt;
      this.precise = true;
    },
    // ... or, until there is one, from the Date header (whole seconds, so half a second is added back).
    fromResponse(response, sentAt, receivedAt) {
      const header = response.headers.get("Date");
      if (!header || this.precise) return;
      const serverMs = Date.parse(header) + 500;
      if (!Number.isNaN(serverMs)) this.skewMs = serverMs - (sentAt + receivedAt) / 2;
    },
  };

  function fixed(v, digits) {
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function none(v) {
    return v == null || Number.isNaN(v);
  }
  const DASH = "–";

  function pct(v, digits) {
    if (none(v)) return DASH;
    return fixed(v, digits == null ? (v < 10 && v !== 0 ? 1 : 0) : digits) + "%";
  }
  // Rates in decimal units, as disk and network tools show them (MB/s).
  function rate(v) {
    if (none(v)) return DASH;
    const units = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
    let i = 0;
    let x = Math.abs(v);
    while (x >= 1000 && i < units.length - 1) {
      x /= 1000;
      i += 1;
    }
    return fixed(Math.sign(v) * x, x < 10 && i > 0 ? 1 : 0) + " " + units[i];
  }
  // Sizes in binary units, as memory is sold (GiB).
  function bytes(v) {
    if (none(v)) return DASH;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let x = Math.abs(v);
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i += 1;
    }
    return fixed(x, x < 10 && i > 0 ? 1 : 0) + " " + units[i];
  }
  function celsius(v) {
    return none(v) ? DASH : fixed(v, 0) + " °C";
  }
  function watts(v) {
    return none(v) ? DASH : fixed(v, 0) + " W";
  }
  // Energy as electricity is billed: Wh, kWh, MWh (from joules).
  function energy(joules) {
    if (none(joules)) return DASH;
    const units = ["Wh", "kWh", "MWh", "GWh"];
    let i = 0;
    let x = Math.abs(joules) / 3600;
    while (x >= 1000 && i < units.length - 1) {
      x /= 1000;
      i += 1;
    }
    return fixed(Math.sign(joules) * x, x < 10 ? 2 : x < 100 ? 1 : 0) + " " + units[i];
  }
  function number(v, digits) {
    return none(v) ? DASH : fixed(v, digits || 0);
  }

  function duration(seconds) {
    if (none(seconds)) return DASH;
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) {
      const m = Math.floor((s % 3600) / 60);
      return Math.floor(s / 3600) + " h" + (m ? " " + m + " min" : "");
    }
    const h = Math.floor((s % 86400) / 3600);
    return Math.floor(s / 86400) + " d" + (h ? " " + h + " h" : "");
  }
  function ago(seconds) {
    if (none(seconds)) return "never";
    if (seconds < 1) return "just now";
    return duration(seconds).replace(/ \d+ (min|h)$/, "") + " ago";
  }
  function clockTime(ms, withDate) {
    const d = new Date(ms);
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    if (!withDate) return time;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
  }
  // Same day as now: just the time; otherwise the date too.
  function when(ms, nowMs) {
    return clockTime(ms, new Date(ms).toDateString() !== new Date(nowMs).toDateString());
  }

  // A moment to the second, in the browser's locale and time zone (titles and tooltips).
  function moment(ms) {
    return new Date(ms).toLocaleString([], { hour12: false });
  }
  // An XID error as people read it: "XID 79 on GPU 1: GPU has fallen off the bus" (with its time).
  function xid(event, withTime) {
    const text = "XID " + event.xid + " on GPU " + event.gpu_index + (event.meaning ? ": " + event.meaning : "");
    return withTime ? moment(Date.parse(event.at)) + " · " + text : text;
  }

  // Builds DOM without innerHTML: h("div", {class: "x"}, "text", child).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "style") el.style.cssText = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  TW.fmt = { pct, rate, bytes, celsius, watts, energy, number, duration, ago, when, clockTime, moment, xid, DASH };
  TW.states = { serverState, STATE_HELP, DEFAULT_INTERVAL };
  TW.clock = clock;
  TW.h = h;
})();
