// Sessions: list, create (credentials entered once; the token shown once), detail, revoke.

import { get, post, put, sessionPath } from './api.js';
import { h, kv, replace, fmt, words, confirmDialog, showError } from './dom.js';
import { feed, subscribe, who } from './stream.js';
import { RecordTable, recordDetail } from './live.js';

/** The answer of the last create, shown until the operator leaves the page: never again. */
let created = null;

/** One line describing a policy. */
export function policySummary(p) {
  if (!p) return '';
  const parts = [p.allow ? `allow ${p.allow.length ? p.allow.join(', ') : 'nothing'}` : 'allow every host'];
  if (p.deny?.length) parts.push(`deny ${p.deny.join(', ')}`);
  if (p.rules?.length) parts.push(`${p.rules.length} rule(s)`);
  if (p.rate_limits?.length) parts.push(`${p.rate_limits.length} rate limit(s)`);
  if (p.passthrough?.length) parts.push(`passthrough ${p.passthrough.join(', ')}`);
  if (p.tcp_allow?.length) parts.push(`tcp ${p.tcp_allow.join(', ')}`);
  parts.push(`pii ${p.pii ?? 'off'}`, p.enforcement ?? 'enforce');
  return parts.join(' · ');
}

/** `90s`, `30m`, `1h`, `7d` or plain seconds, as `sluice session create --ttl` reads them. */
export function parseTtl(text) {
  const m = /^(\d+)\s*([smhd]?)$/.exec(String(text).trim());
  if (!m) throw new Error(`TTL ${JSON.stringify(text)}: expected a number and a unit (90s, 30m, 1h, 7d)`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

const TOKEN_REF = '${SLUICE_SESSION_TOKEN}';

/** A value inside double quotes for sh, as `sluice env` prints it (the token reference kept). */
export function shellQuoted(value) {
  return value.split(TOKEN_REF)
    .map((part) => part.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/`/g, '\\`').replace(/\$/g, '\\$'))
    .join(TOKEN_REF);
}

/** `sluice env --session ID` lines, fetched from the API (no secret in them). */
function envBlock(id) {
  const pre = h('pre', { class: 'mono env', testid: 'env-lines' }, 'loading…');
  const err = h('div');
  const proxy = h('input', { type: 'checkbox', testid: 'env-proxy', onchange: load });
  async function load() {
    showError(err, null);
    try {
      const env = await get(sessionPath(id, `/env${proxy.checked ? '?proxy=1' : ''}`));
      pre.textContent = env.vars.map(([k, v]) => `export ${k}="${shellQuoted(v)}"\n`).join('');
    } catch (e) {
      pre.textContent = '';
      showError(err, e);
    }
  }
  load();
  return h('div', { class: 'env-block' },
    h('label', null, proxy, ' explicit-proxy mode (the proxy URL refers to $SLUICE_SESSION_TOKEN)'), pre, err);
}

function credentialRow() {
  const row = h('fieldset', { class: 'cred', testid: 'cred-row' },
    h('input', { name: 'name', placeholder: 'name (sandbox sends sluice_cred:NAME)', testid: 'cred-name', autocomplete: 'off' }),
    h('input', { name: 'value', type: 'password', placeholder: 'value (sent only to the hosts)', testid: 'cred-value', autocomplete: 'off' }),
    h('input', { name: 'hosts', placeholder: 'hosts: api.example.com, …', testid: 'cred-hosts' }),
    h('input', { name: 'headers', placeholder: 'headers (empty: any)', testid: 'cred-headers' }),
    h('label', null, h('input', { type: 'checkbox', name: 'query', testid: 'cred-query' }), ' query'),
    h('label', null, h('input', { type: 'checkbox', name: 'body', testid: 'cred-body' }), ' body'),
    h('button', { type: 'button', testid: 'cred-remove', onclick: () => row.remove() }, '✕'));
  return row;
}

function createForm(onCreated) {
  const creds = h('div', { class: 'creds' }, credentialRow());
  const err = h('div');
  const field = (label, el) => h('label', null, h('span', null, label), el);
  const form = h('form', { class: 'create', testid: 'create-form', autocomplete: 'off', onsubmit: submit },
    h('h3', null, 'New session'),
    h('div', { class: 'grid' },
      field('TTL', h('input', { name: 'ttl', value: '1h', testid: 'create-ttl' })),
      field('Allow hosts (empty: every host)', h('input', { name: 'allow', placeholder: 'api.example.com, *.example.org', testid: 'create-allow' })),
      field('Deny hosts', h('input', { name: 'deny', testid: 'create-deny' })),
      field('Enforcement', h('select', { name: 'enforcement', testid: 'create-enforcement' },
        h('option', { value: 'enforce' }, 'enforce'), h('option', { value: 'audit' }, 'audit (record would-be refusals)'))),
      field('PII', h('select', { name: 'pii', testid: 'create-pii' },
        ['off', 'detect', 'redact', 'block'].map((m) => h('option', { value: m }, m)))),
      field('Labels', h('input', { name: 'labels', placeholder: 'agent=x, run=42', testid: 'create-labels' }))),
    h('h4', null, 'Credentials (values are sent once and never shown again)'), creds,
    h('div', { class: 'actions' },
      h('button', { type: 'button', testid: 'add-cred', onclick: () => creds.append(credentialRow()) }, 'Add credential'),
      h('button', { type: 'submit', class: 'primary', testid: 'create-submit' }, 'Create session')),
    err);

  function body() {
    const f = form.elements;
    const policy = { deny: words(f.deny.value), pii: f.pii.value, enforcement: f.enforcement.value };
    if (words(f.allow.value).length) policy.allow = words(f.allow.value);
    const labels = {};
    for (const pair of words(f.labels.value)) {
      const [k, ...v] = pair.split('=');
      labels[k] = v.join('=');
    }
    const credentials = [];
    for (const row of creds.querySelectorAll('fieldset')) {
      const e = (name) => row.querySelector(`[name="${name}"]`);
      if (!e('name').value.trim() && !e('value').value) continue;
      credentials.push({
        name: e('name').value.trim(), value: e('value').value, hosts: words(e('hosts').value).map((s) => s.toLowerCase()),
        headers: words(e('headers').value).map((s) => s.toLowerCase()), query: e('query').checked, body: e('body').checked,
      });
    }
    return { ttl_seconds: parseTtl(f.ttl.value), credentials, policy, labels };
  }

  async function submit(event) {
    event.preventDefault();
    showError(err, null);
    let answer;
    try {
      answer = await post('/v1/sessions', body());
    } catch (e) {
      showError(err, e); // the inputs stay, so the operator can fix them
      return;
    }
    form.reset();
    replace(creds, credentialRow()); // the values leave the page with the old inputs
    onCreated(answer);
  }
  return form;
}

function createdPanel(onDismiss) {
  const { session, token, placeholders } = created;
  const tokenEl = h('code', { class: 'token', testid: 'created-token' }, token);
  const note = h('span', { class: 'muted', testid: 'copy-status' });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token);
      note.textContent = 'copied';
    } catch {
      getSelection().selectAllChildren(tokenEl);
      note.textContent = 'selected: press Ctrl+C';
    }
  };
  return h('section', { class: 'created', testid: 'created-panel' },
    h('h3', null, 'Session ', h('span', { class: 'mono', testid: 'created-session-id' }, session.id), ' created'),
    h('p', null, 'Session token, shown this once (give it to the sandbox\'s orchestrator, not the agent):'),
    h('div', { class: 'token-row' }, tokenEl, h('button', { type: 'button', testid: 'copy-token', onclick: copy }, 'Copy'), note),
    Object.keys(placeholders || {}).length
      ? kv(Object.entries(placeholders).map(([name, ph]) => [name, `the sandbox sends ${ph}`]), 'created-placeholders') : null,
    h('p', null, 'Sandbox environment (', h('code', null, `sluice env --session ${session.id}`), '):'),
    envBlock(session.id),
    h('button', { type: 'button', testid: 'created-dismiss', onclick: onDismiss }, 'Done: forget the token'));
}

