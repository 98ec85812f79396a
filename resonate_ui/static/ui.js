// resonate ui: live updates for a workflow page, in plain JavaScript (no build step, no framework).
//
// The page subscribes to the daemon's own change stream for this call graph (server-sent events from
// the engine's watch: /ui/workflow/events, the same stream as GET /v1/promises/{id}/watch). An event
// carries no data: it says "this graph changed", and the page fetches its live part again
// (/ui/workflow/part), so what it shows is always what the store holds. Nothing polls: no event, no request.
// The stream closes once the workflow is no longer pending (a retry reloads the page, which reopens it).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var id = live.getAttribute("data-id");
  var query = "?id=" + encodeURIComponent(id);
  var source = null;
  var busy = false;
  var again = false;

  function stateOf(html) {
    var m = /data-root-state="([A-Z_]+)"/.exec(html);
    return m ? m[1] : null;
  }

  function pending() {
    return live.getAttribute("data-state") === "PENDING";
  }

  function refresh() {
    if (busy) {
      again = true; // one more read after this one: the change may have come after it started
      return;
    }
    busy = true;
    fetch("/ui/workflow/part" + query, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          var open = {};
          live.querySelectorAll("details[open]").forEach(function (d, i) { open[i] = true; });
          live.innerHTML = html;
          live.querySelectorAll("details").forEach(function (d, i) { if (open[i]) { d.open = true; } });
          live.setAttribute("data-state", stateOf(html) || live.getAttribute("data-state"));
        }
      })
      .catch(function () { /* the daemon restarted or the network blinked: the next event retries */ })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        } else if (!pending() && source !== null) {
          source.close();
          source = null;
        }
      });
  }

  if (pending()) {
    source = new EventSource("/ui/workflow/events" + query);
    source.onmessage = refresh;
    // EventSource reconnects by itself after an error; read once on (re)connect, in case we missed a change.
    source.onopen = refresh;
  }
})();
