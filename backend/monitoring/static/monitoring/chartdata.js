/* TrainWatch dashboard: what the charts plot. Which charts a server gets and the series of each
   (from the GPUs and disks its points show; titles and units from the metrics catalogue), the
   points of /api/metrics/history/ indexed and cut into uPlot's columns, the window's GPU energy
   and its XID errors. No drawing here: charts.js draws what this describes. */
(function () {
  "use strict";
  const TW = window.TW;
  const { labels } = TW;

  // Series colours for up to 8 GPUs or disks; more repeat them dashed.
  const PALETTE = ["#3b82f6", "#22c55e", "#f59e0b", "#ef4444", "#a855f7", "#06b6d4", "#ec4899", "#84cc16"];

  /* How people read each metric comes from the server's catalogue (TW.metric, from TW.config.metrics):
     the series' labels, the titles of single-metric charts and every chart's unit. The page keeps
     only which charts there are, how their series group, their group titles and their colours.
     UNIT_KINDS maps the catalogue's units to the kinds charts.js draws; any other unit is drawn as a
     plain number followed by it. */
  const UNIT_KINDS = { "%": "pct", "B/s": "rate", "°C": "celsius", W: "watts", J: "energy" };

  function titleOf(block, name) {
    return TW.metric(block, name).title;
  }
  // A chart's unit, from one of its metrics: `unit` the kind charts.js draws, `suffix` the catalogue's own.
  function unitOf(block, name) {
    const unit = TW.metric(block, name).unit;
    return { unit: UNIT_KINDS[unit] || "plain", suffix: unit };
  }

  /* The charts of one server: which ones, and which series each has. `shape` lists the GPU indices
     and disk devices seen in the points; a change of shape rebuilds the charts. GPU charts carry
     `xids` (the XID errors are marked on them); the power chart carries `energy` when the window's
     energy is known (its total shows beside the title). */
  function specsFor(shape) {
    const host = (name, color, extra) =>
      Object.assign({ label: titleOf("host", name), color, get: (p) => p[name] }, extra);
    const gpuSeries = (get) =>
      shape.gpus.map((idx, i) => ({
        label: "GPU " + idx,
        color: PALETTE[i % PALETTE.length],
        dash: i >= PALETTE.length,
        get: (p) => (p.gpuBy[idx] ? (get(p.gpuBy[idx]) ?? null) : null),
      }));
    const gpuChart = (id, name, extra, get) =>
      Object.assign(
        {
          id,
          title: titleOf("gpu", name),
          ...unitOf("gpu", name),
          xids: true,
          series: gpuSeries(get || ((g) => g[name])),
        },
        extra,
      );
    const specs = [
      { id: "bottleneck", title: "Bottleneck", kind: "band" },
      {
        id: "cpu",
        title: "CPU",
        ...unitOf("host", "cpu_usage_percent"),
        series: [host("cpu_usage_percent", "#3b82f6", { fill: true }), host("cpu_iowait_percent", "#f59e0b")],
      },
      {
        id: "memory",
        title: "Memory",
        ...unitOf("host", "memory_percent"),
        series: [host("memory_percent", "#a855f7", { fill: true }), host("swap_percent", "#ef4444")],
      },
      {
        id: "disk-io",
        title: "Disk throughput",
        ...unitOf("host", "disk_read_bps"),
        series: [
          host("disk_read_bps", "#22c55e", { fill: true }),
          host("disk_write_bps", "#ef4444"),
          // Per device, off until clicked in the legend: the totals answer the usual question.
          ...(shape.disks.length > 1
            ? shape.disks.flatMap((dev, i) => [
                {
                  label: dev + ": " + titleOf("disk", "read_bps"),
                  color: PALETTE[(i + 2) % 8],
                  show: false,
                  get: (p) => diskField(p, dev, "read_bps"),
                },
                {
                  label: dev + ": " + titleOf("disk", "write_bps"),
                  color: PALETTE[(i + 2) % 8],
                  dash: true,
                  show: false,
                  get: (p) => diskField(p, dev, "write_bps"),
                },
              ])
            : []),
        ],
      },
      {
        id: "disk-util",
        title: "Disk utilization",
        subtitle: "busy time, per device",
        ...unitOf("disk", "util_percent"),
        series: shape.disks.length
          ? shape.disks.map((dev, i) => ({
              label: dev,
              color: PALETTE[i % 8],
              get: (p) => diskField(p, dev, "util_percent"),
            }))
          : [host("disk_util_percent", PALETTE[0])],
      },
    ];
    if (shape.network) {
      specs.push({
        id: "network",
        title: "Network",
        ...unitOf("host", "network_rx_bps"),
        series: [host("network_rx_bps", "#06b6d4", { fill: true }), host("network_tx_bps", "#ec4899")],
      });
    }
    if (shape.gpus.length) {
      specs.push(
        gpuChart("gpu-util", "utilization_gpu_percent"),
        gpuChart("gpu-memory", "memory_percent", { subtitle: "used, of each GPU's total" }),
        gpuChart("gpu-temperature", "temperature_c", { subtitle: "per GPU" }),
      );
      // Average power over each point (from the energy counter) where known, else NVML's reading.
      if (shape.power) {
        specs.push(
          gpuChart(
            "gpu-power",
            shape.energy ? "energy_w" : "power_w",
            { subtitle: "per GPU", energy: shape.energy },
            (g) => g.energy_w ?? g.power_w,
          ),
        );
      }
      if (shape.pcie) specs.push(gpuChart("gpu-pcie", "pcie_rx_bytes_per_s", { subtitle: "host to device, per GPU" }));
    }
    return specs;
  }
  function diskField(p, dev, field) {
    return p.diskBy[dev] ? p.diskBy[dev][field] : null;
  }

  /* Points of the API, indexed for the charts: per-GPU and per-disk lookups, times in seconds,
     and a gap marker wherever samples are missing, so lines break instead of bridging an outage. */
  function prepare(points, resolution) {
    const out = [];
    const maxGap = 3 * Math.max(resolution || 2, 1);
    let previous = null;
    for (const raw of points) {
      const p = Object.assign({}, raw);
      p.t = Date.parse(raw.collected_at) / 1000;
      p.gpuBy = {};
      for (const g of raw.gpus || []) p.gpuBy[g.gpu_index] = g;
      p.diskBy = {};
      for (const d of raw.disks || []) p.diskBy[d.device] = d;
      if (previous && p.t - previous.t > maxGap)
        out.push({ t: previous.t + resolution, gap: true, gpuBy: {}, diskBy: {} });
      out.push(p);
      previous = p;
    }
    return out;
  }

  function shapeOf(points) {
    const gpus = new Set();
    const disks = new Set();
    let network = false;
    let power = false;
    let energy = false;
    let pcie = false;
    for (const p of points) {
      if (p.gap) continue;
      for (const k in p.gpuBy) {
        const g = p.gpuBy[k];
        gpus.add(Number(k));
        if (g.power_w != null || g.energy_w != null) power = true;
        if (g.energy_joules != null) energy = true;
        if (g.pcie_rx_bytes_per_s != null) pcie = true;
      }
      for (const k in p.diskBy) disks.add(k);
      if (p.network_rx_bps != null || p.network_tx_bps != null) network = true;
    }
    return {
      gpus: [...gpus].sort((a, b) => a - b),
      disks: [...disks].sort(),
      network,
      power,
      energy,
      pcie,
    };
  }

  /* uPlot's columns for one chart: times, then one column per series. The bottleneck band has one
     series, each point's label as its index in the labels' order (-1 for one the page does not know). */
  function columns(spec, points) {
    const x = points.map((p) => p.t);
    if (spec.kind === "band") {
      return [x, points.map((p) => (p.gap || !p.bottleneck ? null : labels.LABEL_NAMES.indexOf(p.bottleneck)))];
    }
    return [x, ...spec.series.map((s) => points.map((p) => (p.gap ? null : (s.get(p) ?? null))))];
  }

  /* The GPUs' energy over the points within `scale` ([min, max] in seconds), in joules: each point
     holds what each GPU used over its span. Null when no point in it knows. */
  function energyJoules(points, scale) {
    let total = null;
    for (const p of points) {
      if (p.gap || p.t < scale[0] || p.t > scale[1]) continue;
      for (const k in p.gpuBy) {
        const j = p.gpuBy[k].energy_joules;
        if (j != null) total = (total || 0) + j;
      }
    }
    return total;
  }

  /* The window's XID errors (the history's `xid_errors`, oldest first) with their times in seconds. */
  function xidEvents(events) {
    return (events || [])
      .map((e) => Object.assign({ t: Date.parse(e.at) / 1000 }, e))
      .filter((e) => !Number.isNaN(e.t));
  }

  TW.chartData = { specsFor, prepare, shapeOf, columns, energyJoules, xidEvents, UNIT_KINDS };
})();
