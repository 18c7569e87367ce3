// uPlot charts of one rollout: the traffic split, then each analysis metric against its thresholds.
// A chart is created once per (rollout, metric) and then only given new data (setData), so live
// updates do not flicker or leak.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { metricChartData, trafficChartData } from './model.js';

const COLORS = {
  line: '#2563eb',
  pass: '#16a34a',
  fail: '#dc2626',
  max: '#dc2626',
  min: '#d97706',
  failFast: '#7c3aed',
  asked: '#64748b',
};

function axes(unit) {
  return [
    { stroke: '#475569', grid: { stroke: '#e2e8f0' } },
    { stroke: '#475569', grid: { stroke: '#e2e8f0' }, size: 60, values: (u, ticks) => ticks.map((v) => `${+v.toPrecision(3)}${unit}`) },
  ];
}

// Every chart of a rollout spans the same time range (the series' span), so they line up.
function xRange(view, min, max) {
  if (view.span) return [view.span.min, view.span.max];
  return min == null || min === max ? [(min || 0) - 1, (max || 0) + 1] : [min, max];
}

function width(container) {
  return Math.max(320, Math.floor(container.clientWidth || 480));
}

const points = (stroke) => ({ show: true, size: 9, stroke, fill: stroke, width: 1 });

/** A chart of one metric; returns {update(points, analyses)}. */
export function metricChart(container, metric, version) {
  const view = { span: null };
  const unit = metric.builtin === 'latency' ? ' ms' : metric.builtin === 'errorRate' ? '%' : '';
  const { data, bounds } = metricChartData(metric, [], []);
  const series = [
    {},
    { label: `v${version} (Prometheus)`, stroke: COLORS.line, width: 2, spanGaps: true, points: { show: false } },
    { label: 'analysis passed', stroke: COLORS.pass, paths: () => null, points: points(COLORS.pass) },
    { label: 'analysis failed', stroke: COLORS.fail, paths: () => null, points: points(COLORS.fail) },
    ...bounds.map((b) => ({ label: b.label, stroke: COLORS[b.kind], width: 1.5, dash: b.kind === 'failFast' ? [2, 4] : [8, 6], points: { show: false } })),
  ];
  const plot = new uPlot(
    {
      width: width(container),
      height: 190,
      series,
      axes: axes(unit),
      scales: { x: { time: true, range: (u, min, max) => xRange(view, min, max) } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    container,
  );
  return {
    update(prometheusPoints, analyses, span) {
      view.span = span;
      plot.setData(metricChartData(metric, prometheusPoints, analyses, span).data);
    },
    resize() {
      plot.setSize({ width: width(container), height: 190 });
    },
    destroy() {
      plot.destroy();
    },
  };
}

/** The traffic split: the weight the operator asked for and the share the new version really served. */
export function trafficChart(container, version) {
  const view = { span: null };
  const plot = new uPlot(
    {
      width: width(container),
      height: 190,
      series: [
        {},
        { label: 'weight asked (status.canaryWeight)', stroke: COLORS.asked, width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } },
        { label: `requests served by v${version} (Prometheus)`, stroke: COLORS.line, width: 2, spanGaps: true, points: { show: false } },
      ],
      axes: axes('%'),
      scales: { x: { time: true, range: (u, min, max) => xRange(view, min, max) }, y: { range: [0, 100] } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    [[], [], []],
    container,
  );
  return {
    update(weights, servedPoints, now, span) {
      view.span = span;
      plot.setData(trafficChartData(weights, servedPoints, now));
    },
    resize() {
      plot.setSize({ width: width(container), height: 190 });
    },
    destroy() {
      plot.destroy();
    },
  };
}
