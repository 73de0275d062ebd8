// The audit stream (`GET /v1/audit/stream`), read with fetch() because EventSource cannot
// send the Authorization header. One connection for the whole app; records go into a ring of
// the newest CAP and are handed to subscribers once per animation frame.

import { authHeaders, check } from './api.js';

/** Most records the page holds (the ring) and the most rows a table shows. */
export const CAP = 2000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 15000;
/** Heartbeats come every 15 s; this long without a byte means the connection is dead. */
const SILENCE_MS = 40000;

/** Server-sent events framing: lines end in CRLF, LF or CR; a blank line ends an event. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.data = [];
    this.event = '';
    this.id = null;
  }

  /** Feeds decoded text; events may be split anywhere across calls. */
  push(text) {
    const buf = this.buf + text;
    let start = 0;
    for (;;) {
      const lf = buf.indexOf('\n', start);
      const cr = buf.indexOf('\r', start);
      const end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
      if (end < 0) break;
      let next = end + 1;
      if (buf[end] === '\r') {
        if (end + 1 === buf.length) break; // a LF may follow in the next chunk
        if (buf[end + 1] === '\n') next += 1;
      }
      this.line(buf.slice(start, end));
      start = next;
    }
    this.buf = buf.slice(start);
  }

  line(line) {
    if (line === '') {
      if (this.data.length) this.onEvent({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
      this.data = [];
      this.event = '';
      return;
    }
    if (line[0] === ':') return; // comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'event') this.event = value;
  }
}

/** A fixed-size ring: push is O(1), the oldest entry falls out. */
export class Ring {
  constructor(cap) {
    this.cap = cap;
    this.items = new Array(cap);
    this.start = 0;
    this.length = 0;
  }

  /** Adds an entry; true when an old one was evicted. */
  push(item) {
    if (this.length < this.cap) {
      this.items[(this.start + this.length) % this.cap] = item;
      this.length += 1;
      return false;
    }
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.cap;
    return true;
  }

  /** Entries oldest first. */
  toArray() {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i += 1) out[i] = this.items[(this.start + i) % this.cap];
    return out;
  }
}

/** The session and sandbox of a record (flattened into it by the daemon; `who` tolerated). */
export function who(r) {
  return r.who && typeof r.who === 'object' ? r.who : r;
}

/** Whether a record is a refusal or a would-be refusal. */
export function refused(r) {
  return r.decision === 'deny' || (r.would_refuse !== undefined && r.would_refuse !== null);
}

/** The shared feed: ring, counters, status, subscribers. */
export const feed = {
  ring: new Ring(CAP),
  received: 0,
  evicted: 0,
  status: 'stopped',
  detail: '',
  lastId: null,
};

/** Records seen per kind of interest, for rates the metrics do not export (never reset). */
export const tally = { requests: 0, refusals: 0 };

const subscribers = new Set();
const statusWatchers = new Set();
let pending = [];
let frame = 0;
let controller = null;
let seq = 0;

/** Calls fn(entries) once per frame with the new entries, oldest first; returns unsubscribe. */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

/** Calls fn() when the connection status changes; returns unsubscribe. */
export function watchStatus(fn) {
  statusWatchers.add(fn);
  return () => statusWatchers.delete(fn);
}

/** Starts reading the stream (idempotent). */
export function start() {
  if (controller) return;
  controller = new AbortController();
  run(controller.signal);
}

/** Stops reading and forgets every record (logout). */
export function stop() {
  controller?.abort();
  controller = null;
  feed.ring = new Ring(CAP);
  feed.received = 0;
  feed.evicted = 0;
  feed.lastId = null;
  pending = [];
  setStatus('stopped', '');
}

function setStatus(status, detail) {
  feed.status = status;
  feed.detail = detail;
  for (const fn of statusWatchers) fn();
}

function accept(event) {
  if (event.id !== null) feed.lastId = event.id;
  let record;
  try {
    record = JSON.parse(event.data);
  } catch {
    return; // not a record; skip it as the server's own reader does
  }
  if (!record || typeof record !== 'object') return;
  const entry = { seq: (seq += 1), id: event.id, r: record };
  feed.received += 1;
  if (record.kind === 'request') tally.requests += 1;
  if (record.decision === 'deny') tally.refusals += 1;
  if (feed.ring.push(entry)) feed.evicted += 1;
  pending.push(entry);
  // A hidden tab gets no frames: keep only what the ring could hold anyway.
  if (pending.length > 2 * CAP) pending = pending.slice(-CAP);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  const batch = pending.length > CAP ? pending.slice(-CAP) : pending;
  pending = [];
  for (const fn of subscribers) {
    try {
      fn(batch);
    } catch (e) {
      console.warn('stream subscriber failed', e);
    }
  }
}

async function run(signal) {
  let backoff = BACKOFF_MIN;
  while (!signal.aborted) {
    const attempt = new AbortController();
    const abort = () => attempt.abort();
    signal.addEventListener('abort', abort);
    let timer = 0;
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(() => attempt.abort(), SILENCE_MS);
    };
    try {
      setStatus('connecting', '');
      const query = feed.lastId === null ? '' : `?after=${encodeURIComponent(feed.lastId)}`;
      quiet();
      const res = await fetch(`/v1/audit/stream${query}`, {
        headers: authHeaders({ Accept: 'text/event-stream' }),
        signal: attempt.signal, cache: 'no-store', credentials: 'omit',
      });
      if (res.status === 401) {
        await check(res); // tells the app, which stops the feed
        return;
      }
      await check(res);
      setStatus('live', '');
      const parser = new SseParser((event) => {
        backoff = BACKOFF_MIN;
        accept(event);
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        quiet();
        parser.push(value);
      }
      throw new Error('the daemon closed the stream');
    } catch (e) {
      if (signal.aborted || e.status === 401) return;
      // A cursor the log no longer has (rotated, truncated): start again from its end rather
      // than asking for it forever.
      if (e.status === 400 && feed.lastId !== null) {
        feed.lastId = null;
      }
      const why = attempt.signal.aborted ? 'no heartbeat for 40 s' : e.message;
      setStatus('reconnecting', `${why}; retrying in ${(backoff / 1000).toFixed(1)} s`);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    }
  }
}
