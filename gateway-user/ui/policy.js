// Policy: a session's refusals and would-be refusals, the policy its traffic suggests, and
// applying that suggestion in one action (PUT /v1/sessions/{id}/policy).

import { get, put, sessionPath } from './api.js';
import { h, kv, replace, showError } from './dom.js';
import { subscribe, who, refused } from './stream.js';
import { RecordTable, recordDetail } from './live.js';
import { policySummary } from './sessions.js';

/** Records of the session read back from the audit log (the newest this many). */
const HISTORY = 2000;

/** Mounts `#/policy` or `#/policy/<session id>`. */
export function mount(root, params, rest) {
  const id = rest[0] ?? '';
  const err = h('div');
  const picker = h('select', {
    testid: 'policy-session',
    onchange: (e) => { location.hash = `#/policy/${encodeURIComponent(e.target.value)}`; },
  }, h('option', { value: '' }, 'choose a session…'));
  const body = h('div');
  replace(root, h('section', { class: 'policy' }, h('div', { class: 'toolbar' }, h('span', null, 'Session '), picker), err, body));

  get('/v1/sessions').then((sessions) => {
    sessions.sort((a, b) => b.created_at - a.created_at);
    for (const s of sessions) {
      picker.append(h('option', { value: s.id }, `${s.id} (${s.state}, ${s.policy?.enforcement ?? 'enforce'})`));
    }
    picker.value = id;
  }, (e) => showError(err, e));
  if (!id) return () => {};

  let session = null;
  let suggestion = null;
  const current = h('div');
  const suggested = h('pre', { class: 'mono', testid: 'suggested-policy' }, 'loading…');
  const changes = h('div', { class: 'changes', testid: 'suggested-changes' });
  const result = h('div', { testid: 'policy-result', class: 'result' });
  const detail = h('div', { class: 'detail-inline' });
  const table = new RecordTable((entry) => replace(detail, recordDetail(entry.r)), 'refusal-row');
  const apply = h('button', { type: 'button', class: 'primary', testid: 'apply-suggested', disabled: true, onclick: applySuggestion }, 'Apply suggested policy');
  replace(body,
    h('h3', null, 'Current policy'), current,
    h('h3', null, 'Refusals and would-be refusals'), h('div', { testid: 'refusals' }, table.el), detail,
    h('h3', null, 'Suggested policy (what the session\'s traffic needs) ',
      h('button', { type: 'button', testid: 'suggest-refresh', onclick: suggest }, 'Refresh')),
    changes, suggested, h('div', { class: 'actions' }, apply), result);

  const showSession = (s) => {
    session = s;
    replace(current, kv([['state', s.state], ['summary', policySummary(s.policy), 'current-summary']]),
      h('pre', { class: 'mono', testid: 'current-policy' }, JSON.stringify(s.policy, null, 2)));
    showChanges();
  };

  function showChanges() {
    if (!session || !suggestion) return;
    const before = new Set(session.policy.allow ?? []);
    const added = (suggestion.allow ?? []).filter((host) => !before.has(host));
    const lines = [added.length ? `newly allowed: ${added.join(', ')}` : 'no new host'];
    if (!suggestion.allow) lines.push('every host allowed');
    if ((suggestion.enforcement ?? 'enforce') !== (session.policy.enforcement ?? 'enforce')) {
      lines.push(`enforcement becomes ${suggestion.enforcement ?? 'enforce'} (now ${session.policy.enforcement})`);
    }
    replace(changes, lines.join(' · '));
  }

  async function suggest() {
    try {
      suggestion = await get(sessionPath(id, '/policy/suggest'));
      suggested.textContent = JSON.stringify(suggestion, null, 2);
      apply.disabled = false;
      showChanges();
    } catch (e) {
      showError(err, e);
    }
  }

  async function applySuggestion() {
    if (!suggestion) return;
    result.textContent = 'applying…';
    try {
      showSession(await put(sessionPath(id, '/policy'), suggestion));
      result.textContent = `Applied: ${policySummary(session.policy)}`;
      result.className = 'result ok';
    } catch (e) {
      result.textContent = `Not applied: ${e.message}`;
      result.className = 'result bad';
    }
  }

  const mine = (r) => who(r).session === id && refused(r);
  // The audit log's page and the stream may both carry a record: keep one of each.
  const key = (r) => `${r.time}|${r.kind}|${r.conn}|${r.request}|${r.url}`;
  const shown = [];
  const keys = new Set();
  const add = (records) => {
    const fresh = records.filter((r) => mine(r) && !keys.has(key(r)));
    for (const r of fresh) { keys.add(key(r)); shown.push({ id: null, r }); }
    if (shown.length > 2 * HISTORY) { // bounded like the live view
      shown.splice(0, shown.length - HISTORY);
      keys.clear();
      for (const e of shown) keys.add(key(e.r));
    }
    return fresh.length;
  };
  get(`/v1/audit?session=${encodeURIComponent(id)}&limit=${HISTORY}`).then((page) => {
    add(page.records);
    shown.sort((a, b) => (a.r.time < b.r.time ? -1 : a.r.time > b.r.time ? 1 : 0));
    table.show(shown);
  }, (e) => showError(err, e));
  get(sessionPath(id)).then(showSession, (e) => showError(err, e));
  suggest();

  // New refusals arrive live; the suggestion follows them.
  let timer = 0;
  const unsubscribe = subscribe((batch) => {
    const n = add(batch.map((e) => e.r));
    if (!n) return;
    table.prepend(shown.slice(-n));
    clearTimeout(timer);
    timer = setTimeout(suggest, 300);
  });
  return () => { unsubscribe(); clearTimeout(timer); };
}
