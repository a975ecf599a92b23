/* TrainWatch dashboard: what the charts plot. Which charts a server gets and the series of each
   (from the GPUs and disks its points show), and the points of /api/metrics/history/ indexed
   and cut into uPlot's columns. No drawing here: charts.js draws what this describes. */
(function () {
  "use strict";
  const TW = window.TW;
  const { labels } = TW;

  // Series colours for up to 8 GPUs or disks; more repeat them dashed.
  const PALETTE = ["#3b82f6", "#22c55e", "#f59e0b", "#ef4444", "#a855f7", "#06b6d4", "#ec4899", "#84cc16"];

  /* The charts of one server: which ones, and which series each has. `shape` lists the GPU indices
     and disk devices seen in the points; a change of shape rebuilds the charts. */
  function specsFor(shape) {
    const gpuSeries = (field) =>
      shape.gpus.map((idx, i) => ({
        label: "GPU " + idx,
        color: PALETTE[i % PALETTE.length],
        dash: i >= PALETTE.length,
        get: (p) => (p.gpuBy[idx] ? p.gpuBy[idx][field] : null),
      }));
    const specs = [
      { id: "bottleneck", title: "Bottleneck", kind: "band" },
      {
        id: "cpu",
        title: "CPU",
        unit: "pct",
        series: [
          { label: "Usage", color: "#3b82f6", get: (p) => p.cpu_usage_percent, fill: true },
          { label: "I/O wait", color: "#f59e0b", get: (p) => p.cpu_iowait_percent },
        ],
      },
      {
        id: "memory",
        title: "Memory",
        unit: "pct",
        series: [
          { label: "Memory", color: "#a855f7", get: (p) => p.memory_percent, fill: true },
          { label: "Swap", color: "#ef4444", get: (p) => p.swap_percent },
        ],
      },
      {
        id: "disk-io",
        title: "Disk throughput",
        unit: "rate",
        series: [
          { label: "Read", color: "#22c55e", get: (p) => p.disk_read_bps, fill: true },
          { label: "Write", color: "#ef4444", get: (p) => p.disk_write_bps },
          // Per device, off until clicked in the legend: the totals answer the usual question.
          ...(shape.disks.length > 1
            ? shape.disks.flatMap((dev, i) => [
                {
                  label: dev + " read",
                  color: PALETTE[(i + 2) % 8],
                  show: false,
                  get: (p) => diskField(p, dev, "read_bps"),
                },
                {
                  label: dev + " write",
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
        unit: "pct",
        series: shape.disks.length
          ? shape.disks.map((dev, i) => ({
              label: dev,
              color: PALETTE[i % 8],
              get: (p) => diskField(p, dev, "util_percent"),
            }))
          : [{ label: "Busiest disk", color: PALETTE[0], get: (p) => p.disk_util_percent }],
      },
    ];
    if (shape.network) {
      specs.push({
        id: "network",
        title: "Network",
        unit: "rate",
        series: [
          { label: "Received", color: "#06b6d4", get: (p) => p.network_rx_bps, fill: true },
          { label: "Sent", color: "#ec4899", get: (p) => p.network_tx_bps },
        ],
      });
    }
    if (shape.gpus.length) {
      specs.push(
        { id: "gpu-util", title: "GPU utilization", unit: "pct", series: gpuSeries("utilization_gpu_percent") },
        {
          id: "gpu-memory",
          title: "GPU memory",
          subtitle: "used, of each GPU's total",
          unit: "pct",
          series: gpuSeries("memory_percent"),
        },
        { id: "gpu-temperature", title: "GPU temperature", unit: "celsius", series: gpuSeries("temperature_c") },
      );
      if (shape.power) specs.push({ id: "gpu-power", title: "GPU power", unit: "watts", series: gpuSeries("power_w") });
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
    for (const p of points) {
      if (p.gap) continue;
      for (const k in p.gpuBy) {
        gpus.add(Number(k));
        if (p.gpuBy[k].power_w != null) power = true;
      }
      for (const k in p.diskBy) disks.add(k);
      if (p.network_rx_bps != null || p.network_tx_bps != null) network = true;
    }
    return {
      gpus: [...gpus].sort((a, b) => a - b),
      disks: [...disks].sort(),
      network,
      power,
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

  TW.chartData = { specsFor, prepare, shapeOf, columns };
})();
