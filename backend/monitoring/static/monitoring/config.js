/* TrainWatch dashboard: the page's settings, as the server renders them into the page
   (json_script "tw-config"): maxHistoryMinutes, and labels, the classifier's bottleneck labels in
   its order, each {name, title}. Read once here; every other script takes them from TW.config. */
(function () {
  "use strict";
  const TW = (window.TW = window.TW || {});

  const element = document.getElementById("tw-config");
  TW.config = Object.freeze(element ? JSON.parse(element.textContent) : {});
})();
