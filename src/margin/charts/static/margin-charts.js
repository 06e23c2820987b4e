/* margin's chart renderer: draws each canvas that names its spec in a data-chart-spec attribute
 * (the id of a JSON script block built by margin.charts.spec) as a Chart.js chart. Needs Chart.js 4
 * and chartjs-plugin-annotation 3 loaded first (margin/charts/vendor). Every chart drawn is kept in
 * window.marginCharts by canvas id (tests read them there). */
(function () {
  "use strict";
  var compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumSignificantDigits: 3 });
  var plain = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

  function number(v) {
    return Math.abs(v) >= 1000 ? compact.format(v) : plain.format(v);
  }

  function format(kind, v) {
    if (kind === "usd") {
      return (v < 0 ? "-$" : "$") + number(Math.abs(v));
    }
    if (kind === "percent") {
      return Math.round(v * 1000) / 10 + "%";
    }
    return number(v);
  }

  // Which log-axis gridlines get a label: 1, 2 and 5 times each power of ten, only the powers
  // themselves past `decades` (the other gridlines stay unlabelled).
  function niceLog(v, span, decades) {
    if (v <= 0) {
      return false;
    }
    var m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    var steps = span > Math.pow(10, decades) ? [1] : [1, 2, 5];
    return steps.some(function (n) { return Math.abs(m - n) < 1e-6; });
  }

  function scale(axis, labels, vertical) {
    var type = { log: "logarithmic", category: "category", linear: "linear" }[axis.scale];
    var out = { type: type, title: { display: !!axis.label, text: axis.label }, ticks: {} };
    if (axis.min !== undefined) { out.min = axis.min; }
    if (axis.max !== undefined) { out.max = axis.max; }
    if (axis.step !== undefined) { out.ticks.stepSize = axis.step; }
    if (type === "category") {
      out.labels = labels;
      out.ticks.autoSkip = false;
      return out;
    }
    out.ticks.callback = function (value, index, ticks) {
      // A log axis spanning under 4x labels every gridline; a wider one only 1, 2 and 5 x 10^n.
      var span = ticks.length > 1 ? ticks[ticks.length - 1].value / ticks[0].value : 1;
      if (type === "logarithmic" && span > 4 && !niceLog(value, span, vertical ? 4 : 6)) {
        return "";
      }
      return format(axis.format, value);
    };
    if (type === "logarithmic") {
      out.ticks.autoSkip = false;
      out.ticks.maxRotation = 0;
    }
    return out;
  }

  function dataset(series, kind) {
    var d = {
      label: series.name,
      borderColor: series.colour,
      backgroundColor: series.colour,
      borderWidth: kind === "line" ? 2 : 0,
      borderDash: series.dashed ? [6, 4] : [],
      pointRadius: 0,
      pointHoverRadius: 4,
      fill: false,
      tension: 0,
    };
    if (series.points) {
      d.data = series.points.map(function (p) { return { x: p[0], y: p[1] }; });
      d.parsing = false;
    } else {
      d.data = series.values;
    }
    return d;
  }

  function annotation(marker) {
    if (marker.y === undefined) {
      return {
        type: "line",
        scaleID: "x",
        value: marker.x,
        borderColor: marker.colour,
        borderWidth: 2,
        borderDash: marker.kind === "today" ? [] : [4, 4],
        label: {
          display: true,
          content: marker.label,
          position: "start",
          backgroundColor: "rgba(255,255,255,0.85)",
          color: "#1d2433",
          font: { size: 11 },
        },
      };
    }
    return {
      type: "point",
      xValue: marker.x,
      yValue: marker.y,
      radius: 5,
      borderWidth: 2,
      borderColor: marker.colour,
      backgroundColor: "rgba(255,255,255,0.6)",
    };
  }

  // Where x sits along the axis, 0 to 1 (0.5 when the axis has no pinned range).
  function fraction(axis, x) {
    if (axis.min === undefined || axis.max === undefined || axis.max <= axis.min) {
      return 0.5;
    }
    if (axis.scale === "log") {
      return (Math.log(x) - Math.log(axis.min)) / (Math.log(axis.max) - Math.log(axis.min));
    }
    return (x - axis.min) / (axis.max - axis.min);
  }

  // A marker that belongs to a series is shown only while that series is.
  function shownWith(names, series) {
    var index = names.indexOf(series);
    return function (ctx) {
      return index < 0 || ctx.chart.isDatasetVisible(index);
    };
  }

  function annotations(markers, xAxis, names) {
    var out = {};
    markers.forEach(function (m) {
      out[m.id] = annotation(m);
      if (m.series !== undefined) {
        out[m.id].display = shownWith(names, m.series);
      }
      if (m.y !== undefined && m.label) {
        // The label grows away from the nearer edge, so it is never cut off by the chart's border.
        var right = fraction(xAxis, m.x) > 0.5;
        out[m.id + ":label"] = {
          type: "label",
          xValue: m.x,
          yValue: m.y,
          content: m.label.split("\n"),
          position: { x: right ? "end" : "start", y: "end" },
          xAdjust: right ? -8 : 8,
          yAdjust: -8,
          textAlign: right ? "right" : "left",
          display: m.series === undefined ? true : shownWith(names, m.series),
          backgroundColor: "rgba(255,255,255,0.85)",
          color: m.colour,
          font: { size: 11 },
        };
      }
    });
    return out;
  }

  function config(spec) {
    var line = spec.kind === "line";
    var scales = { x: scale(spec.x, spec.categories, false), y: scale(spec.y, spec.categories, true) };
    if (spec.stacked) {
      scales.x.stacked = true;
      scales.y.stacked = true;
    }
    return {
      type: spec.kind,
      data: {
        labels: spec.categories.length ? spec.categories : undefined,
        datasets: spec.series.map(function (s) { return dataset(s, spec.kind); }),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: spec.horizontal ? "y" : "x",
        interaction: { mode: line ? "nearest" : "index", intersect: false },
        scales: scales,
        plugins: {
          title: { display: true, text: spec.title, font: { size: 14 } },
          legend: { display: spec.legend, position: "bottom", labels: { boxHeight: 3, usePointStyle: false } },
          tooltip: {
            callbacks: {
              label: function (item) {
                var axis = spec.horizontal ? spec.x : spec.y;
                var v = spec.horizontal ? item.parsed.x : item.parsed.y;
                return item.dataset.label + ": " + format(axis.format, v);
              },
            },
          },
          annotation: {
            annotations: annotations(spec.markers, spec.x, spec.series.map(function (s) { return s.name; })),
          },
        },
      },
    };
  }

  function drawAll() {
    window.marginCharts = window.marginCharts || {};
    document.querySelectorAll("canvas[data-chart-spec]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chartSpec);
      if (!source || window.marginCharts[canvas.id]) {
        return;
      }
      window.marginCharts[canvas.id] = new window.Chart(canvas, config(JSON.parse(source.textContent)));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
