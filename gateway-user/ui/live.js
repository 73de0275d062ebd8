// Live traffic: the audit stream as a table, filtered, with a detail panel and pause.

import { h, kv, replace, fmt } from './dom.js';
import { CAP, feed, subscribe, watchStatus, who, refused } from './stream.js';

const filters = { session: '', sandbox: '', host: '', conn: '', kind: '', decision: '' };
let paused = false;

/** Whether a record passes the filters `f`. */
export function matches(r, f) {
  const w = who(r);
  if (f.session && w.session !== f.session) return false;
  if (f.sandbox && String(w.sandbox ?? '') !== f.sandbox) return false;
  if (f.conn && r.conn !== f.conn) return false;
  if (f.kind && r.kind !== f.kind) return false;
  if (f.decision === 'refused') {
    if (!refused(r)) return false;
  } else if (f.decision === 'would_refuse') {
    if (r.would_refuse === undefined) return false;
  } else if (f.decision && r.decision !== f.decision) return false;
  if (f.host) {
    const needle = f.host.toLowerCase();
    const hay = [r.host, r.url, r.destination].filter((v) => typeof v === 'string');
    if (!hay.some((v) => v.toLowerCase().includes(needle))) return false;
  }
  return true;
}

const COLUMNS = [
  ['time', 'cell-time', 'mono', (r) => fmt.clock(r.time)],
  ['session', 'cell-session', 'mono', (r) => who(r).session ?? ''],
  ['sbx', 'cell-sandbox', 'num', (r) => who(r).sandbox ?? ''],
  ['kind', 'cell-kind', '', (r) => r.kind],
  ['decision', 'cell-decision', 'decision', (r) => (r.would_refuse !== undefined ? `${r.decision} (would refuse)` : r.decision)],
  ['method', 'cell-method', 'mono', (r) => r.method ?? r.qtype ?? ''],
  ['status', 'cell-status', 'num', (r) => r.status ?? ''],
  ['host', 'cell-host', 'mono', (r) => r.host ?? r.destination ?? ''],
  ['url / reason', 'cell-url', 'mono wide', (r) => r.url ?? r.reason ?? r.mode ?? ''],
  ['↑', 'cell-up', 'num', (r) => fmt.bytes(r.bytes_up)],
  ['↓', 'cell-down', 'num', (r) => fmt.bytes(r.bytes_down)],
  ['time', 'cell-duration', 'num', (r) => fmt.ms(r.duration_ms)],
];

/**
 * A table of records, newest first, holding at most CAP. Virtual: only the rows in view (and
 * a few around) are in the DOM, so a frame's work does not grow with what is held.
 */
export class RecordTable {
  constructor(onSelect, rowTestid = 'live-row') {
    this.rowTestid = rowTestid;
    this.items = []; // entries, newest first
    this.selected = null;
    this.rowHeight = 22; // measured from the first row drawn
    this.frame = 0;
    this.entries = new WeakMap();
    this.body = h('tbody', {
      onclick: (e) => {
        const row = e.target.closest('tr');
        if (!row || !this.entries.has(row)) return;
        this.selected = this.entries.get(row);
        this.body.querySelector('tr.selected')?.classList.remove('selected');
        row.classList.add('selected');
        onSelect(this.selected);
      },
    });
    this.el = h('div', { class: 'table-wrap', onscroll: () => this.schedule() },
      h('table', { class: 'records' },
        h('thead', null, h('tr', null, COLUMNS.map(([label]) => h('th', null, label)))),
        this.body));
  }

  row(entry) {
    const r = entry.r;
    const kind = r.decision === 'deny' || r.decision === 'error' ? r.decision : r.would_refuse !== undefined ? 'would' : 'allow';
    const tr = h('tr', { testid: this.rowTestid, class: `d-${kind}${entry === this.selected ? ' selected' : ''}` },
      COLUMNS.map(([, testid, cls, value]) => {
        const text = String(value(r));
        return h('td', { class: cls, testid, title: text || undefined }, text);
      }));
    this.entries.set(tr, entry);
    return tr;
  }

  /** Replaces the records with `entries` (oldest first), keeping the newest CAP. */
  show(entries) {
    this.items = entries.slice(-CAP).reverse();
    this.el.scrollTop = 0;
    this.draw();
  }

