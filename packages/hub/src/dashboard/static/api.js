// The page's one way to the hub: the normal REST API, same origin, with the user's token when one
// was given (kept in sessionStorage: gone when the tab closes). A 401 asks for a token.

const TOKEN_KEY = 'herald.token';

/** A problem document the hub answered with, as an Error. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
const listeners = new Set();

/** The auth state: `{ token, needed }`; `needed` once an API call answered 401. */
let authState = { token, needed: false };

function setAuth(next) {
  authState = next;
  for (const l of listeners) l(authState);
}

/** Calls `fn` with the auth state on every change; returns the unsubscribe. */
export function onAuth(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function auth() {
  return authState;
}

/** Keeps the token for this tab, and lets every page try again. */
export function setToken(value) {
  token = value.trim();
  if (token === '') sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
  setAuth({ token, needed: false });
}

function headers(json) {
  const h = {};
  if (token !== '') h.authorization = `Bearer ${token}`;
  if (json) h['content-type'] = 'application/json';
  return h;
}

/**
 * `method path [body]` against the API: the parsed JSON answer (null for 204). Throws an ApiError
 * with the problem's detail on any other status; a 401 also asks for a token.
 */
export async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) setAuth({ token, needed: true });
  if (res.status === 204) return null;
  const text = await res.text();
  let json;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    json = null;
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/** A query string of the given fields that are not empty. */
export function query(fields) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && String(v).trim() !== '') q.set(k, String(v).trim());
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

/**
 * Follows `GET /api/v1/stats/stream` until stopped: `onSnapshot(stats)` for every `stats` event,
 * `onStatus('live' | 'reconnecting' | 'unauthorized')` when the connection changes. Read with
 * fetch() and a stream reader rather than EventSource, which cannot send the Authorization header.
 * A broken stream is opened again after 2 s; a 401 waits for a token. Returns the stop function.
 */
export function streamStats(onSnapshot, onStatus) {
  const abort = new AbortController();
  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        const res = await fetch('/api/v1/stats/stream', { headers: headers(false), signal: abort.signal });
        if (res.status === 401) {
          onStatus('unauthorized');
          setAuth({ token, needed: true });
          return;
        }
        if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}`);
        onStatus('live');
        await readEvents(res.body, (event, data) => {
          if (event === 'stats') onSnapshot(JSON.parse(data));
        });
      } catch {
        if (abort.signal.aborted) return;
      }
      onStatus('reconnecting');
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  run();
  return () => abort.abort();
}

/** Reads Server-Sent Events from a byte stream: `onEvent(name, data)` per message; resolves at its end. */
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) onEvent(event, data.join('\n'));
      end = buffer.indexOf('\n\n');
    }
  }
}

/**
 * Whether a selector's patterns (`sender:type`, as the API lists them) match a flow: the same
 * rule as core's selector (a type of `*` is any type; in a dotted type `*` is one segment and `#`
 * zero or more). The page only uses it to mark flows as paused; the hub decides what is held.
 */
export function selectorMatches(patterns, sender, type) {
  return patterns.some((p) => {
    const colon = p.indexOf(':');
    const ps = p.slice(0, colon);
    const pt = p.slice(colon + 1);
    if (ps !== '*' && ps !== sender) return false;
    if (pt === '*') return true;
    const want = pt.split('.');
    const have = type.split('.');
    const go = (i, j) => {
      if (i === want.length) return j === have.length;
      if (want[i] === '#') return go(i + 1, j) || (j < have.length && go(i, j + 1));
      if (j === have.length) return false;
      return (want[i] === '*' || want[i] === have[j]) && go(i + 1, j + 1);
    };
    return go(0, 0);
  });
}

/** A rate in events per second, short. */
export function rate(n) {
  if (n === undefined || n === null) return '–';
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

/** How long ago an ISO time was, short ("3 s ago"). */
export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/** Seconds as "1 h 02 min", "4 min 05 s", "12 s". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${s} s`;
}
