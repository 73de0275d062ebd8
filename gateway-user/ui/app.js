// Sluice operator dashboard: login, shell and hash router (#/live, #/sessions, #/sandboxes,
// #/policy, #/node). Plain ES modules, no framework, no build step, no network but the
// daemon's own API.
//
// Memory and speed under load (thousands of audit records per second), see stream.js and
// live.js:
// - One audit-stream connection for the whole app. Each record goes into a ring of the newest
//   2000 (CAP); older ones fall out and are counted as "dropped from view". Nothing else keeps
//   records, so memory stays bounded however long the page is open.
// - Records are not rendered one by one: the stream queues them and hands the batch to the
//   views once per animation frame. The live table puts the batch's newest (at most CAP)
//   matching rows on top in one DOM insertion and trims itself to CAP rows. A hidden tab gets
//   no frames; its queue is cut to what the ring holds.
// - Pause freezes the table (records keep arriving into the ring and are counted); resume and
//   a filter change re-render from the ring.
// - Rates on the Node page come from /metrics deltas (150 points per chart).
//
// Security: every value from a sandbox (URLs, hosts, reasons, executables, labels…) is put in
// the page with textContent (dom.js has no HTML path); the CSP forbids inline script and style.

import { get, token, onUnauthorized } from './api.js';
import { h, replace, showError } from './dom.js';
import * as stream from './stream.js';
import * as live from './live.js';
import * as sessions from './sessions.js';
import * as sandboxes from './sandboxes.js';
import * as policy from './policy.js';
import * as node from './node.js';

const ROUTES = {
  live: ['Live', live],
  sessions: ['Sessions', sessions],
  sandboxes: ['Sandboxes', sandboxes],
  policy: ['Policy', policy],
  node: ['Node', node],
};

const app = document.getElementById('app');
let unmount = null;
let shell = null;

/** `#/sessions/ses_x?a=b` → ['sessions', ['ses_x'], URLSearchParams]. */
function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  const name = ROUTES[parts[0]] ? parts[0] : 'live';
  return [name, parts.slice(1), new URLSearchParams(query || '')];
}

function showLogin(message) {
  unmount?.();
  unmount = null;
  shell?.unwatch();
  shell = null;
  stream.stop();
  node.stop();
  const input = h('input', { type: 'password', testid: 'login-token', autocomplete: 'off', placeholder: 'sluice_adm_…', required: true });
  const note = h('div', { testid: 'login-message', class: message ? 'error' : 'muted' },
    message || 'The admin token is in the daemon\'s state directory (admin.token). It is kept in this tab only.');
  const form = h('form', { class: 'login', testid: 'login-form', onsubmit: login },
    h('h1', null, 'Sluice'), h('label', { htmlFor: 'login-token' }, 'Admin token'), input,
    h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, 'Log in'), note);
  input.id = 'login-token';
  replace(app, form);
  input.focus();

  async function login(event) {
    event.preventDefault();
    const value = input.value.trim();
    input.value = '';
    if (!value) return;
    token.set(value);
    try {
      await get('/v1/sandboxes'); // any authenticated call: a 401 comes back to this form
    } catch (e) {
      if (e.status !== 401) { token.clear(); replace(note, e.message); note.className = 'error'; }
      return;
    }
    start();
  }
}

function buildShell() {
  const status = h('span', { class: 'stream-status', testid: 'stream-status' });
  const nodeName = h('span', { class: 'node-name muted', testid: 'header-node' });
  const links = Object.entries(ROUTES).map(([name, [label]]) => h('a', { href: `#/${name}`, testid: `nav-${name}` }, label));
  const view = h('main', { class: 'view', testid: 'view' });
  const banner = h('div', { class: 'banner' });
  replace(app,
    h('header', { class: 'top' }, h('span', { class: 'brand' }, 'Sluice'), h('nav', null, links), status, nodeName,
      h('button', { type: 'button', testid: 'logout', onclick: () => { token.clear(); showLogin('Logged out.'); } }, 'Log out')),
    banner, view);
  const update = () => {
    status.textContent = stream.feed.status === 'live' ? '● live' : `○ ${stream.feed.status}${stream.feed.detail ? `: ${stream.feed.detail}` : ''}`;
    status.dataset.state = stream.feed.status;
  };
  const unwatch = stream.watchStatus(update);
  update();
  get('/v1/node').then((n) => { nodeName.textContent = `${n.node || 'node'} · ${n.version}`; }, (e) => showError(banner, e));
  return { view, links, banner, unwatch };
}

function route() {
  if (!token.get()) { showLogin(); return; }
  if (!shell) return;
  const [name, rest, params] = parseHash();
  unmount?.();
  unmount = null;
  showError(shell.banner, null);
  for (const a of shell.links) a.classList.toggle('active', a.dataset.testid === `nav-${name}`);
  shell.view.replaceChildren();
  shell.view.className = `view view-${name}`;
  unmount = ROUTES[name][1].mount(shell.view, params, rest) || null;
}

function start() {
  shell = buildShell();
  stream.start();
  node.start();
  route();
}

onUnauthorized((message) => {
  token.clear();
  if (shell || !document.querySelector('[data-testid="login-form"]')) {
    showLogin(`The admin token was refused: ${message}`);
  } else {
    const note = document.querySelector('[data-testid="login-message"]');
    note.textContent = `The admin token was refused: ${message}`;
    note.className = 'error';
  }
});
window.addEventListener('hashchange', route);
if (token.get()) start(); else showLogin();