  /** Puts `entries` (oldest first) on top; what the operator is looking at stays in place. */
  prepend(entries) {
    if (!entries.length) return;
    const fresh = entries.slice(-CAP).reverse();
    this.items = fresh.concat(this.items.slice(0, CAP - fresh.length));
    if (this.el.scrollTop > 0) this.el.scrollTop += fresh.length * this.rowHeight;
    this.draw();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  /** Draws the rows in view between two spacers standing for the rest. */
  draw() {
    const rh = this.rowHeight;
    const view = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.el.scrollTop / rh) - 10);
    const last = Math.min(this.items.length, first + Math.ceil(view / rh) + 20);
    const spacer = (rows) => {
      const tr = h('tr', { class: 'spacer' }, h('td', { colSpan: COLUMNS.length }));
      tr.style.height = `${rows * rh}px`; // CSSOM, allowed by the CSP (no style attribute)
      return tr;
    };
    const frag = document.createDocumentFragment();
    if (first > 0) frag.append(spacer(first));
    for (let i = first; i < last; i += 1) frag.append(this.row(this.items[i]));
    if (last < this.items.length) frag.append(spacer(this.items.length - last));
    this.body.replaceChildren(frag);
    const drawn = this.body.querySelector(`tr[data-testid="${this.rowTestid}"]`);
    if (drawn && drawn.offsetHeight > 0 && drawn.offsetHeight !== rh) {
      this.rowHeight = drawn.offsetHeight;
      this.schedule();
    }
  }

  get count() {
    return this.items.length;
  }
}

const DETAIL = [
  ['time', 'time'], ['kind', 'kind'], ['decision', 'decision'], ['side', 'side'],
  ['reason', 'reason'], ['would_refuse', 'would refuse'], ['method', 'method'], ['url', 'URL'],
  ['status', 'status'], ['protocol', 'protocol'], ['host', 'host'], ['destination', 'destination'],
  ['mode', 'mode'], ['proxy', 'upstream proxy'], ['conn', 'connection'], ['request', 'request #'],
  ['session', 'session'], ['sandbox', 'sandbox'], ['pid', 'pid'], ['uid', 'uid'], ['cgroup', 'cgroup'],
  ['bytes_up', 'bytes up'], ['bytes_down', 'bytes down'], ['duration_ms', 'duration'],
  ['credentials', 'credentials used'], ['pii', 'PII found'], ['executable', 'executable'],
  ['trust_refused', 'certificate refused'], ['qtype', 'DNS type'], ['answers', 'DNS answers'],
  ['flags', 'DNS flags'], ['node', 'node'], ['seq', 'seq'],
];

function detailValue(key, v) {
  if (key === 'bytes_up' || key === 'bytes_down') return `${fmt.bytes(v)} (${v})`;
  if (key === 'duration_ms') return fmt.ms(v);
  if (Array.isArray(v)) return v.map(String).join(', ');
  if (v && typeof v === 'object') return Object.entries(v).map(([k, n]) => `${k}: ${n}`).join(', ');
  return String(v);
}

