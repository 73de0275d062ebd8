// Policy: a session's refusals and would-be refusals, the policy its traffic suggests, and
// applying that suggestion in one action (PUT /v1/sessions/{id}/policy).
//
// The suggestion is drawn from the session's traffic, which the agent controls, so it is
// never applied as it is: it is merged over the current policy without lowering anything the
// operator set (deny list, rate limits, PII mode, enforcement), every change is listed in a
// confirmation (passthrough and raw TCP called out: they escape inspection), and exactly the
// policy shown there is applied, whatever arrives meanwhile.

import { get, put, sessionPath } from './api.js';
import { h, kv, replace, showError, confirmDialog } from './dom.js';
import { subscribe, who, refused } from './stream.js';
import { RecordTable, recordDetail } from './live.js';
import { policySummary } from './sessions.js';

/** Records of the session read back from the audit log (the newest this many). */
const HISTORY = 2000;

/** PII modes from weakest to strictest. */
const PII = ['off', 'detect', 'redact', 'block'];

const union = (a, b) => [...new Set([...(a ?? []), ...(b ?? [])])].sort();

/**
 * The policy that applying `suggestion` to a session whose policy is `current` sets: the
 * suggestion's hosts, rules, passthrough and TCP targets, with the current deny list and rate
 * limits kept, and PII mode and enforcement never lowered.
 */
export function merged(current, suggestion) {
  const pii = Math.max(PII.indexOf(current.pii ?? 'off'), PII.indexOf(suggestion.pii ?? 'off'), 0);
  const enforce = (current.enforcement ?? 'enforce') === 'enforce' || (suggestion.enforcement ?? 'enforce') === 'enforce';
  const out = {
    allow: suggestion.allow ?? null,
    deny: union(current.deny, suggestion.deny),
    rules: suggestion.rules ?? [],
    rate_limits: [...(current.rate_limits ?? []), ...(suggestion.rate_limits ?? [])],
    tcp_allow: suggestion.tcp_allow ?? [],
    passthrough: suggestion.passthrough ?? [],
    pii: PII[pii],
    enforcement: enforce ? 'enforce' : 'audit',
  };
  if (out.allow === null) delete out.allow;
  for (const k of ['deny', 'rules', 'rate_limits', 'tcp_allow', 'passthrough']) if (!out[k].length) delete out[k];
  return out;
}

/** What changes from `before` to `after`, as lines; `warn` marks the ones that widen escape. */
export function policyChanges(before, after) {
  const lines = [];
  const diff = (label, a, b, warn) => {
    const was = new Set(a ?? []);
    const now = new Set(b ?? []);
    const added = [...now].filter((x) => !was.has(x));
    const removed = [...was].filter((x) => !now.has(x));
    if (added.length) lines.push({ text: `${label}: + ${added.join(', ')}`, warn });
    if (removed.length) lines.push({ text: `${label}: − ${removed.join(', ')}` });
  };
  if (!before.allow && after.allow) lines.push({ text: `allow: every host → only ${after.allow.join(', ') || 'none'}` });
  else if (before.allow && !after.allow) lines.push({ text: 'allow: every host not denied', warn: true });
  else diff('allow', before.allow, after.allow, false);
  const rule = (r) => `${r.host} ${r.methods?.length ? r.methods.join(',') : 'any method'} ${r.paths?.length ? r.paths.join(',') : 'any path'}`;
  diff('rules', (before.rules ?? []).map(rule), (after.rules ?? []).map(rule), false);
  diff('deny', before.deny, after.deny, false);
  diff('passthrough (no inspection, no credential injection or scrubbing, no PII scan)', before.passthrough, after.passthrough, true);
  diff('tcp_allow (raw TCP, not inspected)', before.tcp_allow, after.tcp_allow, true);
  if ((before.enforcement ?? 'enforce') !== after.enforcement) lines.push({ text: `enforcement: ${before.enforcement ?? 'enforce'} → ${after.enforcement}` });
  if ((before.pii ?? 'off') !== after.pii) lines.push({ text: `pii: ${before.pii ?? 'off'} → ${after.pii}` });
  return lines;
}

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
    h('h3', null, 'Suggested policy (what the session\'s traffic needs, merged over the current one) ',
      h('button', { type: 'button', testid: 'suggest-refresh', onclick: suggest }, 'Refresh')),
    changes, suggested, h('div', { class: 'actions' }, apply), result);

  const showSession = (s) => {
    session = s;
    replace(current, kv([['state', s.state], ['summary', policySummary(s.policy), 'current-summary']]),
      h('pre', { class: 'mono', testid: 'current-policy' }, JSON.stringify(s.policy, null, 2)));
    showChanges();
  };

  const changeList = (lines) => (lines.length
    ? h('ul', null, lines.map((l) => h('li', { class: l.warn ? 'warn' : null, testid: l.warn ? 'change-warn' : 'change' }, l.text)))
    : h('p', null, 'no change'));

  /** The current policy with the suggestion merged over it, and what that changes. */
  const proposal = () => {
    const next = merged(session.policy, suggestion);
    return { next, lines: policyChanges(session.policy, next) };
  };

  function showChanges() {
    if (!session || !suggestion) return;
    const { next, lines } = proposal();
    replace(changes, changeList(lines));
    suggested.textContent = JSON.stringify(next, null, 2);
  }

  async function suggest() {
    try {
      suggestion = await get(sessionPath(id, '/policy/suggest'));
      apply.disabled = false;
      showChanges();
    } catch (e) {
      showError(err, e);
    }
  }

  async function applySuggestion() {
    if (!suggestion || !session) return;
    // Frozen here: what the operator confirms is what is sent.
    const { next, lines } = proposal();
    const shown = h('div', null,
      h('p', null, `Replace the policy of session ${id} with:`),
      changeList(lines),
      h('pre', { class: 'mono', testid: 'confirm-policy' }, JSON.stringify(next, null, 2)));
    if (!(await confirmDialog(shown, 'Apply'))) return;
    result.textContent = 'applying…';
    try {
      showSession(await put(sessionPath(id, '/policy'), next));
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
