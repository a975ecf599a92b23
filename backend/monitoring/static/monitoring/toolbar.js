/* TrainWatch dashboard: the controls above the charts and the fleet report (range buttons, the
   zoom and its reset, where the figures come from) and the note when a range holds no samples. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, clock, h, router } = TW;
  const $ = (id) => document.getElementById(id);

  function show(visible) {
    $("toolbar").classList.toggle("hidden", !visible);
  }

  /* One button per range, `range` pressed; onPick(range) on a click. */
  function renderRanges(range, onPick) {
    const box = $("ranges");
    if (!box.childElementCount) {
      for (const [r] of router.RANGES) {
        box.append(h("button", { type: "button", "data-range": r, onclick: () => onPick(r) }, r));
      }
    }
    for (const b of box.children) b.setAttribute("aria-pressed", b.dataset.range === range ? "true" : "false");
  }

  // zoom: [from, to] in epoch seconds, or null.
  function renderZoom(zoom) {
    $("zoom").classList.toggle("hidden", !zoom);
    if (zoom) {
      const now = clock.now();
      $("zoom-text").textContent = "Zoomed to " + fmt.when(zoom[0] * 1000, now) + " – " + fmt.when(zoom[1] * 1000, now);
    }
  }

  // The Reset zoom button and Esc.
  function onResetZoom(reset) {
    $("reset-zoom").addEventListener("click", reset);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") reset();
    });
  }

  // Where the points come from and how far apart they are; `meta` as TW.history.meta gives it.
  function renderDataNote(meta, count) {
    const source = { raw: "raw samples", "1m": "1-minute tier", "1h": "1-hour tier" }[meta.source] || meta.source;
    $("data-note").textContent =
      source +
      " · " +
      fmt.duration(meta.resolution_seconds) +
      " per point · " +
      count.toLocaleString("en-US") +
      (count === 1 ? " point" : " points");
  }

  // The fleet report's source, as the data note above the charts says it.
  function renderReportNote(report) {
    const source = { "1m": "1-minute tier", "1h": "1-hour tier" }[report.source] || report.source;
    $("data-note").textContent = source + " · GPU-hours per UTC day";
  }

  /* No samples in the window, although the server has some: say so and offer a range that has
     them; onPick(range) on a click. */
  function renderChartsNote(server, range, count, onPick) {
    const box = $("charts-note");
    if (count || !server || !server.latest_snapshot_at) return box.replaceChildren();
    const age = (clock.now() - Date.parse(server.latest_snapshot_at)) / 1000;
    const fit = router.RANGES.find(([, minutes]) => minutes * 60 > age + 60);
    box.replaceChildren(
      h(
        "div",
        { class: "notice warn", id: "no-data-in-range" },
        "No samples in the last " + rangeText(range) + ": the newest is from " + fmt.ago(age) + ". ",
        fit
          ? h(
              "button",
              { class: "btn", type: "button", onclick: () => onPick(fit[0]) },
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

  TW.toolbar = { show, renderRanges, renderZoom, onResetZoom, renderDataNote, renderReportNote, renderChartsNote, rangeText };
})();
