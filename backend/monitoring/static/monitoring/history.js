/* TrainWatch dashboard: refreshing a history window without reading all of it again.

   A refresh asks /api/metrics/history/ for the last minute or two only; those samples replace the
   window's newest points, grouped into buckets of the window's resolution as the API groups them
   (time_bucket, from a bucket start it returned), so the merged window equals a full read. */
(function () {
  "use strict";
  const TW = window.TW;

  function meta(body) {
    const { minutes, point_count, stride, source, resolution_seconds } = body;
    return { minutes, point_count, stride, source, resolution_seconds: resolution_seconds || stride * 2 };
  }

  /* What a refresh of a window of `minutes` asks for: {minutes, from} such that the answer covers
     the window's points from `from` on (the newest, still growing one, and the last minute's points
     still waiting for their bottleneck label, which classification adds a moment after ingest);
     or false when that would be the whole window anyway. `now` is the server's, in seconds. */
  function tailFrom(points, minutes, now) {
    if (!points.length) return false;
    let from = seconds(points[points.length - 1]);
    for (let i = points.length - 2; i >= 0 && seconds(points[i]) >= now - 60; i--) {
      if (!points[i].bottleneck) from = seconds(points[i]);
    }
    // Two seconds of margin: the API counts whole minutes back from its own now.
    const wanted = Math.max(1, Math.ceil((now - from + 2) / 60));
    return wanted < minutes ? { minutes: wanted, from } : false;
  }
  function seconds(point) {
    return Date.parse(point.collected_at) / 1000;
  }

  /* The tail's samples replace the window's points from `from` (the start of one of its points) on,
     grouped into buckets of the window's resolution from there, as the API groups them. */
  function mergeTail(points, tail, m, from, now) {
    const fresh = tail.filter((p) => seconds(p) >= from);
    if (!fresh.length) return points;
    const kept = points.filter((p) => seconds(p) < from);
    let merged;
    if (m.source === "raw" && m.stride === 1) merged = kept.concat(fresh);
    else {
      const buckets = new Map();
      for (const p of fresh) {
        const start = from + Math.floor((seconds(p) - from) / m.resolution_seconds) * m.resolution_seconds;
        if (!buckets.has(start)) buckets.set(start, []);
        buckets.get(start).push(p);
      }
      merged = kept.concat([...buckets].map(([start, group]) => average(start, group)));
    }
    const windowStart = now - m.minutes * 60 - m.resolution_seconds;
    const first = merged.findIndex((p) => seconds(p) >= windowStart);
    return first > 0 ? merged.slice(first) : merged;
  }

  // Amounts over a point's span add up in a bucket (the API sums them); everything else is averaged.
  const SUMMED = new Set(["energy_joules"]);
  function sumOf(items, key) {
    let sum = null;
    for (const it of items) if (it[key] != null) sum = (sum || 0) + it[key];
    return sum;
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
      for (const f of Object.keys(items[0])) if (f !== key) out[f] = (SUMMED.has(f) ? sumOf : meanOf)(items, f);
      return out;
    });
  }

  /* The window's XID errors after a refresh: those known before, and the refresh's (which cover only
     its minutes), without repeats and those older than the window's start (seconds); oldest first. */
  function mergeEvents(known, fresh, windowStart) {
    const byKey = new Map();
    for (const e of (known || []).concat(fresh || [])) byKey.set(e.gpu_index + "/" + e.xid + "/" + e.at, e);
    return [...byKey.values()]
      .filter((e) => Date.parse(e.at) / 1000 >= windowStart)
      .sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  }

  TW.history = { meta, tailFrom, mergeTail, mergeEvents, seconds };
})();
