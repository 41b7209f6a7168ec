/** The hub's REST API when neither `--hub` nor HERALD_HUB_URL says otherwise. */
export const DEFAULT_HUB_URL = 'http://127.0.0.1:8080';

/** The hub URL: the flag, else HERALD_HUB_URL, else http://127.0.0.1:$HERALD_HTTP_PORT, else http://127.0.0.1:8080. */
export function hubUrl(flag?: string): string {
  const port = process.env.HERALD_HTTP_PORT;
  const local = port ? `http://127.0.0.1:${port}` : DEFAULT_HUB_URL;
  // Tolerate a URL given with the API prefix: http://hub:8080/api/v1 means http://hub:8080.
  return (flag ?? process.env.HERALD_HUB_URL ?? local).replace(/\/+$/, '').replace(/\/api\/v1$/, '');
}

/**
 * Calls the hub's REST API and returns the parsed JSON body (undefined for 204). Throws an Error
 * whose message is one line: the problem document's title and detail, or why the hub could not be
 * reached and how to point at it.
 */
export async function callHub<T>(base: string, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
  } catch (err) {
    // fetch hides the socket error in `cause` (an AggregateError when several addresses were tried).
    const c = (err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
    const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (err instanceof Error ? err.message : String(err));
    throw new Error(`cannot reach the hub at ${base} (${cause}): start it with \`herald hub\` or set HERALD_HUB_URL`);
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

/**
 * Parses a duration: `90` or `90s` (seconds), `500ms`, `5m`, `2h`, `1d`, or combinations like
 * `1h30m`. Returns seconds. Throws naming the flag on anything else.
 */
export function parseDuration(text: string, flag = '--ttl'): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let pos = 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: the sticky regex walks the string
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * (units[m[2] as string] as number);
    pos = re.lastIndex;
  }
  if (pos !== t.length || t === '' || total <= 0)
    throw new Error(`invalid ${flag} ${JSON.stringify(text)}: expected a duration such as 30s, 5m, 2h or 1h30m`);
  return total;
}
