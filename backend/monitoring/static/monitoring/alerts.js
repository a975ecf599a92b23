/* TrainWatch dashboard: alert episodes, as /api/alerts/ lists them (firing, pending, and resolved in
   the last 7 days; each {id, rule, server, status, started_at, fired_at, ended_at, value, label,
   reason, silenced}). Grouping them by server for the fleet's badges, the selected server's alert
   list, and each episode's stretch and title, which the charts' bands use. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, h, labels } = TW;
  const $ = (id) => document.getElementById(id);

  const NONE = Object.freeze({ firing: [], pending: [], recent: [] });

  // One server's episodes of an answer (null: none yet), in the answer's order.
  function ofServer(alerts, slug) {
    if (!alerts || !slug) return NONE;
    const mine = (list) => (list || []).filter((e) => e.server === slug);
    return { firing: mine(alerts.firing), pending: mine(alerts.pending), recent: mine(alerts.recent) };
  }

  // The firing episodes of each server, by slug.
  function firingBySlug(alerts) {
    const out = {};
    for (const e of (alerts && alerts.firing) || []) (out[e.server] = out[e.server] || []).push(e);
    return out;
  }

  function seconds(iso) {
    const ms = iso ? Date.parse(iso) : NaN;
    return Number.isNaN(ms) ? null : ms / 1000;
  }

  /* An episode's stretch, [start, end] in epoch seconds: from when its condition began (else when
     it fired) to when it ended, or to `now` (seconds) while it is open. null without a start. */
  function span(e, now) {
    const start = seconds(e.started_at) ?? seconds(e.fired_at);
    if (start == null) return null;
    const end = seconds(e.ended_at);
    return [start, end == null ? Math.max(start, now) : Math.max(start, end)];
  }

  function statusText(e) {
    return e.status + (e.silenced ? ", silenced" : "");
  }

  // What held: the label (a bottleneck label by its name on the page) and the value, where the episode has them.
  function heldText(e) {
    const parts = [];
    if (e.label) parts.push(labels.displayName(e.label));
    if (e.value != null) parts.push(e.value.toLocaleString("en-US", { maximumFractionDigits: 2 }));
    return parts.join(" · ");
  }

  /* Everything about an episode in a few lines, for tooltips: rule and status, its times, what held
     and the classifier's reason. */
  function title(e) {
    const lines = [e.rule + " · " + statusText(e)];
    const start = seconds(e.started_at);
    const fired = seconds(e.fired_at);
    const ended = seconds(e.ended_at);
    if (start != null) {
      lines.push(fmt.moment(start * 1000) + " – " + (ended != null ? fmt.moment(ended * 1000) : "now"));
    }
    if (fired != null) lines.push("fired " + fmt.moment(fired * 1000));
    const held = heldText(e);
    if (held) lines.push(held);
    if (e.reason) lines.push(e.reason);
    return lines.join("\n");
  }

  // --- the selected server's alert list ---------------------------------------------------------

  function item(e, when) {
    const held = [];
    if (e.label) {
      held.push(TW.chip(labels.LABEL_NAMES.includes(e.label) ? e.label : null, labels.displayName(e.label)));
    }
    if (e.value != null) {
      held.push(h("span", { class: "value num" }, e.value.toLocaleString("en-US", { maximumFractionDigits: 2 })));
    }
    const status = e.status === "resolved" ? null : e.silenced ? "silenced" : e.status;
    return h(
      "li",
      {
        class: "alert " + e.status + (e.silenced ? " silenced" : ""),
        "data-episode": e.id,
        "data-rule": e.rule,
        "data-status": e.status,
        "data-silenced": e.silenced ? "true" : "false",
        title: title(e),
      },
      status ? h("span", { class: "alert-status" }, status) : null,
      h("strong", { class: "rule" }, e.rule),
      h("span", { class: "when" }, when),
      held.length ? h("span", { class: "held" }, ...held) : null,
      e.reason ? h("span", { class: "reason muted" }, e.reason) : null,
    );
  }

  // "since 14:02 (25 min)": a firing episode since it fired, a pending one since its condition began.
  function sinceText(e, nowMs) {
    const at = (e.status === "firing" && seconds(e.fired_at)) || seconds(e.started_at);
    if (at == null) return "";
    return "since " + fmt.when(at * 1000, nowMs) + " (" + fmt.duration(nowMs / 1000 - at) + ")";
  }
  // "13:10 – 13:42 (32 min)"
  function fromToText(e, nowMs) {
    const s = span(e, nowMs / 1000);
    if (!s) return "";
    return fmt.when(s[0] * 1000, nowMs) + " – " + fmt.when(s[1] * 1000, nowMs) + " (" + fmt.duration(s[1] - s[0]) + ")";
  }

  /* The list in #alerts: firing and pending episodes first, then those resolved in the last 7 days;
     nothing at all when the server has none. `mine` as ofServer gives it. */
  function renderList(mine) {
    const box = $("alerts");
    if (!box) return;
    const open = mine.firing.concat(mine.pending);
    if (!open.length && !mine.recent.length) return box.replaceChildren();
    const now = TW.clock.now();
    const counts = [
      mine.firing.length ? mine.firing.length + " firing" : null,
      mine.pending.length ? mine.pending.length + " pending" : null,
      mine.recent.length ? mine.recent.length + " resolved in the last 7 days" : null,
    ].filter(Boolean);
    box.replaceChildren(
      h(
        "section",
        { class: "panel alerts", id: "alerts-panel" },
        h("h2", {}, "Alerts", h("small", { class: "muted" }, counts.join(" · "))),
        h(
          "ul",
          { class: "alert-list", id: "alerts-open" },
          ...(open.length
            ? open.map((e) => item(e, sinceText(e, now)))
            : [h("li", { class: "none muted" }, "Nothing firing or pending.")]),
        ),
        mine.recent.length ? h("h3", {}, "Resolved in the last 7 days") : null,
        mine.recent.length
          ? h(
              "ul",
              { class: "alert-list", id: "alerts-recent" },
              ...mine.recent.map((e) => item(e, fromToText(e, now))),
            )
          : null,
      ),
    );
  }

  TW.alerts = { NONE, ofServer, firingBySlug, span, title, renderList };
})();
