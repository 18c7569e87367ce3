// The dashboard page: one EventSource on api/stream (the server pushes every change; the browser
// never polls), a list of every ModelDeployment and the detail of the selected one: its rollout,
// the traffic and metric charts, the analysis verdicts and the audit trail; action buttons when the
// server allows them. Everything is built with the DOM API (textContent: nothing is parsed as HTML).
import './style.css';
import { metricChart, trafficChart } from './charts.js';
import {
  PHASE_CLASS,
  applyMessage,
  availableActions,
  fmt,
  initialState,
  pickSelected,
  sortedItems,
  stepText,
  verdictOf,
} from './model.js';

const state = initialState();
state.actionResult = {}; // key -> what the server answered to the last button press
const charts = { id: null, traffic: null, metrics: new Map() };
const ACTION_LABEL = { promote: 'Promote step', 'promote-full': 'Promote fully', abort: 'Abort', pause: 'Pause', resume: 'Resume', retry: 'Retry' };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const time = (unixOrText) => {
  const d = typeof unixOrText === 'number' ? new Date(unixOrText * 1000) : new Date(unixOrText);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false });
};

function phaseBadge(phase) {
  return el('span', { class: `phase ${PHASE_CLASS[phase] || ''}`, 'data-testid': 'phase' }, phase);
}

function weightBar(item) {
  const w = item.canaryVersion != null ? item.canaryWeight : 0;
  return el(
    'div',
    { class: 'weightbar', title: `${100 - w}% stable / ${w}% canary` },
    el('div', { class: 'stable', style: null }),
    el('span', { class: 'weight', 'data-testid': 'weight' }, item.canaryVersion != null ? `${w}%` : '—'),
  );
}

