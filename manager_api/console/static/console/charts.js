// corral console: usage charts drawn with the vendored uPlot from JSON in the data-charts attribute of
// #usage-data (an attribute, not a <script> block: htmx drops script elements it swaps in, and the CSP runs
// none). The JSON: {"times": [epoch s...], "<chart>": [{"label", "values": [...]}, ...]};
// each <div data-chart="<chart>"> gets one line per series. A live page swaps a new block in: drawn again.
(function () {
  "use strict";
  var COLOURS = ["#1f5fbf", "#b3261e", "#1b7a3d", "#a15c00", "#6a3fb5", "#00838f", "#5b6472"];
  var plots = [];

  function width(el) { return Math.max(280, el.clientWidth || 600); }

  function draw(el, times, series) {
    var unit = el.getAttribute("data-unit") || "";
    var opts = {
      width: width(el),
      height: 220,
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (v) { return v + " " + unit; }); }, size: 70 }],
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true };
      }))
    };
    var data = [times].concat(series.map(function (s) { return s.values; }));
    el.textContent = "";
    plots.push({ el: el, plot: new uPlot(opts, data, el) });
  }

  function init() {
    var block = document.getElementById("usage-data");
    if (!block || typeof uPlot === "undefined") return;
    var charts = JSON.parse(block.getAttribute("data-charts"));
    plots.forEach(function (p) { p.plot.destroy(); });
    plots = [];
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

  window.addEventListener("resize", function () {
    plots.forEach(function (p) { p.plot.setSize({ width: width(p.el), height: 220 }); });
  });
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.target.querySelector && event.target.querySelector("#usage-data")) init();
  });
})();
