/* TrainWatch dashboard: the page's settings, as the server renders them into the page
   (json_script "tw-config"): maxHistoryMinutes; labels, the classifier's bottleneck labels in
   its order, each {name, display} (the name the page shows); the fleet report's useful, unused
   and wasted labels; and metrics, how people read each metric of the catalogue, by block
   ("host", "gpu", "disk") and name, each {title, unit}. Read once here; every other script takes
   them from TW.config, and a metric's title and unit from TW.metric. */
(function () {
  "use strict";
  const TW = (window.TW = window.TW || {});

  const element = document.getElementById("tw-config");
  TW.config = Object.freeze(element ? JSON.parse(element.textContent) : {});

  // A metric's {title, unit} from the catalogue; its name and no unit for one the server did not name.
  TW.metric = function (block, name) {
    const known = ((TW.config.metrics || {})[block] || {})[name];
    return { title: (known && known.title) || name, unit: (known && known.unit) || "" };
  };
})();
