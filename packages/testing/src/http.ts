/** One answer of the hub's REST API as tests read it: the status, the text, and the text as JSON. */
export interface JsonAnswer {
  readonly status: number;
  readonly text: string;
  json(): Record<string, unknown>;
}

/**
 * A client of a hub's REST API at `base` (`http://127.0.0.1:<port>`) for tests: `call(method, path,
 * body?)` sends the body as JSON, with `Authorization: Bearer <token>` when a token is given, and
 * reads the whole answer.
 */
export function restClient(base: string, token?: string): (method: string, path: string, body?: unknown) => Promise<JsonAnswer> {
  return async (method, path, body) => {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
}
