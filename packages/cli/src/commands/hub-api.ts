import type { Hub } from './flags.ts';

/**
 * Calls the hub's REST API, with `Authorization: Bearer <token>` when a token is given, and
 * returns the parsed JSON body (undefined for 204). Throws an Error whose message is one line: the
 * problem document's title and detail, or why the hub could not be reached and how to point at it.
 */
export async function callHub<T>(hub: Hub, method: string, path: string, body?: unknown): Promise<T> {
  const base = hub.url;
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (hub.token !== undefined) headers.authorization = `Bearer ${hub.token}`;
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
  } catch (err) {
    // fetch hides the socket error in `cause` (an AggregateError when several addresses were tried).
    const c = (err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
    const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (err instanceof Error ? err.message : String(err));
    throw new Error(`cannot reach the hub at ${base} (${cause}): start it with \`herald hub\`, or pass --hub-url or set HERALD_HUB_URL`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    // Not the hub, or a proxy's error page: say what answered.
    throw new Error(`${method} ${path}: ${res.status} ${res.statusText}: ${base} answered something that is not JSON; is it a Herald hub?`);
  }
  if (!res.ok) {
    // A problem document (RFC 7807) becomes one line: what was asked, the status and code, the detail.
    const p = (json ?? {}) as { title?: string; detail?: string; code?: string };
    const what = `${method} /api/v1${path.split('?')[0]}`;
    throw new Error(`the hub refused ${what}: ${res.status}${p.code ? ` ${p.code}` : ''}: ${p.detail ?? p.title ?? res.statusText}`);
  }
  return json as T;
}
