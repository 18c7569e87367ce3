// The page's pure logic (src/model.js): SSE messages, chart data, formatting, which actions show.
import { describe, expect, it } from 'vitest';
import { applyMessage, availableActions, fmt, initialState, metricChartData, pickSelected, stepText, thresholdLines, trafficChartData } from '../src/model.js';

const item = (over = {}) => ({
  key: 'radiology/resnet50', namespace: 'radiology', name: 'resnet50', phase: 'Progressing', strategy: 'Canary',
  stableVersion: 1, canaryVersion: 2, targetVersion: 2, canaryWeight: 20, step: 0, steps: [20, 50, 100], paused: false,
  metrics: [], rollout: { version: 2, startedAt: '2026-01-01T00:00:00.000Z', seenAt: 1, analyses: [], weights: [] }, ...over,
});

describe('applyMessage', () => {
  it('replaces everything on a snapshot and keeps config and connection', () => {
    const s = initialState();
    const changed = applyMessage(s, 'snapshot', { items: [item()], config: { allowActions: true, actions: ['abort'] }, state: { connected: true } });
    expect(changed).toMatchObject({ list: true, detail: true });
    expect(s.items.size).toBe(1);
    expect(s.config.allowActions).toBe(true);
    expect(s.connected).toBe(true);
  });
  it('forgets the series of a rollout when a new one starts', () => {
    const s = initialState();
    applyMessage(s, 'snapshot', { items: [item()] });
    applyMessage(s, 'series', { key: 'radiology/resnet50', version: 2, series: [] });
    expect(s.series.has('radiology/resnet50')).toBe(true);
    const next = item({ canaryVersion: 3, rollout: { version: 3, startedAt: '2026-01-01T00:05:00.000Z', analyses: [], weights: [] } });
    expect(applyMessage(s, 'upsert', next).newRollout).toBe(true);
    expect(s.series.has('radiology/resnet50')).toBe(false);
  });
  it('drops a series message of another rollout than the one shown', () => {
    const s = initialState();
    applyMessage(s, 'snapshot', { items: [item()] });
    applyMessage(s, 'series', { key: 'radiology/resnet50', version: 7, series: [] });
    expect(s.series.size).toBe(0);
  });
  it('removes a deleted object and its selection', () => {
    const s = initialState();
    applyMessage(s, 'snapshot', { items: [item()] });
    s.selected = 'radiology/resnet50';
    applyMessage(s, 'delete', { key: 'radiology/resnet50' });
    expect(s.items.size).toBe(0);
    expect(s.selected).toBe(null);
  });
});

describe('pickSelected', () => {
  it('prefers a live rollout over an idle object', () => {
    const s = initialState();
    applyMessage(s, 'snapshot', { items: [item({ key: 'a/idle', canaryVersion: null }), item({ key: 'b/live' })] });
    expect(pickSelected(s)).toBe('b/live');
  });
});

describe('metricChartData', () => {
  const metric = { name: 'latency-p95', builtin: 'latency', max: 100, failFast: { max: 300 } };
  it('aligns Prometheus points and analyses on one time axis, thresholds as constant lines', () => {
    const points = [[10, 40], [20, 42], [30, 250]];
    const analyses = [
      { time: new Date(20_000).toISOString(), verdict: 'pass', metrics: [{ name: 'latency-p95', value: 41, passed: true }] },
      { time: new Date(35_000).toISOString(), verdict: 'fail', metrics: [{ name: 'latency-p95', value: 260, passed: false }] },
    ];
    const { data, bounds } = metricChartData(metric, points, analyses);
    expect(data[0]).toEqual([10, 20, 30, 35]);
    expect(data[1]).toEqual([40, 42, 250, null]);
    expect(data[2]).toEqual([null, 41, null, null]);
    expect(data[3]).toEqual([null, null, null, 260]);
    expect(bounds.map((b) => b.kind)).toEqual(['max', 'failFast']);
    expect(data[4]).toEqual([100, 100, 100, 100]);
    expect(data[5]).toEqual([300, 300, 300, 300]);
  });
  it('stretches the thresholds over the whole time span', () => {
    const { data } = metricChartData(metric, [[10, 40]], [], { min: 0, max: 20 });
    expect(data[0]).toEqual([0, 10, 20]);
    expect(data[1]).toEqual([null, 40, null]);
    expect(data[4]).toEqual([100, 100, 100]);
  });
  it('plots no point for a no-data analysis', () => {
    const { data } = metricChartData(metric, [], [{ time: new Date(5000).toISOString(), metrics: [{ name: 'latency-p95', value: null, passed: false }] }]);
    expect(data[2]).toEqual([null]);
    expect(data[3]).toEqual([null]);
  });
});

describe('thresholdLines', () => {
  it('lists min for an AUROC floor and max for a drift', () => {
    expect(thresholdLines({ min: 0.8 })).toEqual([{ label: 'min 0.8', value: 0.8, kind: 'min' }]);
    expect(thresholdLines({ max: 0.02 }).map((b) => b.label)).toEqual(['max 0.02']);
  });
});

describe('trafficChartData', () => {
  it('carries the asked weight forward as a step line up to now', () => {
    const [xs, asked, served] = trafficChartData([[10, 20], [30, 50]], [[20, 19.5], [40, 49]], 50);
    expect(xs).toEqual([10, 20, 30, 40, 50]);
    expect(asked).toEqual([20, 20, 50, 50, 50]);
    expect(served).toEqual([null, 19.5, null, 49, null]);
  });
});

describe('formatting and actions', () => {
  it('formats numbers for people', () => {
    expect(fmt(null)).toBe('no data');
    expect(fmt(0.123456)).toBe('0.1235');
    expect(fmt(312.04)).toBe('312');
    expect(fmt(0.00001)).toBe('1.00e-5');
  });
  it('names the step of a canary', () => {
    expect(stepText(item({ step: 1, canaryWeight: 50 }))).toBe('step 2/3');
    expect(stepText(item({ canaryVersion: null }))).toBe('');
  });
  it('offers only actions that apply and that the server allows', () => {
    const all = ['promote', 'promote-full', 'abort', 'pause', 'resume', 'retry'];
    expect(availableActions(item(), all)).toEqual(['promote', 'promote-full', 'abort', 'pause']);
    expect(availableActions(item({ paused: true }), all)).toContain('resume');
    expect(availableActions(item({ canaryVersion: null, targetVersion: 2, stableVersion: 1, phase: 'RolledBack' }), all)).toEqual(['pause', 'retry']);
    expect(availableActions(item(), [])).toEqual([]);
  });
});
