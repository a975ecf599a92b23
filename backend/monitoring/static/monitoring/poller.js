/* TrainWatch dashboard: when each request runs again. One timer per kind of request (latest,
   history, servers, alerts, report); scheduling a kind again replaces its timer. A hidden tab asks
   for nothing: what comes due while it is hidden runs the moment it is shown again. Stopping
   leaves the fleet's own polls (the alerts) running: a new selection does not reset them. */
(function () {
  "use strict";
  const TW = window.TW;

  class Poller {
    constructor(fleetWide) {
      this.timers = {};
      this.skipped = {}; // what came due while the tab was hidden
      this.fleetWide = new Set(fleetWide);
      document.addEventListener("visibilitychange", () => {
        if (document.hidden) return;
        for (const [name, fn] of Object.entries(this.skipped)) {
          delete this.skipped[name];
          fn();
        }
      });
    }

    // Run fn in `delay` seconds, instead of whatever `name` was waiting for.
    schedule(name, delay, fn) {
      clearTimeout(this.timers[name]);
      this.timers[name] = setTimeout(() => {
        this.timers[name] = null;
        if (document.hidden) this.skipped[name] = fn;
        else fn();
      }, delay * 1000);
    }

    // Whether `name` waits for its next run.
    waiting(name) {
      return Boolean(this.timers[name]);
    }

    // Every timer but the fleet-wide ones.
    stop() {
      for (const name of Object.keys(this.timers)) {
        if (this.fleetWide.has(name)) continue;
        clearTimeout(this.timers[name]);
        this.timers[name] = null;
        delete this.skipped[name];
      }
    }
  }

  TW.Poller = Poller;
})();
