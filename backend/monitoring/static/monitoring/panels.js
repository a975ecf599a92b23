/* TrainWatch dashboard: the selected server, from the answers of /api/servers/ and
   /api/metrics/latest/: its name and state, notices when it is not reporting on time, the
   bottleneck banner, the figures (CPU, memory, disk, network, GPUs) and the GPU table. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, labels, states, h } = TW;
  const $ = (id) => document.getElementById(id);

  /* Shows `server` with its newest snapshot `snap` (null while there is none). */
  function render(server, snap) {
    $("selected").classList.remove("hidden");
    renderHead(server);
    renderNotices(server);
    renderBanner(server, snap);
    renderTiles(snap);
    renderGpus(snap);
    document.title = (server.name || server.slug) + " · TrainWatch";
  }

  // Ages and states move with time even when nothing new arrives.
  function tick(server) {
    if ($("selected").classList.contains("hidden")) return;
    renderHead(server);
    renderNotices(server);
  }

  function hide() {
    $("selected").classList.add("hidden");
    $("notices").replaceChildren();
  }

  function renderHead(server) {
    const { state: st, age } = states.serverState(server, TW.clock.now());
    const tags = Object.entries(server.labels || {}).map(([k, v]) => h("span", { class: "chip tag" }, k + ": " + v));
    $("server-head").replaceChildren(
      h("h1", { id: "server-name" }, server.name || server.slug),
      h(
        "span",
        { class: "facts" },
        h(
          "span",
          { class: "state " + st, id: "server-state", title: states.STATE_HELP[st] },
          h("span", { class: "dot " + st }),
          " ",
          st,
        ),
        h("span", { id: "server-seen" }, age == null ? "never seen" : "last sample " + fmt.ago(age)),
        server.interval_seconds
          ? h("span", {}, "every " + fmt.duration(server.interval_seconds).replace(/^0 s$/, "<1 s"))
          : null,
        server.hostname ? h("span", {}, server.hostname) : null,
        server.last_agent_version ? h("span", {}, "agent " + server.last_agent_version) : null,
        ...tags,
      ),
    );
  }

  function renderNotices(server) {
    const { state: st, age } = states.serverState(server, TW.clock.now());
    const box = $("notices");
    if (st === "live" || !server.latest_snapshot_at) return box.replaceChildren();
    const text = {
      late: "Samples from this server are late: the newest is " + fmt.ago(age) + ".",
      stale: "This server stopped reporting " + fmt.ago(age) + "; what follows is its last known state.",
      offline:
        "This server is offline: its last sample is from " + fmt.ago(age) + ". What follows is its last known state.",
    }[st];
    box.replaceChildren(
      h("div", { class: "notice " + (st === "late" ? "warn" : "bad"), id: "server-notice", "data-state": st }, text),
    );
  }

  function renderBanner(server, snap) {
    const b = snap ? snap.bottleneck : null;
    const el = $("banner");
    if (!snap) return el.replaceChildren();
    const st = states.serverState(server, TW.clock.now()).state;
    if (!b) {
      return el.replaceChildren(
        h(
          "div",
          { class: "banner", id: "bottleneck" },
          h("span", { class: "kicker" }, "Now"),
          h("span", { class: "label-title" }, "Classifying…"),
          h("span", { class: "reason muted" }, "The newest sample has not been classified yet."),
        ),
      );
    }
    const since = b.since ? Date.parse(b.since) : null;
    const now = TW.clock.now();
    el.replaceChildren(
      h(
        "div",
        {
          class: "banner" + (st === "live" || st === "late" ? "" : " offline"),
          id: "bottleneck",
          "data-label": b.label,
          style: "--b:" + labels.labelColor(b.label),
        },
        h("span", { class: "kicker" }, st === "live" || st === "late" ? "Now" : "Last"),
        h("span", { class: "label-title" }, labels.displayName(b.label)),
        h("span", { class: "reason" }, b.reason || ""),
        h("span", { class: "what" }, labels.helpFor(b.label)),
        h(
          "div",
          { class: "side" },
          h("div", { class: "confidence num" }, fmt.pct(100 * b.confidence, 0)),
          h("div", {}, "confidence"),
          since
            ? h(
                "div",
                { id: "bottleneck-since", title: new Date(since).toLocaleString() },
                "since " + fmt.when(since, now) + " (" + fmt.duration((now - since) / 1000) + ")",
              )
            : null,
        ),
      ),
    );
  }

  function meter(value, color) {
    const v = value == null ? 0 : Math.max(0, Math.min(100, value));
    return h("div", { class: "meter" }, h("i", { style: "width:" + v + "%" + (color ? ";--m:" + color : "") }));
  }
  function usageColor(v) {
    return v == null ? null : v >= 90 ? "var(--bad)" : v >= 75 ? "var(--warn)" : null;
  }
  function tile(id, title, big, unit, bar, rows) {
    return h(
      "div",
      { class: "tile", id: "tile-" + id },
      h("h3", {}, title),
      h("div", { class: "big num" }, big, unit ? h("small", {}, unit) : null),
      bar,
      h("dl", {}, ...rows.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
  }

  function renderTiles(snap) {
    if (!snap) return $("tiles").replaceChildren();
    const { cpu, memory, disk, network = {} } = snap;
    const cores = cpu.count_logical
      ? cpu.count_logical + (cpu.count_physical ? " · " + cpu.count_physical + " physical" : "")
      : null;
    const used =
      memory.used_bytes != null && memory.total_bytes
        ? fmt.bytes(memory.used_bytes) + " of " + fmt.bytes(memory.total_bytes)
        : null;
    const swap = memory.swap_total_bytes
      ? fmt.bytes(memory.swap_used_bytes) + " of " + fmt.bytes(memory.swap_total_bytes)
      : "none";
    const devices = (disk.devices || []).map((d) => [
      d.device,
      fmt.pct(d.util_percent, 0) + " · " + fmt.rate((d.read_bps || 0) + (d.write_bps || 0)),
    ]);
    $("tiles").replaceChildren(
      tile("cpu", "CPU", fmt.pct(cpu.usage_percent, 0), null, meter(cpu.usage_percent, usageColor(cpu.usage_percent)), [
        ["I/O wait", fmt.pct(cpu.iowait_percent, 1)],
        ["Load", [cpu.load_1, cpu.load_5, cpu.load_15].map((v) => fmt.number(v, 1)).join(" · ")],
        cores ? ["Cores", cores] : null,
        snap.process_count != null ? ["Processes", fmt.number(snap.process_count)] : null,
      ]),
      tile("memory", "Memory", fmt.pct(memory.percent, 0), null, meter(memory.percent, usageColor(memory.percent)), [
        used ? ["Used", used] : null,
        ["Swap", fmt.pct(memory.swap_percent, 0) + (memory.swap_total_bytes ? " · " + swap : "")],
      ]),
      tile(
        "disk",
        "Disk",
        fmt.rate((disk.read_bps || 0) + (disk.write_bps || 0)),
        null,
        meter(disk.util_percent, usageColor(disk.util_percent)),
        [
          ["Read", fmt.rate(disk.read_bps)],
          ["Write", fmt.rate(disk.write_bps)],
          ["Busiest disk", fmt.pct(disk.util_percent, 0) + " busy"],
          ...devices,
        ],
      ),
      tile("network", "Network", fmt.rate((network.rx_bps || 0) + (network.tx_bps || 0)), null, null, [
        ["Received", fmt.rate(network.rx_bps)],
        ["Sent", fmt.rate(network.tx_bps)],
      ]),
      snap.gpu.present
        ? tile(
            "gpu",
            "GPUs",
            fmt.pct(snap.gpu.top_util_percent, 0),
            "busiest of " + snap.gpu.count,
            meter(snap.gpu.top_util_percent),
            [
              ["Average", fmt.pct(avg(snap.gpu.devices.map((g) => g.utilization_gpu_percent)), 0)],
              ["Hottest", fmt.celsius(Math.max(...snap.gpu.devices.map((g) => g.temperature_c ?? -Infinity)))],
              [
                "Power",
                fmt.number(sum(snap.gpu.devices.map((g) => g.power_w))) +
                  " / " +
                  fmt.watts(sum(snap.gpu.devices.map((g) => g.power_limit_w))),
              ],
            ],
          )
        : tile("gpu", "GPUs", "none", null, null, [["", "this server reports no GPU"]]),
    );
  }
  function avg(values) {
    const v = values.filter((x) => x != null);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  }
  function sum(values) {
    const v = values.filter((x) => x != null);
    return v.length ? v.reduce((a, b) => a + b, 0) : null;
  }

  function renderGpus(snap) {
    const box = $("gpus");
    if (!snap || !snap.gpu.present) return box.replaceChildren();
    const head = ["GPU", "Utilization", "Memory", "Temp", "Power", "PCIe in / out", "Processes", "Throttled by"];
    const body = snap.gpu.devices.map((g) =>
      h(
        "tr",
        { "data-gpu": g.gpu_index },
        h(
          "td",
          {},
          h("strong", {}, "GPU " + g.gpu_index),
          xidBadge(g.xid_errors),
          h("div", { class: "muted" }, g.name || ""),
          ...gpuNotes(g).map((note) => h("div", { class: "muted" }, note)),
        ),
        h(
          "td",
          {},
          h(
            "div",
            { class: "bar" },
            meter(g.utilization_gpu_percent),
            h("span", {}, fmt.pct(g.utilization_gpu_percent, 0)),
          ),
        ),
        h(
          "td",
          {},
          h(
            "div",
            { class: "bar" },
            meter(g.memory_percent, usageColor(g.memory_percent)),
            h("span", {}, fmt.pct(g.memory_percent, 0)),
          ),
          g.memory_total_bytes
            ? h("div", { class: "muted" }, fmt.bytes(g.memory_used_bytes) + " of " + fmt.bytes(g.memory_total_bytes))
            : null,
        ),
        h("td", {}, fmt.celsius(g.temperature_c)),
        h(
          "td",
          {},
          fmt.watts(g.power_w) + (g.power_limit_w ? " / " + fmt.watts(g.power_limit_w) : ""),
          g.power_limit_w && g.power_w != null
            ? meter((100 * g.power_w) / g.power_limit_w, g.power_w >= 0.97 * g.power_limit_w ? "var(--bad)" : null)
            : null,
          g.energy_w != null
            ? h(
                "div",
                { class: "muted avg-power" },
                TW.metric("gpu", "energy_w").title + " " + fmt.watts(g.energy_w),
              )
            : null,
        ),
        h(
          "td",
          { class: "pcie" },
          g.pcie_rx_bytes_per_s == null && g.pcie_tx_bytes_per_s == null
            ? fmt.DASH
            : fmt.rate(g.pcie_rx_bytes_per_s) + " / " + fmt.rate(g.pcie_tx_bytes_per_s),
        ),
        h("td", { class: "procs" }, ...processes(g.processes)),
        h(
          "td",
          {},
          h(
            "div",
            { class: "throttle" },
            ...(g.throttle_reasons || [])
              .filter((r) => r !== "gpu_idle")
              .map((r) => h("span", { class: "chip" }, r.replace(/_/g, " "))),
            (g.throttle_reasons || []).filter((r) => r !== "gpu_idle").length
              ? null
              : h("span", { class: "muted" }, (g.throttle_reasons || []).includes("gpu_idle") ? "idle" : "nothing"),
          ),
        ),
      ),
    );
    box.replaceChildren(
      h(
        "section",
        { class: "panel" },
        h("h2", {}, "GPUs"),
        h(
          "table",
          { class: "gpus" },
          h("thead", {}, h("tr", {}, ...head.map((c) => h("th", {}, c)))),
          h("tbody", {}, ...body),
        ),
      ),
    );
  }
  /* A red chip on a GPU with recent XID errors (newest first): "XID 79", "XID 79 ×3" when the same
     one repeats, "5 XIDs" when they differ; its title lists them with their times and meanings. */
  function xidBadge(events) {
    if (!events || !events.length) return null;
    const xids = [...new Set(events.map((e) => e.xid))];
    const text =
      xids.length === 1 ? "XID " + xids[0] + (events.length > 1 ? " ×" + events.length : "") : events.length + " XIDs";
    return h(
      "span",
      {
        class: "chip xid",
        "data-xids": xids.join(" "),
        "data-count": events.length,
        title: "Recent XID errors, newest first:\n" + events.map((e) => fmt.xid(e, true)).join("\n"),
      },
      text,
    );
  }

  // MIG and the video engines, only where they say something.
  function gpuNotes(g) {
    const notes = [];
    if (g.mig_mode) notes.push("MIG: " + g.mig_instances + " instance" + (g.mig_instances === 1 ? "" : "s"));
    if (g.encoder_util_percent) notes.push("video encoder " + fmt.pct(g.encoder_util_percent, 0));
    if (g.decoder_util_percent) notes.push("video decoder " + fmt.pct(g.decoder_util_percent, 0));
    return notes;
  }
  function processes(list) {
    if (!list || !list.length) return [h("span", {}, "none")];
    return list.map((p) =>
      h(
        "div",
        { class: "proc" },
        p.pid +
          " " +
          (p.name || "?") +
          (p.user ? " (" + p.user + ")" : "") +
          (p.used_memory_bytes != null ? " · " + fmt.bytes(p.used_memory_bytes) : ""),
        workload(p.workload),
      ),
    );
  }
  /* Whose job a process is: the workload's kind, its name (else its id, a container's cut to 12
     characters as docker shows it) and its user, as text; the title has the full id. */
  const WORKLOAD_KINDS = { slurm: "Slurm job", kubernetes: "pod", container: "container", process: "process group" };
  function workload(w) {
    if (!w || !w.kind) return null;
    const id = String(w.id == null ? "" : w.id);
    const short = w.kind === "container" || w.kind === "kubernetes" ? id.slice(0, 12) : id;
    const shown = w.kind === "process" ? id : w.name || short;
    const prefix = WORKLOAD_KINDS[w.kind] || w.kind;
    return h(
      "div",
      {
        class: "muted workload",
        "data-kind": w.kind,
        title: prefix + " " + id + (w.name ? " (" + w.name + ")" : "") + (w.user ? ", user " + w.user : ""),
      },
      prefix + (w.kind === "slurm" && w.name ? " " + id + " " : " ") + shown + (w.user ? " · " + w.user : ""),
    );
  }

  TW.panels = { render, tick, hide };
})();
