// Sandboxes: the enrolled ones, what the stream tells about their processes, their traffic.

import { get } from './api.js';
import { h, kv, replace, showError } from './dom.js';
import { feed, subscribe, who } from './stream.js';
import { RecordTable, recordDetail } from './live.js';

/** What the held records say about a sandbox: last pid/uid, executables seen. */
function seen(id) {
  const out = { pid: undefined, uid: undefined, executables: new Set() };
  for (const { r } of feed.ring.toArray()) {
    const w = who(r);
    if (String(w.sandbox) !== id) continue;
    if (w.pid !== undefined) out.pid = w.pid;
    if (w.uid !== undefined) out.uid = w.uid;
    if (r.executable) out.executables.add(r.executable);
  }
  return out;
}

/** Mounts `#/sandboxes` or `#/sandboxes/<id>` (the latter with its recent traffic). */
export function mount(root, params, rest) {
  const selected = rest[0] ?? null;
  const err = h('div');
  const rows = h('tbody');
  const panel = h('div');
  replace(root, h('section', { class: 'sandboxes' },
    h('h3', null, 'Enrolled sandboxes ', h('button', { type: 'button', testid: 'sandboxes-refresh', onclick: load }, 'Refresh')),
    err,
    h('table', { class: 'list', testid: 'sandboxes-table' },
      h('thead', null, h('tr', null, ['id', 'session', 'cgroup', 'pid (last seen)', 'executable', 'netns', 'container', 'proxy'].map((t) => h('th', null, t)))),
      rows),
    panel));

  async function load() {
    showError(err, null);
    let list;
    try {
      list = await get('/v1/sandboxes');
    } catch (e) {
      showError(err, e);
      return;
    }
    replace(rows, list.map((s) => {
      const id = String(s.id);
      const extra = seen(id);
      const pid = s.pid ?? extra.pid;
      const exe = s.executable ?? [...extra.executables].join(', ');
      return h('tr', { testid: 'sandbox-row', class: id === selected ? 'selected' : '' },
        h('td', { class: 'num' }, h('a', { href: `#/sandboxes/${encodeURIComponent(id)}` }, id)),
        h('td', { class: 'mono' }, s.session ? h('a', { href: `#/sessions/${encodeURIComponent(s.session)}` }, s.session) : '—'),
        h('td', { class: 'mono', title: `cgroup id ${s.cgroup_id}` }, s.cgroup ?? ''),
        h('td', { class: 'num' }, pid ?? ''),
        h('td', { class: 'mono' }, exe ?? ''),
        h('td', { class: 'mono' }, s.netns ?? ''),
        h('td', { class: 'mono' }, s.container ?? ''),
        h('td', { class: 'mono' }, s.upstream_proxy ?? ''));
    }));
    if (selected) {
      const s = list.find((x) => String(x.id) === selected);
      const known = new Set(['id', 'session', 'cgroup', 'cgroup_id', 'netns', 'owned', 'upstream_proxy', 'container']);
      replace(info, s
        ? kv([['cgroup id', s.cgroup_id], ['created by Sluice', s.owned ? 'yes' : 'no (enrolled)'],
          ...Object.entries(s).filter(([k]) => !known.has(k)).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)])])
        : h('p', { class: 'muted' }, `Sandbox ${selected} is not enrolled (any more).`));
    }
  }

  let cleanup = () => {};
  const info = h('div');
  if (selected) {
    const detail = h('div', { class: 'detail-inline' });
    const table = new RecordTable((entry) => replace(detail, recordDetail(entry.r)), 'sandbox-traffic-row');
    const mine = (e) => String(who(e.r).sandbox) === selected;
    replace(panel,
      h('h3', null, `Sandbox ${selected}`), info,
      h('h4', null, 'Recent traffic (from the live stream) ', h('a', { href: `#/live?sandbox=${encodeURIComponent(selected)}` }, 'open in Live')),
      h('div', { testid: 'sandbox-traffic' }, table.el), detail);
    table.show(feed.ring.toArray().filter(mine));
    cleanup = subscribe((batch) => table.prepend(batch.filter(mine)));
  }
  load();
  return () => cleanup();
}
