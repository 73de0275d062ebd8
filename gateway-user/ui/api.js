// The control API client. The admin token lives in sessionStorage only (gone with the tab;
// never in a URL or a cookie) and goes out as `Authorization: Bearer`, which is also what
// makes the API CSRF-safe: a cross-site page cannot set that header.

const KEY = 'sluice.admin-token';
let unauthorized = () => {};

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** Called with the server's message when a call is answered 401 (the app shows the login). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** A failed call: the HTTP status (0: no answer) and the server's `error` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The request headers with the token; a missing token is a 401 without a request. */
export function authHeaders(extra) {
  const value = token.get();
  if (!value) {
    unauthorized('Log in with the admin token.');
    throw new ApiError(401, 'not logged in');
  }
  return { Authorization: `Bearer ${value}`, ...extra };
}

/** Calls the API; resolves to parsed JSON (or text, or a Blob with `as: 'blob'`). */
export async function call(method, path, { body, as, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { 'Content-Type': 'application/json' });
  let res;
  try {
    res = await fetch(path, {
      method, headers, signal, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: no answer from the daemon (${e.message})`);
  }
  await check(res);
  if (as === 'blob') return res.blob();
  if (as === 'text') return res.text();
  return res.json();
}

/** Throws an ApiError for a non-2xx answer (after telling the app about a 401). */
export async function check(res) {
  if (res.ok) return;
  const message = await errorText(res);
  if (res.status === 401) unauthorized(message);
  throw new ApiError(res.status, message);
}

async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === 'string') return parsed.error;
  } catch { /* not JSON: use the text */ }
  return text.trim() || `${res.status} ${res.statusText}`;
}

export const get = (path, opts) => call('GET', path, opts);
export const post = (path, body) => call('POST', path, { body });
export const put = (path, body) => call('PUT', path, { body });

/** `/v1/sessions/{id}…` with the id escaped. */
export const sessionPath = (id, tail = '') => `/v1/sessions/${encodeURIComponent(id)}${tail}`;
