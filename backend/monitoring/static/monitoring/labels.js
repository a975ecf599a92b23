/* TrainWatch dashboard: bottleneck labels. Which labels exist, in which order, and the names the
   page shows them by come from the server (TW.config.labels, from the catalogue: "GPU-bound", not
   the APIs' "Gpu Bound" title); how each one looks is decided here. Everything on the page that
   shows a label shows displayName(label). */
(function () {
  "use strict";
  const TW = window.TW;
  const { h } = TW;

  const LABELS = TW.config.labels || [];
  // In the classifier's order, which the timeline's key follows.
  const LABEL_NAMES = LABELS.map((l) => l.name);
  const NAMES = Object.fromEntries(LABELS.map((l) => [l.name, l.display]));

  // One colour per label, chosen to read on light and dark backgrounds alike, and what it means.
  const LOOKS = {
    "gpu-bound": { color: "#2ea043", help: "The GPUs are the busy part: the job runs as fast as its GPUs allow." },
    "cpu-bound": { color: "#e8780f", help: "The GPUs wait on the CPU, e.g. data loading or preprocessing." },
    "io-bound": { color: "#8b5cf6", help: "The GPUs wait on disk reads or writes (iowait, busy disks)." },
    "memory-bound": { color: "#db2777", help: "Host memory is nearly full or swapping." },
    "gpu-throttled": { color: "#dc2626", help: "The GPUs are held back by a power or thermal cap." },
    "gpu-idle-held": { color: "#ca8a04", help: "GPU memory is held but the GPUs compute nothing." },
    balanced: { color: "#0ea5e9", help: "No single resource holds the job back." },
    idle: { color: "#94a3b8", help: "Nothing is running." },
  };
  const OTHER_COLOR = "#94a3b8";
  /* Not a label of the classifier: the fleet report's GPU time whose samples were not classified
     (yet), in a neutral grey apart from idle's. */
  const UNCLASSIFIED = "unclassified";
  const UNCLASSIFIED_LOOK = {
    display: "Unclassified",
    color: "#6e7681",
    help: "Samples the classifier has not labelled (yet).",
  };
  LOOKS[UNCLASSIFIED] = UNCLASSIFIED_LOOK;

  function displayName(label) {
    if (label === UNCLASSIFIED && !NAMES[label]) return UNCLASSIFIED_LOOK.display;
    return label ? NAMES[label] || label : "";
  }
  function labelColor(label) {
    return (LOOKS[label] && LOOKS[label].color) || OTHER_COLOR;
  }
  function helpFor(label) {
    return (LOOKS[label] && LOOKS[label].help) || "";
  }

  // A label as a coloured chip; `text` defaults to its name.
  function chip(label, text) {
    if (!label) return h("span", { class: "chip none" }, text || "not classified");
    return h(
      "span",
      { class: "chip", style: "--b:" + labelColor(label), title: helpFor(label) || null, "data-label": label },
      text || displayName(label),
    );
  }

  TW.labels = { LABEL_NAMES, UNCLASSIFIED, displayName, labelColor, helpFor };
  TW.chip = chip;
})();
