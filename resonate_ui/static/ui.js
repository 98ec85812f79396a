// resonate ui: live parts of a page, in plain JavaScript (no build step, no framework).
//
// An element with data-events and data-part is live: it holds an EventSource on data-events, the daemon's
// own change stream (server-sent events from the engine's watch: one call graph for a workflow's page,
// every workflow for the list), and on each event fetches data-part again, which is the same part with
// the page's own filters and page, and puts it in place. An event carries no data: it says "this changed",
// so what the page shows is always what the store holds. Nothing polls: no event, no request. The daemon
// coalesces bursts (the list hears at most one event a second), and here a read never starts while
// another is in flight (one more follows it if something changed meanwhile).
//
// A workflow's page (data-state) closes its stream once the workflow is no longer pending (a retry
// reloads the page, which opens it again). A stream that says "ended" (logout, session expired) or a part
// answered 401 reloads the page, which then says why.
(function () {
  "use strict";
  if (!window.EventSource) {
    return;
  }

  function stateOf(html) {
    var m = /data-root-state="([A-Z_]+)"/.exec(html);
    return m ? m[1] : null;
  }

  function live(box) {
    var source = null;
    var busy = false;
    var again = false;
    var finite = box.hasAttribute("data-state"); // a workflow: live only while it is pending

    function done() {
      return finite && box.getAttribute("data-state") !== "PENDING";
    }

    function refresh() {
      if (busy) {
        again = true; // one more read after this one: the change may have come after it started
        return;
      }
      busy = true;
      fetch(box.getAttribute("data-part"), { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) {
            window.location.reload(); // the session ended: the page says so
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            var open = {};
            box.querySelectorAll("details[open]").forEach(function (d, i) { open[i] = true; });
            box.innerHTML = html;
            box.querySelectorAll("details").forEach(function (d, i) { if (open[i]) { d.open = true; } });
            if (finite) {
              box.setAttribute("data-state", stateOf(html) || box.getAttribute("data-state"));
            }
          }
        })
        .catch(function () { /* the daemon restarted or the network blinked: the next event retries */ })
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          } else if (done() && source !== null) {
            source.close();
            source = null;
          }
        });
    }

    if (done()) {
      return;
    }
    source = new EventSource(box.getAttribute("data-events"));
    source.onmessage = function (event) {
      var data = {};
      try { data = JSON.parse(event.data); } catch (e) { /* a change, then */ }
      if (data.type === "ended") {
        source.close();
        window.location.reload();
        return;
      }
      refresh();
    };
    // EventSource reconnects by itself after an error; read once on (re)connect, in case we missed a change.
    source.onopen = refresh;
  }

  document.querySelectorAll("[data-events][data-part]").forEach(live);
})();
