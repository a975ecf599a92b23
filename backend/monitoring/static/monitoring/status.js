/* TrainWatch dashboard: what the page says about itself. The connection indicator in the header,
   and the empty states in place of a server: no server registered, an unknown server, and a
   server that has not reported yet. */
(function () {
  "use strict";
  const TW = window.TW;
  const { fmt, h } = TW;
  const $ = (id) => document.getElementById(id);

  function showConnection(ok, message) {
    const el = $("conn");
    el.className = "conn " + (ok ? "ok" : "error");
    el.querySelector(".text").textContent = message || "";
  }
  // seconds: since the last answer.
  function showUpdated(seconds) {
    $("conn").querySelector(".text").textContent = seconds < 1.5 ? "Updated just now" : "Updated " + fmt.ago(seconds);
  }

  function showEmpty(content) {
    const box = $("empty");
    box.classList.remove("hidden");
    box.replaceChildren(content);
  }
  function hideEmpty() {
    $("empty").classList.add("hidden");
    $("empty").replaceChildren();
  }

  function showNoServers() {
    showEmpty(
      h(
        "div",
        { class: "empty", id: "no-servers" },
        h("h2", {}, "No servers yet"),
        h("p", {}, "Register a training node, then start the agent on it with the token this prints:"),
        h("p", {}, h("code", {}, 'python3 manage.py register_server gpu-box-01 --name "GPU Box 01"')),
        h("p", {}, "This page updates by itself once the node is registered."),
      ),
    );
  }

  // slug: the server the URL names, or null.
  function showUnknownServer(slug) {
    showEmpty(
      h(
        "div",
        { class: "empty", id: "unknown-server" },
        h("h2", {}, slug ? "No active server “" + slug + "”" : "Pick a server"),
        h("p", {}, "It may have been renamed or disabled. Pick one of the fleet on the left."),
      ),
    );
  }

  function showWaiting(server) {
    showEmpty(
      h(
        "div",
        { class: "empty", id: "waiting" },
        h("h2", {}, "Waiting for the first sample from " + (server.name || server.slug)),
        h("p", {}, "Start the agent on that node with its ingest token:"),
        h(
          "p",
          {},
          h("code", {}, "trainwatch-agent --url " + location.origin + " --server " + server.slug + " --token …"),
        ),
        h("p", {}, "Charts appear here as soon as it reports."),
      ),
    );
  }

  TW.status = { showConnection, showUpdated, showNoServers, showUnknownServer, showWaiting, hideEmpty };
})();
