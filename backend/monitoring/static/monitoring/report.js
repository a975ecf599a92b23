/* TrainWatch dashboard: the fleet report, as /api/fleet/report/ answers it: where the fleet's
   GPU-hours went over a window. The totals (GPU-hours, utilization, energy, servers, GPU-hours
   lost, and of those the unused and the wasted), a stacked bar per UTC day of GPU-hours by
   bottleneck with its legend, and a table of the servers, sortable by any column. Draws what it
   is given; the controller fetches and keeps the sort in the URL.

   The bars are plain elements (a column per day, a segment per label, sized and coloured through
   element.style), so they need no canvas and every figure is in the DOM: each day is a .day with
   data-date and data-gpu-hours, each segment a .seg with data-label and data-hours. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, labels, h } = TW;
  const $ = (id) => document.getElementById(id);

  // GPU time that did its job, as the server says; every other label (and unclassified) is lost:
  // unused (nothing ran on the GPUs) or wasted (a job held them and waited), or not classified yet.
  const USEFUL = new Set(TW.config.usefulLabels || []);
  const namesOf = (list) => (list || []).map((label) => TW.labels.displayName(label));
  const USEFUL_TEXT = namesOf([...USEFUL]).join(" and ");
  const UNUSED_TEXT = namesOf(TW.config.unusedLabels).join(", ");
  const WASTED_TEXT = namesOf(TW.config.wastedLabels).join(", ");
  const DAY_MS = 86400 * 1000;
  const MAX_DATE_LABELS = 12; // beneath the bars; more days get every n-th date

  const byName = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  // --- numbers ------------------------------------------------------------------------------------

  function decimals(v, digits) {
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  // GPU-hours as people read them: 1,234 / 56.7 / 3.42.
  function hours(v) {
    if (v == null) return fmt.DASH;
    const a = Math.abs(v);
    return decimals(v, a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }
  function kwh(v) {
    return v == null ? fmt.DASH : fmt.energy(v * 3.6e6);
  }
  function gpus(v) {
    return v == null ? fmt.DASH : v.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }
  function lostOf(byBottleneck) {
    let lost = 0;
    for (const [label, v] of Object.entries(byBottleneck || {})) if (!USEFUL.has(label)) lost += v || 0;
    return lost;
  }

  // The report's labels: the classifier's, in its order, then any other the answer has, unclassified last.
  function labelsOf(body) {
    const present = Object.keys((body.fleet && body.fleet.by_bottleneck) || {});
    const extra = present.filter((l) => !labels.LABEL_NAMES.includes(l) && l !== labels.UNCLASSIFIED);
    return [...labels.LABEL_NAMES, ...extra, labels.UNCLASSIFIED];
  }

  function swatch(label) {
    const el = h("i", { class: "swatch", "data-label": label });
    el.style.background = labels.labelColor(label);
    return el;
  }

  // --- the table's columns ------------------------------------------------------------------------

  /* Each column: key (as the URL's sort names it), title, how a server's value is read, how it is
     shown, and whether it is text (sorted A to Z first) or a number (largest first). */
  function columnsOf(labelList) {
    const num = (key, title, show, help) => ({ key, title, help, value: (s) => s[key], show, text: false });
    return [
      {
        key: "server",
        title: "Server",
        value: (s) => s.name || s.slug,
        text: true,
      },
      num("gpu_count", "GPUs", gpus, "GPUs per sample, on average over the window"),
      num("gpu_hours", "GPU-hours", (v) => fmt.number(v, 1), "GPUs × time covered by samples"),
      num("utilization_percent", "Utilization", (v) => fmt.pct(v, 1), "GPU utilization, weighted by GPU-hours"),
      num("energy_kwh", "Energy", kwh, "what the GPUs' energy counters counted"),
      num(
        "lost_gpu_hours",
        "Hours lost",
        (v) => fmt.number(v, 1),
        "GPU-hours under every label but " + USEFUL_TEXT,
      ),
      num("unused_gpu_hours", "Unused", (v) => fmt.number(v, 1), "GPU-hours with nothing on the GPUs: " + UNUSED_TEXT),
      num(
        "wasted_gpu_hours",
        "Wasted",
        (v) => fmt.number(v, 1),
        "GPU-hours a job held the GPUs but waited: " + WASTED_TEXT,
      ),
      {
        key: "top_bottleneck",
        title: "Top bottleneck",
        help: "the label with the most GPU-hours",
        value: (s) => (s.top_bottleneck ? labels.displayName(s.top_bottleneck) : null),
        text: true,
      },
      ...labelList.map((label) => ({
        key: label,
        label,
        title: labels.displayName(label),
        help: ["GPU-hours labelled " + labels.displayName(label), labels.helpFor(label)].filter(Boolean).join(": "),
        value: (s) => (s.by_bottleneck || {})[label] ?? 0,
        show: (v) => fmt.number(v, 1),
        text: false,
      })),
    ];
  }

  // "gpu_hours" or "-gpu_hours" -> {key, desc}; null for the API's order.
  function parseSort(sort) {
    if (!sort) return null;
    const desc = sort.startsWith("-");
    return { key: desc ? sort.slice(1) : sort, desc };
  }

  /* The sort after a click on column `column` when it is `sort` now: the other way round if it is
     that column's already, else text A to Z and numbers largest first. */
  function nextSort(sort, column) {
    const now = parseSort(sort);
    if (now && now.key === column.key) return now.desc ? column.key : "-" + column.key;
    return column.text ? column.key : "-" + column.key;
  }

  function sorted(servers, columns, sort) {
    const order = parseSort(sort);
    const column = order && columns.find((c) => c.key === order.key);
    if (!column) return servers.slice();
    const sign = order.desc ? -1 : 1;
    return servers
      .map((s, i) => [s, i])
      .sort(([a, i], [b, j]) => {
        const x = column.value(a);
        const y = column.value(b);
        // Servers without a value go last, whichever the direction; ties keep the API's order.
        if (x == null || y == null) return x == null && y == null ? i - j : x == null ? 1 : -1;
        const c = column.text ? byName.compare(x, y) : x - y;
        return c ? sign * c : i - j;
      })
      .map(([s]) => s);
  }

  // --- drawing ------------------------------------------------------------------------------------

  function loading() {
    $("fleet-report-notice").replaceChildren();
    if ($("fleet-totals").childElementCount) return; // the last report stays until the next one comes
    $("fleet-window").textContent = "Loading…";
    $("fleet-bars").replaceChildren(h("p", { class: "loading" }, "Loading the fleet report…"));
  }

  function showError(message) {
    $("fleet-report-notice").replaceChildren(
      h("div", { class: "notice bad", id: "fleet-report-error" }, "The fleet report failed: " + message),
    );
  }

  /* body: the answer of /api/fleet/report/. opts: {title (what the window is, e.g. "Last 7 days"),
     sort, onSort(sort), onOpen(slug), hrefFor(slug), csvHref}. */
  function render(body, opts) {
    $("fleet-report-notice").replaceChildren();
    const labelList = labelsOf(body);
    renderHead(body, opts);
    renderTotals(body);
    renderBars(body, labelList);
    renderLegend(body, labelList);
    renderTable(body, labelList, opts);
  }

  function renderHead(body, opts) {
    $("fleet-window").textContent =
      opts.title + ": " + fmt.clockTime(Date.parse(body.from), true) + " – " + fmt.clockTime(Date.parse(body.to), true);
    $("fleet-window").title = body.from + " – " + body.to + " (UTC)";
    $("fleet-csv").href = opts.csvHref;
  }

  function tile(key, title, value, text, note, help) {
    return h(
      "div",
      { class: "tile", id: "fleet-total-" + key, "data-value": value == null ? "" : value, title: help || null },
      h("h3", {}, title),
      h("div", { class: "big num" }, ...text),
      note ? h("div", { class: "muted note" }, note) : null,
    );
  }

  // "12% of GPU time: " for a part of the fleet's GPU-hours; nothing when there are none.
  function shareText(part, f) {
    return f.gpu_hours && part != null ? fmt.pct((100 * part) / f.gpu_hours, 0) + " of GPU time: " : "";
  }

  function renderTotals(body) {
    const f = body.fleet || {};
    const lost = lostOf(f.by_bottleneck);
    const share = f.gpu_hours ? (100 * lost) / f.gpu_hours : null;
    const gpuHours = (v) => [hours(v), h("small", {}, "GPU-h")];
    $("fleet-totals").replaceChildren(
      tile("gpu_hours", "GPU-hours", f.gpu_hours, gpuHours(f.gpu_hours), "GPUs × time sampled"),
      tile(
        "utilization_percent",
        "GPU utilization",
        f.utilization_percent,
        [fmt.pct(f.utilization_percent, 1)],
        "weighted by GPU-hours",
      ),
      tile("energy_kwh", "Energy", f.energy_kwh, [kwh(f.energy_kwh)], "from the GPUs' energy counters"),
      tile("servers", "Servers", f.servers, [String(f.servers ?? 0)], "with GPU samples in the window"),
      tile(
        "lost_gpu_hours",
        "GPU-hours lost",
        Math.round(lost * 1000) / 1000,
        gpuHours(lost),
        (share == null ? "" : fmt.pct(share, 0) + " of GPU time, ") + "to anything but " + USEFUL_TEXT,
      ),
      tile(
        "unused_gpu_hours",
        "GPU-hours unused",
        f.unused_gpu_hours,
        gpuHours(f.unused_gpu_hours),
        shareText(f.unused_gpu_hours, f) + "nothing ran on the GPUs",
        "GPU-hours labelled " + UNUSED_TEXT,
      ),
      tile(
        "wasted_gpu_hours",
        "GPU-hours wasted",
        f.wasted_gpu_hours,
        gpuHours(f.wasted_gpu_hours),
        shareText(f.wasted_gpu_hours, f) + "a job held the GPUs but waited",
        "GPU-hours labelled " + WASTED_TEXT,
      ),
    );
  }

  // Every UTC day of the window, those without samples too, each {date, gpu_hours, by_bottleneck}.
  function daysOf(body) {
    const known = new Map((body.days || []).map((d) => [d.date, d]));
    const out = [];
    const from = Date.parse(body.from);
    const to = Date.parse(body.to);
    if (!Number.isNaN(from) && !Number.isNaN(to)) {
      const first = Math.floor(from / DAY_MS) * DAY_MS;
      for (let t = first; t < to && out.length < 400; t += DAY_MS) {
        const date = new Date(t).toISOString().slice(0, 10);
        out.push(known.get(date) || { date, gpu_hours: 0, by_bottleneck: {} });
        known.delete(date);
      }
    }
    out.push(...known.values()); // a day outside the window, should the answer ever hold one
    return out.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  }

  function dateText(date) {
    return new Date(date + "T00:00:00Z").toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
  }

  // An axis top and step of 1, 2 or 5 × 10^n that hold `max` in at most 5 steps.
  function niceScale(max) {
    if (!(max > 0)) return { top: 1, step: 0.25 };
    const rough = max / 4;
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
    return { top: Math.ceil(max / step - 1e-9) * step, step };
  }

  function renderBars(body, labelList) {
    const days = daysOf(body);
    const { top, step } = niceScale(Math.max(0, ...days.map((d) => d.gpu_hours || 0)));
    const axis = h("div", { class: "bars-axis" });
    const plot = h("div", { class: "bars-plot" });
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    for (let i = 0; i * step <= top + step / 2; i += 1) {
      const v = i * step;
      const at = ((100 * v) / top).toFixed(2) + "%";
      const tick = h("span", { class: "tick num" }, decimals(v, digits));
      tick.style.bottom = at;
      const line = h("i", { class: "gridline" });
      line.style.bottom = at;
      axis.append(tick);
      plot.append(line);
    }
    const dates = h("div", { class: "bars-dates" });
    const every = Math.max(1, Math.ceil(days.length / MAX_DATE_LABELS));
    days.forEach((day, i) => {
      const total = day.gpu_hours || 0;
      const by = day.by_bottleneck || {};
      const lines = [dateText(day.date) + " (UTC): " + (total ? hours(total) + " GPU-hours" : "no GPU samples")];
      const stack = h("div", { class: "stack" });
      stack.style.height = ((100 * total) / top).toFixed(3) + "%";
      for (const label of labelList) {
        const v = by[label] || 0;
        if (v <= 0) continue;
        const seg = h("div", { class: "seg", "data-label": label, "data-hours": v });
        seg.style.height = ((100 * v) / total).toFixed(3) + "%";
        seg.style.background = labels.labelColor(label);
        stack.append(seg);
        lines.push(labels.displayName(label) + ": " + hours(v) + " h (" + fmt.pct((100 * v) / total, 0) + ")");
      }
      plot.append(
        h(
          "div",
          { class: "day", "data-date": day.date, "data-gpu-hours": total, title: lines.join("\n") },
          stack,
        ),
      );
      dates.append(h("span", {}, i % every === 0 ? dateText(day.date) : ""));
    });
    $("fleet-bars").replaceChildren(axis, plot, dates);
  }

  function renderLegend(body, labelList) {
    const by = (body.fleet && body.fleet.by_bottleneck) || {};
    $("fleet-legend").replaceChildren(
      ...labelList.map((label) =>
        h(
          "span",
          {
            class: "legend-item" + (by[label] ? "" : " zero"),
            "data-label": label,
            title: labels.helpFor(label) || null,
          },
          swatch(label),
          labels.displayName(label),
          h("span", { class: "muted num" }, hours(by[label] || 0) + " h"),
        ),
      ),
    );
  }

  function renderTable(body, labelList, opts) {
    const columns = columnsOf(labelList);
    const order = parseSort(opts.sort);
    const head = h(
      "tr",
      {},
      ...columns.map((c) => {
        const sortedHere = order && order.key === c.key;
        return h(
          "th",
          {
            class: (c.text ? "text" : "num") + (c.label ? " label" : ""),
            "data-key": c.key,
            "aria-sort": sortedHere ? (order.desc ? "descending" : "ascending") : "none",
            title: c.help || null,
          },
          h(
            "button",
            { type: "button", class: "sort", onclick: () => opts.onSort(nextSort(opts.sort, c)) },
            c.label ? swatch(c.label) : null,
            c.title,
            h("span", { class: "arrow", "aria-hidden": "true" }, sortedHere ? (order.desc ? "▼" : "▲") : ""),
          ),
        );
      }),
    );
    const servers = sorted(body.servers || [], columns, opts.sort);
    const rows = servers.map((s) => serverRow(s, columns, opts));
    if (!rows.length) {
      rows.push(h("tr", { class: "none" }, h("td", { colspan: columns.length }, "No GPU samples in this window.")));
    }
    $("fleet-table").querySelector("thead").replaceChildren(head);
    $("fleet-table").querySelector("tbody").replaceChildren(...rows);
    $("fleet-table-count").textContent =
      servers.length + (servers.length === 1 ? " server" : " servers") + " · a click on one opens it over this window";
  }

  function serverRow(s, columns, opts) {
    const cells = columns.map((c) => {
      const v = c.value(s);
      if (c.key === "server") {
        return h(
          "td",
          { class: "text server", "data-value": v },
          h("a", { href: opts.hrefFor(s.slug), class: "name" }, s.name || s.slug),
          s.name && s.name !== s.slug ? h("span", { class: "slug muted" }, s.slug) : null,
        );
      }
      if (c.key === "top_bottleneck") {
        return h(
          "td",
          { class: "text", "data-value": s.top_bottleneck || "" },
          s.top_bottleneck ? TW.chip(s.top_bottleneck) : fmt.DASH,
        );
      }
      return h("td", { class: "num" + (c.label && !v ? " zero" : ""), "data-value": v == null ? "" : v }, c.show(v));
    });
    const tr = h("tr", { "data-slug": s.slug, title: "Open " + (s.name || s.slug) + " over this window" }, ...cells);
    tr.addEventListener("click", (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; // a new tab: the browser's business
      e.preventDefault();
      opts.onOpen(s.slug);
    });
    return tr;
  }

  TW.report = { render, loading, showError, lostOf, USEFUL };
})();
