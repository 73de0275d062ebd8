// DOM helpers. Every value is put in the page as text (createTextNode / textContent) or as a
// property; nothing here parses HTML, so a sandbox-controlled string cannot become markup.

const FORBIDDEN = new Set(['innerHTML', 'outerHTML', 'style', 'srcdoc']);
/** What an href or src may be: an in-app route (`#/…`) or an object URL this page made. */
const SAFE_URL = /^(#|blob:)/;

/** Builds an element: props are `class`, `testid`, `on<event>` handlers, properties, attributes. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** Builds an SVG element with attributes. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.has(key)) throw new Error(`dom: ${key} is not allowed`);
    if (key === 'class') el.className = value;
    else if (key === 'testid') el.dataset.testid = value;
    else if (key.startsWith('on')) {
      // Handlers are functions of this code, never text (which would be script).
      if (typeof value !== 'function') throw new Error(`dom: ${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if ((key === 'href' || key === 'src') && !SAFE_URL.test(String(value))) {
      throw new Error(`dom: ${key} ${JSON.stringify(String(value))} is not an in-app or blob URL`);
    } else if (key in el && typeof el[key] !== 'object') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

/** Appends children: strings and numbers as text nodes, nodes as they are, arrays flattened. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A key/value list; `rows` are [label, value, testid?]; empty values are skipped. */
export function kv(rows, testid) {
  const dl = h('dl', { class: 'kv', testid });
  for (const [label, value, id] of rows) {
    if (value === undefined || value === null || value === '') continue;
    dl.append(h('dt', null, label), h('dd', { testid: id }, value));
  }
  return dl;
}

/** Any JSON value as a nested key/value tree (the node's configuration summary). */
export function tree(value) {
  if (value === null || typeof value !== 'object') {
    return h('span', { class: 'mono' }, value === null ? 'null' : JSON.stringify(value));
  }
  if (Array.isArray(value) && value.every((v) => v === null || typeof v !== 'object')) {
    return h('span', { class: 'mono' }, value.length ? value.map(String).join(', ') : '[]');
  }
  const dl = h('dl', { class: 'kv tree' });
  for (const [k, v] of Object.entries(value)) dl.append(h('dt', null, k), h('dd', null, tree(v)));
  return dl;
}

export const fmt = {
  bytes(n) {
    if (typeof n !== 'number') return '';
    if (n < 1024) return `${n} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
    return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
  },
  ms(n) {
    if (typeof n !== 'number') return '';
    return n < 1000 ? `${n.toFixed(n < 10 ? 1 : 0)} ms` : `${(n / 1000).toFixed(2)} s`;
  },
  /** `HH:MM:SS.mmm` of an RFC 3339 time (UTC, as the record has it). */
  clock(t) {
    // RFC 3339 times drop trailing zeros of the fraction (`…18.43Z`): pad to milliseconds.
    const m = typeof t === 'string' ? /T(\d\d:\d\d:\d\d)(?:\.(\d+))?/.exec(t) : null;
    return m ? `${m[1]}.${(m[2] ?? '').padEnd(3, '0').slice(0, 3)}` : String(t ?? '');
  },
  /** Unix seconds as `YYYY-MM-DD HH:MM:SSZ`. */
  unix(s) {
    return typeof s === 'number' ? new Date(s * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '';
  },
  /** Unix seconds relative to now: `in 59m`, `3h ago`. */
  relative(s) {
    if (typeof s !== 'number') return '';
    const d = Math.round(s - Date.now() / 1000);
    const a = Math.abs(d);
    const text = a < 90 ? `${a}s` : a < 5400 ? `${Math.round(a / 60)}m` : a < 172800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
    return d >= 0 ? `in ${text}` : `${text} ago`;
  },
};

/** Splits a list typed as `a, b c` into items. */
export function words(text) {
  return String(text || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** Asks in a modal <dialog> (never window.confirm); resolves true when confirmed. `question`
 * is text or an element. */
export function confirmDialog(question, action) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', testid: 'confirm-dialog' });
    const done = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    append(dialog, [
      question instanceof Node ? question : h('p', null, question),
      h('div', { class: 'actions' },
        h('button', { type: 'button', testid: 'confirm-cancel', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', testid: 'confirm-ok', onclick: () => done(true) }, action)),
    ]);
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** An error (or any failure) shown as text in `el`. */
export function showError(el, error) {
  replace(el, error ? h('div', { class: 'error', testid: 'error' }, error.message || String(error)) : null);
}