async function list(root) {
  const err = h('div');
  const table = h('tbody');
  const panel = h('div');
  const showCreated = () => replace(panel, created ? createdPanel(() => { created = null; showCreated(); }) : null);
  const load = async () => {
    try {
      const sessions = await get('/v1/sessions');
      sessions.sort((a, b) => b.created_at - a.created_at);
      replace(table, sessions.map((s) => h('tr', { testid: 'session-row' },
        h('td', { class: 'mono' }, h('a', { href: `#/sessions/${encodeURIComponent(s.id)}`, testid: 'session-id' }, s.id)),
        h('td', { testid: 'session-state' }, h('span', { class: `badge s-${s.state}` }, s.state)),
        h('td', { title: fmt.unix(s.expires_at) }, fmt.relative(s.expires_at)),
        h('td', { class: 'mono' }, s.credentials.map((c) => `${c.name} → ${c.hosts.join(', ')}`).join('; ')),
        h('td', null, policySummary(s.policy)),
        h('td', { class: 'mono' }, Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ')))));
    } catch (e) {
      showError(err, e);
    }
  };
  replace(root, h('section', { class: 'sessions' },
    panel,
    createForm((answer) => { created = answer; showCreated(); load(); }),
    h('h3', null, 'Sessions ', h('button', { type: 'button', testid: 'sessions-refresh', onclick: load }, 'Refresh')),
    err,
    h('table', { class: 'list', testid: 'sessions-table' },
      h('thead', null, h('tr', null, ['id', 'state', 'expires', 'credentials (name → hosts)', 'policy', 'labels'].map((t) => h('th', null, t)))),
      table)));
  showCreated();
  await load();
}

function detail(root, id) {
  const err = h('div');
  const body = h('div');
  const traffic = new RecordTable((entry) => replace(trafficDetail, recordDetail(entry.r)), 'session-traffic-row');
  const trafficDetail = h('div', { class: 'detail-inline' });
  replace(root, h('section', { class: 'session-detail', testid: 'session-detail' },
    h('p', null, h('a', { href: '#/sessions' }, '← sessions')), err, body,
    h('h4', null, 'Recent traffic (from the live stream)'), traffic.el, trafficDetail));
  const mine = (e) => who(e.r).session === id;
  traffic.show(feed.ring.toArray().filter(mine));
  const unsubscribe = subscribe((batch) => traffic.prepend(batch.filter(mine)));

  const render = (s) => {
    const editor = h('textarea', { class: 'mono', rows: 8, testid: 'policy-editor', value: JSON.stringify(s.policy, null, 2) });
    const policyErr = h('div');
    const live = s.state === 'active' || s.state === 'pending';
    const save = async () => {
      showError(policyErr, null);
      try {
        render(await put(sessionPath(id, '/policy'), JSON.parse(editor.value)));
      } catch (e) {
        showError(policyErr, e);
      }
    };
    const revoke = async () => {
      if (!(await confirmDialog(`Revoke session ${id}? Its sandboxes lose network access within a second, on every node.`, 'Revoke'))) return;
      try {
        render(await post(sessionPath(id, '/revoke')));
      } catch (e) {
        showError(err, e);
      }
    };
    replace(body,
      h('h3', null, 'Session ', h('span', { class: 'mono' }, s.id), ' ', h('span', { class: `badge s-${s.state}`, testid: 'session-state' }, s.state)),
      h('div', { class: 'actions' },
        h('a', { href: `#/live?session=${encodeURIComponent(id)}` }, 'Live traffic'),
        h('a', { href: `#/policy/${encodeURIComponent(id)}` }, 'Refusals & suggested policy'),
        h('button', { type: 'button', class: 'danger', testid: 'revoke', disabled: !live, onclick: revoke }, live ? 'Revoke…' : s.state)),
      kv([
        ['created', `${fmt.unix(s.created_at)} (${fmt.relative(s.created_at)})`],
        ['expires', `${fmt.unix(s.expires_at)} (${fmt.relative(s.expires_at)})`, 'session-expires'],
        ['upstream proxy', s.upstream_proxy],
        ['labels', Object.entries(s.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ')],
        ['policy', policySummary(s.policy), 'session-policy'],
      ]),
      h('h4', null, 'Credentials (names and hosts only; values are never shown)'),
      h('table', { class: 'list', testid: 'session-credentials' },
        h('thead', null, h('tr', null, ['name', 'placeholder', 'hosts', 'headers', 'query', 'body'].map((t) => h('th', null, t)))),
        h('tbody', null, s.credentials.map((c) => h('tr', null,
          h('td', { class: 'mono' }, c.name), h('td', { class: 'mono' }, `sluice_cred:${c.name}`),
          h('td', { class: 'mono' }, c.hosts.join(', ')), h('td', { class: 'mono' }, (c.headers || []).join(', ') || 'any'),
          h('td', null, c.query ? 'yes' : 'no'), h('td', null, c.body ? 'yes' : 'no'))))),
      h('h4', null, 'Policy'), editor,
      h('div', { class: 'actions' }, h('button', { type: 'button', testid: 'policy-save', onclick: save }, 'Save policy')), policyErr,
      h('h4', null, 'Sandbox environment'), envBlock(id));
  };
  get(sessionPath(id)).then(render, (e) => showError(err, e));
  return unsubscribe;
}

/** Mounts `#/sessions` or `#/sessions/<id>`. */
export function mount(root, params, rest) {
  let cleanup = null;
  if (rest[0]) cleanup = detail(root, rest[0]);
  else list(root);
  return () => {
    created = null; // leaving the page forgets the token
    cleanup?.();
  };
}
