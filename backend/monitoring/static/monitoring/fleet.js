/* TrainWatch dashboard: the fleet list, every active server with its state, bottleneck, busiest
   GPU, its agent's version and packaging, the age of its newest sample and a badge for its firing
   alerts. Rows are updated in place, so focus and hover stay put. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, states, h, chip } = TW;
  const $ = (id) => document.getElementById(id);

  const rows = new Map(); // slug -> {li, ...parts}

  /* The fleet in the order given, `selected` marked; rows are updated in place. onPick(slug) on a
     click. `firing`: each server's firing alert episodes, by slug (TW.alerts.firingBySlug). */
  function renderFleet(servers, selected, onPick, firing) {
    const list = $("fleet");
    const now = TW.clock.now();
    const newest = newestVersion(servers);
    const seen = new Set();
    for (const server of servers) {
      seen.add(server.slug);
      let row = rows.get(server.slug);
      if (!row) {
        row = fleetRow(server, onPick);
        rows.set(server.slug, row);
      }
      updateRow(row, server, selected, now);
      updateVersion(row.version, server, newest);
      updateBadge(row.badge, (firing && firing[server.slug]) || []);
    }
    for (const [slug, row] of rows) {
      if (!seen.has(slug)) {
        row.li.remove();
        rows.delete(slug);
      }
    }
    // Rows move only when the order changed, so that focus and hover stay put.
    const wanted = servers.map((s) => rows.get(s.slug).li);
    const shown = [...list.children].filter((li) => li.dataset.slug);
    if (wanted.some((li, i) => shown[i] !== li)) list.append(...wanted);
    renderSummary(servers, now);
  }

  function fleetRow(server, onPick) {
    const row = {
      dot: h("span", { class: "dot" }),
      name: h("span", { class: "name" }),
      badge: h("span", { class: "alert-badge hidden" }),
      seen: h("span", { class: "seen num" }),
      state: h("span", { class: "state" }),
      chip: h("span"),
      version: h("span", { class: "agent-version num" }),
      gpu: h("span", { class: "gpu num" }),
    };
    row.link = h(
      "a",
      { class: "server-row", href: "?server=" + encodeURIComponent(server.slug), "data-slug": server.slug },
      row.dot,
      // The badge is part of the link: a click on it opens the server like a click on its name.
      h("span", { class: "title" }, row.name, row.badge),
      row.seen,
      h("span", { class: "meta" }, row.state, row.chip, row.version, row.gpu),
    );
    row.link.addEventListener("click", (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return; // new tab: let the browser do it
      e.preventDefault();
      onPick(server.slug);
    });
    row.li = h("li", { "data-slug": server.slug }, row.link);
    return row;
  }

  function updateRow(row, server, selected, now) {
    const { state: st, age } = states.serverState(server, now);
    row.link.setAttribute("aria-current", server.slug === selected ? "true" : "false");
    row.li.dataset.state = st;
    row.dot.className = "dot " + st;
    row.name.textContent = server.name || server.slug;
    row.name.title = server.slug + (server.hostname ? " · " + server.hostname : "");
    row.seen.textContent = age == null ? "never seen" : fmt.ago(age);
    row.seen.title = server.last_seen_at ? "Last sample " + new Date(server.last_seen_at).toLocaleString() : "";
    row.state.className = "state " + st;
    row.state.textContent = st;
    row.state.title = states.STATE_HELP[st];
    const b = server.bottleneck;
    const label = b && b.label;
    if (row.chip.dataset.label !== (label || "")) {
      row.chip.replaceChildren(server.snapshot_count ? chip(label, label ? null : "pending") : "");
      row.chip.dataset.label = label || "";
    }
    const util = server.gpu_top_util_percent;
    row.gpu.title = util == null ? "" : "Busiest GPU: " + fmt.pct(util, 0);
    row.gpu.replaceChildren(
      ...(util == null
        ? []
        : [h("span", { class: "minibar" }, h("i", { style: "width:" + Math.min(100, util) + "%" })), fmt.pct(util, 0)]),
    );
  }

  /* A version's numbers, part by part ("0.10.0" is newer than "0.9.1"); text between them is ignored. */
  function versionParts(version) {
    return (String(version).match(/\d+/g) || []).slice(0, 8).map(Number);
  }

  function olderThan(a, b) {
    const x = versionParts(a);
    const y = versionParts(b);
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) < (y[i] || 0);
    }
    return false;
  }

  function newestVersion(servers) {
    let newest = "";
    for (const s of servers) {
      if (s.last_agent_version && (!newest || olderThan(newest, s.last_agent_version))) newest = s.last_agent_version;
    }
    return newest;
  }

  /* The agent's version and how it was installed ("0.1.0 · deb"), marked when it is older than the
     newest agent in the fleet. Both strings come from the node: shown as text only. */
  function updateVersion(el, server, newest) {
    const version = server.last_agent_version || "";
    const packaging = server.agent_packaging || "";
    const old = Boolean(version && olderThan(version, newest));
    const text = version ? version + (packaging ? " · " + packaging : "") : "";
    const title = version
      ? "Agent " + version + (packaging ? ", installed as " + packaging : "") +
        (old ? "; older than " + newest + ", the newest in the fleet" : "")
      : "";
    if (el.textContent === text && el.title === title) return;
    el.textContent = text;
    el.title = title;
    el.className = "agent-version num" + (old ? " old" : "");
    el.dataset.old = old ? "true" : "false";
  }

  /* A server's firing alerts: their count, red, or grey when every one of them is silenced; its
     title names their rules. Hidden when none fire. Touched only when that changes (the fleet is
     drawn every second), so that a tooltip stays open. */
  function updateBadge(badge, firing) {
    const silenced = firing.length > 0 && firing.every((e) => e.silenced);
    const className = "alert-badge" + (firing.length ? (silenced ? " silenced" : "") : " hidden");
    const title = firing.length
      ? (firing.length === 1 ? "1 alert firing:\n" : firing.length + " alerts firing:\n") +
        firing.map((e) => e.rule + (e.silenced ? " (silenced)" : "")).join("\n")
      : "";
    if (badge.className === className && badge.title === title) return;
    badge.className = className;
    badge.title = title;
    badge.textContent = firing.length ? String(firing.length) : "";
    if (firing.length) {
      badge.dataset.count = firing.length;
      badge.dataset.silenced = silenced ? "true" : "false";
    } else {
      delete badge.dataset.count;
      delete badge.dataset.silenced;
    }
  }

  function renderSummary(servers, now) {
    const counts = {};
    for (const s of servers) {
      const st = states.serverState(s, now).state;
      counts[st] = (counts[st] || 0) + 1;
    }
    const parts = ["live", "late", "stale", "offline"].filter((k) => counts[k]).map((k) => counts[k] + " " + k);
    const n = servers.length;
    $("fleet-summary").textContent = n ? n + (n === 1 ? " server" : " servers") + " · " + parts.join(" · ") : "";
    if (!n && !$("fleet").querySelector(".empty-fleet")) {
      $("fleet").append(h("li", { class: "empty-fleet" }, "No servers registered yet."));
    } else if (n) {
      const empty = $("fleet").querySelector(".empty-fleet");
      if (empty) empty.remove();
    }
  }

  TW.fleet = { render: renderFleet };
})();
