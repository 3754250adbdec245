// Keeps the overview live: every second it reads /api/overview and writes
// the numbers into the table and the charts. It only ever sets text and
// numbers (textContent, path data), so nothing a producer wrote can run.
"use strict";
(function () {
  var table = document.getElementById("queues");
  if (!table) return;
  var STATS = ["waiting", "running", "delayed", "dead", "done", "failed"];
  var HEIGHT = 120;

  function setText(element, value) {
    var text = String(value);
    if (element && element.textContent !== text) element.textContent = text;
  }

  function rows() {
    return Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-queue]"));
  }

  function bars(values) {
    var most = Math.max.apply(null, values.concat([0]));
    var path = "";
    values.forEach(function (value, i) {
      if (value <= 0) return;
      var height = Math.max(1, Math.floor((value * (HEIGHT - 4)) / Math.max(1, most)));
      path += "M" + (i * 10 + 1) + " " + (HEIGHT - height) + "h8v" + height + "h-8z";
    });
    return { path: path, most: most };
  }

  function drawChart(id, values) {
    var svg = document.getElementById(id);
    if (!svg || !Array.isArray(values)) return;
    var drawn = bars(values);
    svg.querySelector("path").setAttribute("d", drawn.path);
    var most = svg.parentNode.querySelector(".max");
    setText(most, drawn.most);
  }

  function ago(ms) {
    var seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return seconds < 60 ? seconds + " s ago" : Math.floor(seconds / 60) + " min ago";
  }

  function show(snapshot) {
    var byName = {};
    snapshot.queues.forEach(function (queue) { byName[queue.queue] = queue; });
    var shown = rows();
    var names = shown.map(function (row) { return row.dataset.queue; });
    var changed = names.length !== snapshot.queues.length;
    shown.forEach(function (row) {
      var queue = byName[row.dataset.queue];
      if (!queue) { changed = true; return; }
      STATS.forEach(function (stat) {
        setText(row.querySelector('[data-stat="' + stat + '"]'), queue[stat]);
      });
      setText(row.querySelector('[data-stat="paused"]'), queue.paused ? "paused" : "");
      if (String(queue.paused) !== row.dataset.paused) changed = true;
    });
    // A queue came or went, or a pause changed its button: draw the page anew.
    if (changed && snapshot.taken_ms > 0) { window.location.reload(); return; }
    drawChart("chart-throughput", snapshot.throughput);
    drawChart("chart-failures", snapshot.failures);
    setText(document.getElementById("hosts-count"), snapshot.hosts.length);
    var updated = document.getElementById("updated");
    if (updated) { updated.dataset.ms = snapshot.taken_ms; setText(updated, ago(snapshot.taken_ms)); }
    var status = document.getElementById("status");
    if (status) {
      status.hidden = !snapshot.error;
      setText(status, snapshot.error || "");
    }
  }

  function stale(message) {
    var status = document.getElementById("status");
    if (!status) return;
    status.hidden = false;
    setText(status, message);
  }

  function refresh() {
    fetch("/api/overview", { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("the dashboard answered " + response.status);
        return response.json();
      })
      .then(show)
      .catch(function (error) { stale("Cannot reach the dashboard: " + error.message); });
  }

  setInterval(refresh, 1000);
})();