/** A record's every field as text; `onConn` (optional) filters by its connection. */
export function recordDetail(r, onConn) {
  const flat = { ...r, ...who(r) };
  delete flat.who;
  const rows = [];
  for (const [key, label] of DETAIL) {
    if (flat[key] === undefined || flat[key] === null) continue;
    rows.push([label, detailValue(key, flat[key]), `detail-${key.replace('_', '-')}`]);
  }
  const known = new Set(DETAIL.map(([k]) => k));
  for (const [key, v] of Object.entries(flat)) {
    if (!known.has(key) && v !== undefined) rows.push([key, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  }
  return h('div', { class: 'detail-body' },
    kv(rows),
    r.conn && onConn ? h('button', { type: 'button', testid: 'detail-filter-conn', onclick: () => onConn(r.conn) }, 'Show this connection') : null,
    h('details', null, h('summary', null, 'JSON'), h('pre', { class: 'mono', testid: 'detail-json' }, JSON.stringify(r, null, 2))));
}

/** Mounts the live view; `params` may preset filters (`#/live?session=…`). */
export function mount(root, params) {
  for (const key of Object.keys(filters)) if (params.has(key)) filters[key] = params.get(key);
  let newWhilePaused = 0;
  const detail = h('aside', { class: 'detail', testid: 'detail', hidden: true });
  const table = new RecordTable((entry) => showDetail(entry.r));
  const counts = h('span', { class: 'counts', testid: 'live-counts' });
  const pause = h('button', { type: 'button', testid: 'pause', onclick: () => setPaused(!paused) });

  const input = (key, placeholder, list) => h('input', {
    type: 'search', placeholder, value: filters[key], testid: `filter-${key}`, list,
    oninput: (e) => { filters[key] = e.target.value.trim(); redraw(); },
  });
  const select = (key, options) => {
    const el = h('select', { testid: `filter-${key}`, onchange: (e) => { filters[key] = e.target.value; redraw(); } },
      options.map(([value, label]) => h('option', { value }, label)));
    el.value = filters[key];
    return el;
  };
  const sessions = h('datalist', { id: 'live-sessions' });
  const toolbar = h('div', { class: 'toolbar' },
    input('session', 'session id', 'live-sessions'), sessions, input('sandbox', 'sandbox id'),
    input('host', 'host or URL contains'), input('conn', 'connection id'),
    select('kind', [['', 'any kind'], ['request', 'request'], ['connection', 'connection'], ['dns', 'dns'], ['sandbox', 'sandbox'], ['session', 'session'], ['config', 'config']]),
    select('decision', [['', 'any decision'], ['allow', 'allow'], ['deny', 'deny'], ['error', 'error'], ['would_refuse', 'would refuse'], ['refused', 'deny or would refuse']]),
    h('button', { type: 'button', testid: 'filter-clear', onclick: clear }, 'Clear filters'),
    pause, counts);
  replace(root, h('section', { class: 'live' }, toolbar, h('div', { class: 'split' }, table.el, detail)));

  function showDetail(r) {
    detail.hidden = false;
    replace(detail,
      h('header', null, h('strong', null, `${r.kind} record`),
        h('button', { type: 'button', testid: 'detail-close', onclick: () => { detail.hidden = true; } }, 'Close')),
      recordDetail(r, (conn) => { filters.conn = conn; syncInputs(); redraw(); }));
  }

  function syncInputs() {
    for (const key of Object.keys(filters)) toolbar.querySelector(`[data-testid="filter-${key}"]`).value = filters[key];
  }

  function clear() {
    for (const key of Object.keys(filters)) filters[key] = '';
    syncInputs();
    redraw();
  }

  function setPaused(value) {
    paused = value;
    newWhilePaused = 0;
    if (!paused) redraw();
    updateCounts();
  }

  function redraw() {
    table.show(feed.ring.toArray().filter((e) => matches(e.r, filters)));
    updateCounts();
  }

  function updateCounts() {
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.dataset.state = paused ? 'paused' : 'live';
    const parts = [`showing ${table.count}`, `holding ${feed.ring.length} of the newest ${CAP}`, `received ${feed.received}`];
    counts.replaceChildren(parts.join(' · '),
      h('span', { class: feed.evicted ? 'dropped warn' : 'dropped', testid: 'live-dropped' }, ` · ${feed.evicted} dropped from view`),
      paused ? h('span', { class: 'warn' }, ` · paused, ${newWhilePaused} new`) : '');
  }

  let sessionIds = new Set();
  function noteSessions(batch) {
    let changed = false;
    for (const { r } of batch) {
      const s = who(r).session;
      if (s && !sessionIds.has(s) && sessionIds.size < 500) { sessionIds.add(s); changed = true; }
    }
    if (changed) replace(sessions, [...sessionIds].map((s) => h('option', { value: s })));
  }

  const unsubscribe = subscribe((batch) => {
    noteSessions(batch);
    if (paused) newWhilePaused += batch.length;
    else table.prepend(batch.filter((e) => matches(e.r, filters)));
    updateCounts();
  });
  const unwatch = watchStatus(updateCounts);
  noteSessions(feed.ring.toArray());
  redraw();
  return () => { unsubscribe(); unwatch(); };
}
