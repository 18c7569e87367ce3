// The page's state and every pure computation on it (no DOM): applying the server's SSE messages,
// aligning a metric's Prometheus series with its analyses and thresholds for a chart, formatting.
// test/model.test.js covers these.

/** A fresh page state. */
export function initialState() {
  return {
    items: new Map(), // key "ns/name" -> summary (mddashboard/board.py summarize())
    series: new Map(), // key -> the last series message of its rollout (mddashboard/series.py)
    config: { allowActions: false, actions: [], identity: { mode: 'local' }, prometheus: false },
    connected: false,
    errors: [],
    selected: null,
  };
}

/** Applies one SSE message (event name + parsed data) to the state, in place; returns what changed. */
export function applyMessage(state, event, data) {
  switch (event) {
    case 'snapshot':
      state.items = new Map(data.items.map((item) => [item.key, item]));
      for (const key of [...state.series.keys()]) if (!state.items.has(key)) state.series.delete(key);
      if (data.config) state.config = data.config;
      if (data.state) applyConnection(state, data.state);
      return { list: true, detail: true };
    case 'upsert': {
      const before = state.items.get(data.key);
      state.items.set(data.key, data);
      const newRollout = rolloutId(before) !== rolloutId(data);
      if (newRollout) state.series.delete(data.key);
      return { list: true, detail: data.key === state.selected, newRollout };
    }
    case 'delete':
      state.items.delete(data.key);
      state.series.delete(data.key);
      if (state.selected === data.key) state.selected = null;
      return { list: true, detail: true };
    case 'series': {
      const item = state.items.get(data.key);
      if (item && item.rollout && item.rollout.version !== data.version) return {};
      state.series.set(data.key, data);
      return { charts: data.key === state.selected };
    }
    case 'state':
      applyConnection(state, data);
      return { connection: true };
    default:
      return {};
  }
}

function applyConnection(state, s) {
  state.connected = Boolean(s.connected);
  state.errors = s.errors || [];
}

function rolloutId(item) {
  if (!item || !item.rollout) return null;
  return `${item.rollout.version}@${item.rollout.startedAt || item.rollout.seenAt}`;
}

/** Which ModelDeployment the detail shows: the chosen one, else one with a live rollout, else the first. */
export function pickSelected(state) {
  if (state.selected && state.items.has(state.selected)) return state.selected;
  const items = sortedItems(state);
  const live = items.find((i) => i.canaryVersion != null);
  return (live || items[0] || {}).key || null;
}

export function sortedItems(state) {
  return [...state.items.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** RFC 3339 -> unix seconds (null when absent or unreadable). */
export function toUnix(text) {
  if (!text) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms / 1000;
}

/**
 * uPlot data for one metric's chart: x = the union of the Prometheus points' and the analyses'
 * times; y series = [Prometheus value, analysis passed, analysis failed or no data, then one line per
 * threshold]. Thresholds are constant lines; analyses are points at the time the operator judged.
 */
export function metricChartData(metric, points, analyses, span) {
  const bounds = thresholdLines(metric);
  const judged = [];
  for (const a of analyses || []) {
    const t = toUnix(a.time);
    const m = (a.metrics || []).find((x) => x.name === metric.name);
    if (t == null || !m) continue;
    judged.push({ t, value: m.value, passed: Boolean(m.passed), kind: a.kind || 'interval' });
  }
  const edges = span ? [span.min, span.max] : []; // so the threshold lines cross the whole chart
  const xs = [...new Set([...edges, ...(points || []).map((p) => p[0]), ...judged.map((j) => j.t)])].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const line = new Array(xs.length).fill(null);
  for (const [t, v] of points || []) line[index.get(t)] = v;
  const pass = new Array(xs.length).fill(null);
  const fail = new Array(xs.length).fill(null);
  for (const j of judged) {
    if (j.value == null) continue; // no data: listed in the verdicts table, nothing to plot
    (j.passed ? pass : fail)[index.get(j.t)] = j.value;
  }
  const data = [xs, line, pass, fail, ...bounds.map((b) => xs.map(() => b.value))];
  return { data, bounds, judged };
}

/** The metric's thresholds as labelled lines: max / min, and the fail-fast bounds when set. */
export function thresholdLines(metric) {
  const out = [];
  if (metric.max != null) out.push({ label: `max ${fmt(metric.max)}`, value: metric.max, kind: 'max' });
  if (metric.min != null) out.push({ label: `min ${fmt(metric.min)}`, value: metric.min, kind: 'min' });
  const ff = metric.failFast || {};
  if (ff.max != null) out.push({ label: `fail-fast max ${fmt(ff.max)}`, value: ff.max, kind: 'failFast' });
  if (ff.min != null) out.push({ label: `fail-fast min ${fmt(ff.min)}`, value: ff.min, kind: 'failFast' });
  return out;
}

/**
 * uPlot data for the traffic chart: the weight the status asked for (a step line from the
 * dashboard's memory of status.canaryWeight) and the share Prometheus saw the new version serve.
 */
export function trafficChartData(weights, points, now) {
  const asked = (weights || []).slice();
  if (asked.length && now != null && now > asked[asked.length - 1][0]) asked.push([now, asked[asked.length - 1][1]]);
  const xs = [...new Set([...asked.map((w) => w[0]), ...(points || []).map((p) => p[0])])].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const weight = new Array(xs.length).fill(null);
  for (const [t, w] of asked) weight[index.get(t)] = w;
  // carry the asked weight forward so the step line is continuous
  let last = null;
  for (let i = 0; i < xs.length; i += 1) {
    if (weight[i] == null) weight[i] = last;
    else last = weight[i];
  }
  const served = new Array(xs.length).fill(null);
  for (const [t, v] of points || []) served[index.get(t)] = v;
  return [xs, weight, served];
}

/** A number for people: 4 significant digits, no trailing zeros; "no data" for null. */
export function fmt(value) {
  if (value == null || Number.isNaN(value)) return 'no data';
  if (typeof value !== 'number') return String(value);
  if (value !== 0 && Math.abs(value) < 0.001) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

export function verdictOf(metricResult) {
  if (!metricResult) return 'none';
  if (metricResult.passed) return 'pass';
  return metricResult.value == null ? 'nodata' : 'fail';
}

/** "step 2/3 (50%)" for a canary, "iteration 1/3" for the others. */
export function stepText(item) {
  if (item.canaryVersion == null) return '';
  const total = (item.steps || []).length || 1;
  if (item.strategy === 'Canary') return `step ${Math.min(item.step + 1, total)}/${total}`;
  return `iteration ${Math.min(item.step + 1, total)}/${total}`;
}

/** Which manual actions make sense now (the operator ignores the others with an Event). */
export function availableActions(item, allowed) {
  const live = item.canaryVersion != null;
  const wanted = [];
  if (live) wanted.push('promote', 'promote-full', 'abort');
  if (live || item.targetVersion !== item.stableVersion) wanted.push(item.paused ? 'resume' : 'pause');
  if (item.phase === 'RolledBack' || item.phase === 'Failed') wanted.push('retry');
  return wanted.filter((a) => (allowed || []).includes(a));
}

export const PHASE_CLASS = {
  Stable: 'ok',
  Promoting: 'ok',
  Progressing: 'busy',
  Initializing: 'busy',
  Paused: 'warn',
  RolledBack: 'bad',
  Failed: 'bad',
  Invalid: 'bad',
};
