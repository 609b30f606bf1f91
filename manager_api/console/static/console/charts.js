// corral console: usage charts drawn with the vendored uPlot from a JSON data block (no inline script: the
// block is data, not run). The block: {"times": [epoch s...], "<chart>": [{"label", "values": [...]}, ...]};
// each <div data-chart="<chart>"> gets one line per series.
(function () {
  "use strict";
  var COLOURS = ["#1f5fbf", "#b3261e", "#1b7a3d", "#a15c00", "#6a3fb5", "#00838f", "#5b6472"];

  function draw(el, times, series) {
    var unit = el.getAttribute("data-unit") || "";
    var opts = {
      width: Math.max(280, el.clientWidth || 600),
      height: 220,
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (v) { return v + " " + unit; }); }, size: 70 }],
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true };
      }))
    };
    var data = [times].concat(series.map(function (s) { return s.values; }));
    el.textContent = "";
    var plot = new uPlot(opts, data, el);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(280, el.clientWidth || 600), height: 220 });
    });
  }

  function init() {
    var block = document.getElementById("usage-data");
    if (!block || typeof uPlot === "undefined") return;
    var charts = JSON.parse(block.textContent);
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var series = charts[el.getAttribute("data-chart")] || [];
      draw(el, charts.times, series);
      if (!charts.times.length) {
        var note = document.createElement("p");
        note.className = "count";
        note.textContent = "no usage sample yet";
        el.appendChild(note);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
