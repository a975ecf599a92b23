/* TrainWatch dashboard: the uPlot charts of /api/metrics/history/, drawn as chartdata.js describes them,
   with the XID errors and the selected server's alert episodes marked on them.

   Charts are built once per server (their series depend on its GPUs and disks) and then only
   fed new data with setData, so refreshes neither flicker nor lose the zoom. All charts share
   one cursor (uPlot cursor sync); dragging on any of them zooms all of them. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, labels, h } = TW;
  const { specsFor, shapeOf, columns, energyJoules, xidEvents } = TW.chartData;

  const SYNC_KEY = "trainwatch";
  const PLOT_HEIGHT = 170;
  const AXIS_SIZE = 66; // the same y axis width everywhere keeps the x axes of all charts aligned

  const theme = {};
  function readTheme() {
    const css = getComputedStyle(document.documentElement);
    theme.axis = css.getPropertyValue("--chart-axis").trim() || "#5c6773";
    theme.grid = css.getPropertyValue("--chart-grid").trim() || "rgba(0,0,0,.08)";
  }
  readTheme();

  function nice(v, digits) {
    return v.toLocaleString("en-US", { maximumFractionDigits: digits });
  }
  // Unit kinds, as chartdata.js names them from the catalogue's units (its UNIT_KINDS).
  const UNITS = {
    pct: { value: (v) => fmt.pct(v, 1), axis: (v) => nice(v, 0) + "%", range: () => [0, 100] },
    rate: { value: fmt.rate, axis: (v) => (v === 0 ? "0" : fmt.rate(v)), range: zeroBased },
    celsius: { value: fmt.celsius, axis: (v) => nice(v, 0) + " °C", range: (u, min, max) => padded(min, max, 5) },
    watts: { value: fmt.watts, axis: (v) => nice(v, 0) + " W", range: zeroBased },
    energy: { value: fmt.energy, axis: (v) => (v === 0 ? "0" : fmt.energy(v)), range: zeroBased },
  };
  // A chart's unit; one the page has no kind for is a plain number followed by the catalogue's unit.
  function unitOf(spec) {
    if (UNITS[spec.unit]) return UNITS[spec.unit];
    const suffix = spec.suffix ? " " + spec.suffix : "";
    return {
      value: (v) => (v == null ? fmt.DASH : fmt.number(v, 1) + suffix),
      axis: (v) => nice(v, 1) + suffix,
      range: zeroBased,
    };
  }
  function zeroBased(u, min, max) {
    return [0, max > 0 ? max * 1.08 : 1];
  }
  function padded(min, max, pad) {
    if (min == null || max == null) return [0, 100];
    return [Math.floor((min - pad) / pad) * pad, Math.ceil((max + pad) / pad) * pad];
  }

  // --- uPlot options ----------------------------------------------------------------------------

  function axisFont() {
    return "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
  }
  function xAxis(show) {
    return {
      show,
      stroke: () => theme.axis,
      font: axisFont(),
      grid: { stroke: () => theme.grid, width: 1 },
      ticks: { stroke: () => theme.grid, width: 1, size: 4 },
      space: 70,
    };
  }
  function yAxis(unit) {
    return {
      stroke: () => theme.axis,
      font: axisFont(),
      size: AXIS_SIZE,
      gap: 4,
      grid: { stroke: () => theme.grid, width: 1 },
      ticks: { show: false },
      space: 28,
      values: unit ? (u, splits) => splits.map((v) => (v == null ? "" : unit.axis(v))) : () => [],
    };
  }
  // The legend's time: with seconds while points are seconds apart.
  function timeSeries(resolution) {
    return {
      value: (u, v) => {
        if (v == null) return "—";
        if (resolution.value >= 60) return fmt.when(v * 1000, TW.clock.now());
        return new Date(v * 1000).toLocaleTimeString([], { hour12: false });
      },
    };
  }

  let zooming = false;

  function baseOptions(width, handlers, height) {
    return {
      width,
      height,
      cursor: {
        sync: { key: SYNC_KEY, setSeries: false },
        drag: { x: true, y: false, setScale: false },
        points: { size: 7, width: 2 },
        bind: {
          // Double-click resets the zoom of every chart, not just this one.
          dblclick: () => () => {
            handlers.onResetZoom();
            return null;
          },
        },
      },
      select: { show: true },
      legend: { live: true },
      hooks: {
        setSelect: [
          (u) => {
            // The chart dragged on reports first; the others get the same selection through the
            // cursor sync, measured against a scale that is by then already zoomed: ignore them.
            if (u.select.width > 4 && !zooming) {
              zooming = true;
              queueMicrotask(() => (zooming = false));
              const min = u.posToVal(u.select.left, "x");
              const max = u.posToVal(u.select.left + u.select.width, "x");
              handlers.onZoom(min, max);
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
        // Off the chart, the legend shows the newest values rather than dashes.
        setCursor: [
          (u) => {
            if (u.cursor.idx == null && u.data[0].length) u.setLegend({ idx: u.data[0].length - 1 }, false);
          },
        ],
      },
    };
  }

  function lineOptions(spec, width, handlers, resolution) {
    const unit = unitOf(spec);
    const opts = baseOptions(width, handlers, PLOT_HEIGHT + 40);
    opts.scales = { x: { time: true }, y: { range: unit.range } };
    opts.axes = [xAxis(true), yAxis(unit)];
    opts.series = [
      timeSeries(resolution),
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 1.5,
        dash: s.dash ? [5, 4] : undefined,
        fill: s.fill ? s.color + "1f" : undefined,
        show: s.show !== false,
        spanGaps: false,
        points: { show: false },
        value: (u, v) => unit.value(v),
      })),
    ];
    return opts;
  }

  function bandOptions(width, handlers, resolution) {
    const opts = baseOptions(width, handlers, 48);
    opts.cursor.points = { show: false }; // the band's values are label numbers, not heights
    opts.scales = { x: { time: true }, y: { range: () => [0, 1] } };
    opts.axes = [xAxis(false), Object.assign(yAxis(null), { grid: { show: false } })];
    opts.series = [
      timeSeries(resolution),
      {
        label: "Bottleneck",
        stroke: theme.axis,
        paths: () => null,
        points: { show: false },
        value: (u, v) => (v == null ? "—" : labels.displayName(labels.LABEL_NAMES[v])),
      },
    ];
    opts.hooks.draw = [(u) => drawBand(u, resolution.value)];
    return opts;
  }

  /* XID errors on a GPU chart: a dashed line at each, over the plot (uPlot's overlay), whose title
     names the errors. Errors a few pixels apart share one line. Redrawn after every draw (new data,
     zoom, resize); each line is a .xid-mark with data-xids and data-gpus for tests. */
  const XID_MERGE_PX = 4;
  function drawXids(u, events) {
    let layer = u.over.querySelector(".xid-marks");
    if (!layer) {
      layer = h("div", { class: "xid-marks" });
      u.over.append(layer);
    }
    const { min, max } = u.scales.x;
    const groups = [];
    if (min != null && max != null) {
      for (const e of events) {
        if (e.t < min || e.t > max) continue;
        const left = u.valToPos(e.t, "x");
        const last = groups[groups.length - 1];
        if (last && left - last.left < XID_MERGE_PX) last.events.push(e);
        else groups.push({ left, events: [e] });
      }
    }
    layer.replaceChildren(
      ...groups.map((g) =>
        h("span", {
          class: "xid-mark",
          style: "left:" + g.left.toFixed(1) + "px",
          title: g.events.map((e) => fmt.xid(e, true)).join("\n"),
          "data-xids": g.events.map((e) => e.xid).join(" "),
          "data-gpus": g.events.map((e) => e.gpu_index).join(" "),
        }),
      ),
    );
  }

  /* Alert episodes on every chart: a translucent band over the stretch of each one that overlaps the
     visible range, from when its condition began to when it ended (now while it is open). The bands
     lie over the plot (uPlot's overlay) beneath the cursor and the XID lines, and let the mouse
     through but for a strip along their top, whose tooltip is the band's title (rule, times, what
     held, reason). Redrawn after every draw (new data, zoom, resize) and whenever the episodes change;
     each band is an .alert-band with data-episode, data-rule, data-status and data-silenced. */
  const BAND_MIN_PX = 2;
  function drawEpisodes(u, episodes) {
    let layer = u.over.querySelector(".alert-bands");
    if (!layer) {
      layer = h("div", { class: "alert-bands" });
      u.over.prepend(layer);
    }
    const { min, max } = u.scales.x;
    const now = TW.clock.now() / 1000;
    const bands = [];
    if (min != null && max != null) {
      for (const e of episodes) {
        const span = TW.alerts.span(e, now);
        if (!span || span[1] < min || span[0] > max) continue;
        const left = u.valToPos(Math.max(span[0], min), "x");
        const right = u.valToPos(Math.min(span[1], max), "x");
        bands.push(
          h(
            "span",
            {
              class: "alert-band " + e.status + (e.silenced ? " silenced" : ""),
              style: "left:" + left.toFixed(1) + "px;width:" + Math.max(BAND_MIN_PX, right - left).toFixed(1) + "px",
              title: TW.alerts.title(e),
              "data-episode": e.id,
              "data-rule": e.rule,
              "data-status": e.status,
              "data-silenced": e.silenced ? "true" : "false",
            },
            h("i", { class: "alert-band-edge" }),
          ),
        );
      }
    }
    layer.replaceChildren(...bands);
  }

  // The timeline: one coloured stretch per run of the same label.
  function drawBand(u, resolution) {
    const [x, codes] = u.data;
    if (!x.length) return;
    const { ctx, bbox } = u;
    ctx.save();
    ctx.beginPath();
    ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
    ctx.clip();
    let i = 0;
    while (i < x.length) {
      const code = codes[i];
      let j = i;
      while (j + 1 < x.length && codes[j + 1] === code && x[j + 1] - x[j] <= 3 * resolution) j += 1;
      if (code != null) {
        const end = j + 1 < x.length ? Math.min(x[j + 1], x[j] + resolution) : x[j] + resolution;
        const left = u.valToPos(x[i], "x", true);
        const right = u.valToPos(end, "x", true);
        if (right >= bbox.left && left <= bbox.left + bbox.width) {
          ctx.fillStyle = labels.labelColor(labels.LABEL_NAMES[code]);
          ctx.fillRect(left, bbox.top, Math.max(1, right - left), bbox.height);
        }
      }
      i = j + 1;
    }
    ctx.restore();
  }

  // --- the set of charts --------------------------------------------------------------------------

  class Charts {
    constructor(container, handlers) {
      this.container = container;
      this.handlers = handlers;
      this.plots = {}; // id -> uPlot
      this.cards = {};
      this.shapeKey = null;
      this.resolution = { value: 2 };
      this.xids = []; // the window's XID errors, marked on the GPU charts
      this.episodes = []; // the server's alert episodes, as bands on every chart
      this.resize = new ResizeObserver(() => this.fit());
      this.resize.observe(container);
      matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
        readTheme();
        for (const u of Object.values(this.plots)) u.redraw(false, true);
      });
    }

    /* model: {points (from chartData.prepare), resolution, scale: [min, max]} */
    update(model) {
      this.resolution.value = model.resolution || 2;
      this.xids = xidEvents(model.xids);
      const shape = shapeOf(model.points);
      const key = JSON.stringify(shape);
      if (key !== this.shapeKey) this.build(shape, key);
      for (const spec of this.specs) {
        const u = this.plots[spec.id];
        const data = columns(spec, model.points);
        u.batch(() => {
          u.setData(data, false);
          u.setScale("x", { min: model.scale[0], max: model.scale[1] });
        });
        if (spec.kind === "band") this.updateBandKey(model.points, model.scale);
        if (spec.energy) this.updateEnergy(spec, model.points, model.scale);
      }
    }

    /* The selected server's alert episodes (as /api/alerts/ lists them), oldest first so that newer
       bands lie on top; redrawn at once on the charts there are. */
    setEpisodes(episodes) {
      this.episodes = (episodes || [])
        .map((e) => [TW.alerts.span(e, 0), e])
        .filter(([span]) => span)
        .sort((a, b) => a[0][0] - b[0][0])
        .map(([, e]) => e);
      for (const u of Object.values(this.plots)) drawEpisodes(u, this.episodes);
    }

    setScale(min, max) {
      for (const u of Object.values(this.plots)) u.setScale("x", { min, max });
    }

    // What the GPUs used over the range on screen, beside the power chart's title.
    updateEnergy(spec, points, scale) {
      const joules = energyJoules(points, scale);
      const el = this.cards[spec.id].querySelector(".energy");
      el.textContent = joules == null ? "" : fmt.energy(joules) + " in this window";
      if (joules == null) delete el.dataset.joules;
      else el.dataset.joules = joules;
    }

    build(shape, key) {
      this.destroy();
      this.shapeKey = key;
      this.specs = specsFor(shape);
      const width = this.plotWidth();
      for (const spec of this.specs) {
        const plot = h("div", { class: "plot", "data-chart": spec.id });
        const card = h(
          "section",
          { class: "chart-card" + (spec.kind === "band" ? " wide" : ""), id: "chart-" + spec.id },
          h(
            "h3",
            {},
            h("span", { class: "title" }, spec.title),
            spec.subtitle ? h("small", {}, spec.subtitle) : null,
            spec.energy ? h("small", { class: "energy" }) : null,
          ),
          plot,
        );
        if (spec.kind === "band") {
          card.append(h("div", { class: "band-key" }));
        }
        this.container.append(card);
        this.cards[spec.id] = card;
        const w = spec.kind === "band" ? this.container.clientWidth - 26 : width;
        const opts =
          spec.kind === "band"
            ? bandOptions(w, this.handlers, this.resolution)
            : lineOptions(spec, w, this.handlers, this.resolution);
        const draws = opts.hooks.draw || [];
        if (spec.xids) draws.push((u) => drawXids(u, this.xids));
        draws.push((u) => drawEpisodes(u, this.episodes));
        opts.hooks.draw = draws;
        this.plots[spec.id] = new uPlot(opts, [[]].concat(opts.series.slice(1).map(() => [])), plot);
      }
    }

    // Share of each label over what is on screen, as the timeline's key.
    updateBandKey(points, scale) {
      const key = this.cards.bottleneck.querySelector(".band-key");
      const counts = {};
      let total = 0;
      for (const p of points) {
        if (p.gap || !p.bottleneck || p.t < scale[0] || p.t > scale[1]) continue;
        counts[p.bottleneck] = (counts[p.bottleneck] || 0) + 1;
        total += 1;
      }
      const chips = labels.LABEL_NAMES.filter((l) => counts[l]).map((l) =>
        TW.chip(l, labels.displayName(l) + " " + fmt.pct((100 * counts[l]) / total, 0)),
      );
      key.replaceChildren(...(chips.length ? chips : [h("span", { class: "muted" }, "no classified samples in view")]));
    }

    plotWidth() {
      const cw = this.container.clientWidth;
      const columns = Math.max(1, Math.floor((cw + 12) / (460 + 12)));
      return Math.floor((cw - 12 * (columns - 1)) / columns) - 26;
    }

    fit() {
      if (!this.specs) return;
      const width = this.plotWidth();
      for (const spec of this.specs) {
        const u = this.plots[spec.id];
        const w = spec.kind === "band" ? this.container.clientWidth - 26 : width;
        if (w > 0 && Math.abs(u.width - w) > 1) u.setSize({ width: w, height: u.height });
      }
    }

    lengths() {
      const out = {};
      for (const [id, u] of Object.entries(this.plots)) out[id] = u.data[0].length;
      return out;
    }

    destroy() {
      for (const u of Object.values(this.plots)) u.destroy();
      this.plots = {};
      this.cards = {};
      this.specs = null;
      this.shapeKey = null;
      this.container.replaceChildren();
    }
  }

  TW.Charts = Charts;
})();
