// Node: health, the CA (download through the API with the token), the redacted
// configuration, and small charts of rates computed here from /metrics polled every 2 s.

import { get } from './api.js';
import { h, svg, kv, replace, tree, fmt, showError } from './dom.js';
import { tally } from './stream.js';

const POLL_MS = 2000;
const POINTS = 150; // 5 minutes

/**
 * The charts. A rate is the delta of the first counter the node exports, per second; where it
 * exports none, the rate is counted from the audit stream (`tally`), which says so.
 */
const CHARTS = [
  { id: 'requests', title: 'Requests/s', counters: ['sluice_requests_total', 'sluice_http_requests_total'], tally: 'requests' },
  { id: 'refusals', title: 'Refusals/s', counters: ['sluice_refusals_total', 'sluice_requests_refused_total'], tally: 'refusals' },
  { id: 'connections', title: 'Captured connections', gauge: 'sluice_captured_connections' },
  { id: 'leaf-misses', title: 'Leaf-cache misses/s', counters: ['sluice_tls_leaves_minted_total'] },
  { id: 'audit', title: 'Audit records written/s', counters: ['sluice_audit_records_written_total'] },
];

const history = new Map(CHARTS.map((c) => [c.id, []]));
const source = new Map();
let previous = null;
let latest = new Map();
let pollError = null;
let timer = 0;
const watchers = new Set();

/** Sums each metric's samples over its labels, from the Prometheus text format. */
export function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    const value = m ? Number(m[3]) : NaN;
    if (Number.isFinite(value)) sums.set(m[1], (sums.get(m[1]) ?? 0) + value);
  }
  return sums;
}

/** Starts polling /metrics (after login). */
export function start() {
  if (!timer) { poll(); timer = setInterval(poll, POLL_MS); }
}

/** Stops polling and forgets the history (logout). */
export function stop() {
  clearInterval(timer);
  timer = 0;
  previous = null;
  latest = new Map();
  for (const points of history.values()) points.length = 0;
}

async function poll() {
  const now = performance.now();
  let metrics = null;
  try {
    metrics = parseMetrics(await get('/metrics', { as: 'text' }));
    pollError = null;
  } catch (e) {
    pollError = e;
  }
  const sample = { t: now, metrics, tally: { ...tally } };
  for (const chart of CHARTS) {
    const points = history.get(chart.id);
    points.push(metrics && previous?.metrics ? value(chart, sample, previous) : null);
    if (points.length > POINTS) points.shift();
  }
  if (metrics) latest = metrics;
  previous = sample;
  for (const fn of watchers) fn();
}

function value(chart, now, before) {
  if (chart.gauge) {
    source.set(chart.id, chart.gauge);
    return now.metrics.get(chart.gauge) ?? null;
  }
  const dt = (now.t - before.t) / 1000;
  const name = chart.counters.find((c) => now.metrics.has(c));
  if (name && before.metrics.has(name)) {
    source.set(chart.id, name);
    const delta = now.metrics.get(name) - before.metrics.get(name);
    return Math.max(0, delta) / dt; // a counter reset (restart) reads as 0, not negative
  }
  if (chart.tally) {
    source.set(chart.id, 'counted from the audit stream');
    return (now.tally[chart.tally] - before.tally[chart.tally]) / dt;
  }
  return null;
}

function round(v) {
  const text = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

/** One chart as inline SVG: the line, the current value and the maximum shown. */
function chart(c) {
  const points = history.get(c.id);
  const W = 300;
  const H = 64;
  const max = Math.max(1, ...points.filter((v) => v !== null));
  const x = (i) => (W * (i + POINTS - points.length)) / (POINTS - 1);
  const y = (v) => H - 2 - ((H - 4) * v) / max;
  const lines = [];
  let run = [];
  points.forEach((v, i) => {
    if (v === null) { if (run.length) lines.push(run); run = []; } else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (run.length) lines.push(run);
  const last = [...points].reverse().find((v) => v !== null);
  return h('figure', { class: 'chart', testid: `chart-${c.id}` },
    h('figcaption', null, h('span', null, c.title), h('strong', { testid: `chart-${c.id}-value` }, last === undefined ? '–' : round(last))),
    svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': c.title },
      svg('line', { x1: 0, y1: H - 2, x2: W, y2: H - 2, class: 'axis' }),
      ...lines.map((pts) => svg('polyline', { points: pts.join(' '), class: 'series' }))),
    h('div', { class: 'chart-foot muted' }, `max ${round(max)} · ${source.get(c.id) ?? 'waiting for two samples'}`));
}

async function downloadCa(err) {
  try {
    const blob = await get('/v1/ca.pem', { as: 'blob' });
    const url = URL.createObjectURL(new Blob([blob], { type: 'application/x-pem-file' }));
    const a = h('a', { href: url, download: 'sluice-ca.pem' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  } catch (e) {
    showError(err, e);
  }
}

/** Mounts `#/node`. */
export function mount(root) {
  const err = h('div');
  const health = h('div', { testid: 'health' });
  const info = h('div', { testid: 'node-info' });
  const config = h('div', { testid: 'config-tree' });
  const charts = h('div', { class: 'charts', testid: 'charts' });
  const all = h('tbody');
  const pollStatus = h('div');
  replace(root, h('section', { class: 'node' }, err,
    h('div', { class: 'cols' },
      h('div', null, h('h3', null, 'Health'), health, h('h3', null, 'Node and CA'), info),
      h('div', null, h('h3', null, 'Metrics (every 2 s)'), pollStatus, charts,
        h('details', null, h('summary', null, 'Every metric (summed over labels)'), h('table', { class: 'list' }, all)))),
    h('h3', null, 'Configuration (redacted)'), config));

  const draw = () => {
    replace(charts, CHARTS.map(chart));
    showError(pollStatus, pollError);
    replace(all, [...latest.entries()].sort().map(([k, v]) => h('tr', null, h('td', { class: 'mono' }, k), h('td', { class: 'num' }, String(v)))));
  };
  watchers.add(draw);
  draw();

  get('/v1/health').then((x) => replace(health, kv([
    ['status', x.status, 'health-status'], ['version', x.version], ['sandboxes', x.sandboxes], ['captured connections', x.connections],
  ])), (e) => showError(err, e));
  get('/v1/node').then((n) => {
    const ca = n.ca || {};
    const days = ca.not_after ? (Date.parse(ca.not_after) - Date.now()) / 86400000 : NaN;
    replace(info,
      kv([['node', n.node, 'node-name'], ['version', n.version], ['CA subject', ca.subject],
        ['CA SHA-256', ca.fingerprint_sha256, 'ca-fingerprint'],
        ['CA expires', ca.not_after ? `${ca.not_after} (${Number.isFinite(days) ? `${Math.round(days)} days` : '?'})` : '', 'ca-expiry']]),
      Number.isFinite(days) && days < 30 ? h('div', { class: 'error' }, 'The CA expires within 30 days.') : null,
      h('button', { type: 'button', testid: 'ca-download', onclick: () => downloadCa(err) }, 'Download ca.pem'));
    replace(config, tree(n.config ?? {}));
  }, (e) => showError(err, e));
  return () => watchers.delete(draw);
}