// ---- the list ------------------------------------------------------------------------------------
function renderList() {
  const root = document.getElementById('list');
  const rows = sortedItems(state).map((item) => {
    const bar = weightBar(item);
    bar.firstChild.style.width = `${100 - (item.canaryVersion != null ? item.canaryWeight : 0)}%`;
    return el(
      'tr',
      {
        class: item.key === state.selected ? 'selected' : '',
        'data-testid': `md-row-${item.namespace}-${item.name}`,
        onclick: () => select(item.key),
      },
      el('td', {}, el('span', { class: 'ns' }, `${item.namespace}/`), item.name),
      el('td', {}, phaseBadge(item.phase)),
      el('td', {}, `v${item.stableVersion ?? '?'}`),
      el('td', {}, item.canaryVersion != null ? `v${item.canaryVersion}` : '—'),
      el('td', {}, bar),
      el('td', {}, stepText(item)),
      el('td', { class: 'message' }, item.message),
    );
  });
  root.replaceChildren(
    el(
      'table',
      { class: 'mds' },
      el('thead', {}, el('tr', {}, ['ModelDeployment', 'Phase', 'Stable', 'Canary', 'Traffic to canary', 'Step', 'Message'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows.length ? rows : [el('tr', {}, el('td', { colspan: 7, class: 'empty' }, 'No ModelDeployments (yet).'))]),
    ),
  );
}

function select(key) {
  state.selected = key;
  history.replaceState(null, '', `#${key}`);
  renderList();
  renderDetail();
}

// ---- the detail ----------------------------------------------------------------------------------
function renderDetail() {
  const root = document.getElementById('detail');
  state.selected = pickSelected(state);
  const item = state.selected ? state.items.get(state.selected) : null;
  if (!item) {
    destroyCharts();
    root.replaceChildren();
    return;
  }
  const header = el(
    'div',
    { class: 'card head' },
    el('h2', {}, el('span', { class: 'ns' }, `${item.namespace}/`), item.name, ' ', phaseBadge(item.phase)),
    el('p', { class: 'message', 'data-testid': 'message' }, item.message),
    el(
      'dl',
      { class: 'facts' },
      fact('model', item.model),
      fact('stable', `v${item.stableVersion ?? '?'}`, 'stable'),
      fact('canary', item.canaryVersion != null ? `v${item.canaryVersion}` : '—', 'canary'),
      fact('weight', item.canaryVersion != null ? `${item.canaryWeight}%` : '—', 'detail-weight'),
      fact('step', stepText(item) || '—'),
      fact('strategy', item.strategy),
      fact('failed checks', `${item.failedChecks}/${item.failureThreshold ?? '?'}`),
      fact('analysis every', item.interval || '—'),
      fact('paused', item.paused ? 'yes' : 'no'),
    ),
    stepsStrip(item),
    actionsBar(item),
    conditions(item),
  );
  // The charts survive status updates of the same rollout (new data only); everything else is rebuilt.
  const id = chartsId(item);
  let chartsNode = root.querySelector('#charts-card');
  if (!chartsNode || charts.id !== id) {
    destroyCharts();
    chartsNode = chartsSection(item);
    root.replaceChildren(header, chartsNode, verdicts(item), audit(item));
    fillCharts(item, id);
  } else {
    root.replaceChildren(header, chartsNode, verdicts(item), audit(item));
    const caption = chartsNode.querySelector('h3');
    if (caption && item.rollout) caption.replaceWith(chartsCaption(item));
    updateCharts(item);
  }
}

function chartsId(item) {
  const r = item.rollout;
  if (!r) return `${item.key}:none`;
  return `${item.key}:${r.version}@${r.startedAt || r.seenAt}:${item.metrics.map((m) => m.name).join(',')}:${state.config.prometheus}`;
}

function fact(label, value, testid) {
  return el('div', {}, el('dt', {}, label), el('dd', { 'data-testid': testid ? `fact-${testid}` : null }, value));
}

function stepsStrip(item) {
  if (item.strategy !== 'Canary' || !(item.steps || []).length) return null;
  return el(
    'ol',
    { class: 'steps' },
    item.steps.map((w, i) => {
      const done = item.canaryVersion != null && (i < item.step || (i === item.step && item.canaryWeight >= w));
      const current = item.canaryVersion != null && i === item.step;
      return el('li', { class: `${done ? 'done' : ''} ${current ? 'current' : ''}` }, `${w}%`);
    }),
  );
}

function actionsBar(item) {
  const cfg = state.config;
  if (!cfg.allowActions) return el('p', { class: 'readonly' }, 'Read-only dashboard (start it with --allow-actions for promote/abort/pause/resume).');
  const who = cfg.identity.mode === 'header' ? `as the user your proxy names (${cfg.identity.header})` : `as ${cfg.identity.user} (local)`;
  const buttons = availableActions(item, cfg.actions).map((action) =>
    el('button', { class: `action ${action}`, 'data-testid': `action-${action}`, disabled: item.pendingAction ? true : null, onclick: () => act(item, action) }, ACTION_LABEL[action] || action),
  );
  const pending = item.pendingAction ? el('span', { class: 'pending', 'data-testid': 'pending' }, `${item.pendingAction} requested by ${item.pendingActionBy || '?'}; waiting for the operator…`) : null;
  return el('div', { class: 'actions' }, buttons, pending, el('span', { class: 'who' }, `Actions are recorded ${who}.`), el('span', { id: 'action-result', class: 'result', 'data-testid': 'action-result' }, state.actionResult[item.key] || ''));
}

async function act(item, action) {
  if (['abort', 'promote-full'].includes(action) && !window.confirm(`${ACTION_LABEL[action]} the rollout of v${item.canaryVersion} of ${item.key}?`)) return;
  const show = (text) => {
    state.actionResult[item.key] = text; // kept across re-renders of the detail
    const out = document.getElementById('action-result');
    if (out) out.textContent = text;
  };
  try {
    const resp = await fetch(`api/modeldeployments/${encodeURIComponent(item.namespace)}/${encodeURIComponent(item.name)}/actions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action }),
    });
    const body = await resp.json();
    show(resp.ok ? `${body.requested} requested by ${body.by}` : `refused: ${body.error}`);
  } catch (err) {
    show(`failed: ${err}`);
  }
}

function conditions(item) {
  if (!(item.conditions || []).length) return null;
  return el(
    'ul',
    { class: 'conditions' },
    item.conditions.map((c) => el('li', { class: c.status === 'True' ? 'true' : 'false', title: c.message }, `${c.type}=${c.status}`, el('small', {}, ` ${c.reason || ''}`))),
  );
}

function chartsCaption(item) {
  const r = item.rollout;
  const ended = r.endedAt ? ` — ended ${time(r.endedAt)}: ${r.outcome || 'done'}` : ' — live';
  return el('h3', { 'data-testid': 'rollout-title' }, `Rollout of v${r.version} over v${r.stable ?? '?'}`, el('small', {}, ended));
}

function chartsSection(item) {
  const r = item.rollout;
  if (!r) return el('div', { class: 'card', id: 'charts-card' }, el('h3', {}, 'Rollout'), el('p', { class: 'empty' }, 'No rollout seen yet: set spec.model.version to a new version to start one.'));
  const note = !state.config.prometheus ? el('p', { class: 'empty' }, 'No Prometheus configured (--prometheus-url): analyses only.') : null;
  const grid = el('div', { class: 'charts' });
  grid.append(el('figure', { class: 'chart', 'data-testid': 'chart-traffic' }, el('figcaption', {}, 'Traffic to the new version (%)'), el('div', { class: 'plot', id: 'plot-traffic' })));
  for (const m of item.metrics) {
    const bound = [m.min != null ? `min ${fmt(m.min)}` : null, m.max != null ? `max ${fmt(m.max)}` : null].filter(Boolean).join(', ');
    grid.append(
      el(
        'figure',
        { class: 'chart', 'data-testid': `chart-${m.name}` },
        el('figcaption', {}, `${m.name}`, el('small', {}, ` ${m.builtin || 'custom query'} · ${bound}`)),
        el('div', { class: 'plot', id: `plot-${m.name}` }),
        el('p', { class: 'series-error', id: `err-${m.name}` }),
      ),
    );
  }
  return el('div', { class: 'card', id: 'charts-card' }, chartsCaption(item), note, grid);
}

function destroyCharts() {
  if (charts.traffic) charts.traffic.destroy();
  for (const c of charts.metrics.values()) c.destroy();
  charts.traffic = null;
  charts.metrics.clear();
  charts.id = null;
}

function fillCharts(item, id) {
  charts.id = id;
  const r = item.rollout;
  if (!r) return;
  const trafficNode = document.getElementById('plot-traffic');
  if (trafficNode) charts.traffic = trafficChart(trafficNode, r.version);
  for (const m of item.metrics) {
    const node = document.getElementById(`plot-${m.name}`);
    if (node) charts.metrics.set(m.name, metricChart(node, m, r.version));
  }
  updateCharts(item);
}

function updateCharts(item) {
  const r = item && item.rollout;
  if (!r || charts.id !== chartsId(item)) return;
  const s = state.series.get(item.key);
  const now = r.endedAt || Date.now() / 1000;
  const served = s && s.traffic ? s.traffic.points : [];
  const span = s && s.start != null ? { min: s.start, max: Math.max(s.end, now) } : null;
  if (charts.traffic) charts.traffic.update(r.weights, served, now, span);
  markPoints('chart-traffic', served);
  for (const m of item.metrics) {
    const series = s ? (s.series || []).find((x) => x.name === m.name) : null;
    const chart = charts.metrics.get(m.name);
    if (chart) chart.update(series ? series.points : [], r.analyses, span);
    const n = markPoints(`chart-${m.name}`, series ? series.points : []);
    const err = document.getElementById(`err-${m.name}`);
    if (err) err.textContent = series && series.error ? series.error : s && !n ? `no samples of v${r.version} in Prometheus yet` : '';
  }
}

// How many Prometheus points a chart holds (a canvas cannot be read back: tests and people can read this).
function markPoints(testid, points) {
  const figure = document.querySelector(`[data-testid="${testid}"]`);
  const n = (points || []).filter((p) => p[1] != null).length;
  if (figure) figure.dataset.points = String(n);
  return n;
}

function verdicts(item) {
  const r = item.rollout;
  const analyses = r ? [...r.analyses].reverse() : item.lastAnalysis ? [item.lastAnalysis] : [];
  const names = item.metrics.map((m) => m.name);
  const rows = analyses.map((a) => {
    const byName = new Map((a.metrics || []).map((m) => [m.name, m]));
    return el(
      'tr',
      { 'data-testid': 'verdict-row', 'data-verdict': a.verdict },
      el('td', {}, time(a.time)),
      el('td', {}, a.kind || 'interval'),
      el('td', {}, el('span', { class: `verdict ${a.verdict}` }, a.verdict)),
      names.map((n) => {
        const m = byName.get(n);
        return el('td', { class: `v-${verdictOf(m)}`, title: m ? m.reason || '' : '' }, m ? fmt(m.value) : '');
      }),
      el('td', {}, a.requests != null ? fmt(a.requests) : ''),
    );
  });
  return el(
    'div',
    { class: 'card' },
    el('h3', {}, 'Analysis verdicts', el('small', {}, ' each metric as the operator judged it (hover: why)')),
    el('table', { class: 'grid' }, el('thead', {}, el('tr', {}, ['time', 'kind', 'verdict', ...names, 'requests'].map((h) => el('th', {}, h)))), el('tbody', {}, rows.length ? rows : [el('tr', {}, el('td', { colspan: names.length + 4, class: 'empty' }, 'No analysis yet.'))])),
  );
}

function audit(item) {
  const rows = [...(item.history || [])].reverse().map((h) => {
    const metrics = (h.metrics || []).map((m) => el('span', { class: `m v-${verdictOf(m)}` }, `${m.name}=${fmt(m.value)}`));
    const ev = h.evaluation && h.evaluation.canary ? el('span', { class: 'm' }, `AUROC v${h.version} ${fmt(h.evaluation.canary.aurocMean)} vs stable ${fmt((h.evaluation.stable || {}).aurocMean)}`) : null;
    return el(
      'tr',
      { 'data-testid': 'history-row', 'data-action': h.action },
      el('td', {}, time(h.at)),
      el('td', {}, el('span', { class: `act ${h.action}` }, h.action)),
      el('td', {}, `v${h.version}`),
      el('td', {}, h.fromVersion != null ? `v${h.fromVersion}` : ''),
      el('td', { class: 'reason' }, h.reason || ''),
      el('td', { class: 'justification' }, metrics, ev),
    );
  });
  const more = item.historyTotal > (item.history || []).length ? ` (newest ${item.history.length} of ${item.historyTotal}; kubectl modeldeploy history shows all)` : '';
  return el(
    'div',
    { class: 'card' },
    el('h3', {}, 'Audit history', el('small', {}, ` status.history: who or what promoted or rolled back, and the metrics that justified it${more}`)),
    el('table', { class: 'grid' }, el('thead', {}, el('tr', {}, ['at', 'action', 'version', 'from', 'reason', 'metrics'].map((h) => el('th', {}, h)))), el('tbody', {}, rows.length ? rows : [el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No history yet.'))])),
  );
}

// ---- connection ----------------------------------------------------------------------------------
function renderConnection() {
  const live = document.getElementById('live');
  const error = state.errors.length ? state.errors[0] : '';
  live.textContent = state.connected ? 'live' : error ? `API unreachable: ${error.slice(0, 80)}${error.length > 80 ? '…' : ''}` : 'connecting…';
  live.title = error;
  live.className = `live ${state.connected ? 'on' : 'off'}`;
  const mode = document.getElementById('mode');
  mode.textContent = state.config.allowActions ? 'actions enabled' : 'read-only';
}

function connect() {
  const source = new EventSource('api/stream');
  const handle = (event) => (msg) => {
    const changed = applyMessage(state, event, JSON.parse(msg.data));
    if (event === 'snapshot' && !state.selected && location.hash.length > 1) state.selected = decodeURIComponent(location.hash.slice(1));
    if (changed.list) renderList();
    if (changed.detail) renderDetail();
    else if (changed.charts) updateCharts(state.items.get(state.selected));
    if (changed.connection || event === 'snapshot') renderConnection();
  };
  for (const event of ['snapshot', 'upsert', 'delete', 'series', 'state']) source.addEventListener(event, handle(event));
  source.onerror = () => {
    state.connected = false;
    renderConnection();
  };
}

window.addEventListener('resize', () => {
  if (charts.traffic) charts.traffic.resize();
  for (const c of charts.metrics.values()) c.resize();
});
connect();
