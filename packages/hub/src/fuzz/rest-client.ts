import { Agent, request } from 'node:http';
import { RawJson } from './boundary.ts';

// A raw HTTP client for the REST fuzzer: node:http sends the path as given (fetch would resolve
// `..` and refuse some bytes), percent-encodes lone surrogates as the bytes a careless client sends,
// and gives up on long polls and event streams once they have answered or held on for a while.
// One connection per request: after a refused request (431, 413) the server drops the connection,
// and a reused one would make the next, innocent request fail with a reset.

/** What a request got: a status and the start of the body, or why there was none. */
export type HttpAnswer =
  | { readonly status: number; readonly contentType: string; readonly text: string }
  | { readonly error: 'timeout' | 'closed' | 'unsendable'; readonly message: string };

/** Body bytes kept for the report. */
const KEEP_BYTES = 4096;

/** UTF-8 of one code point, lone surrogates included (as three bytes, which no decoder accepts). */
function utf8(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 63)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
}

/** Percent-encodes everything but unreserved characters; unlike encodeURIComponent it does not throw on a lone surrogate. */
export function pct(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string;
    if (/[A-Za-z0-9\-._~]/.test(ch)) {
      out += ch;
      continue;
    }
    let cp = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (cp >= 0xd800 && cp <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
      i++;
    }
    for (const b of utf8(cp)) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A path or query value as text: strings as they are, RawJson as its text, anything else as JSON. */
export function paramText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof RawJson) return v.text;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '';
}

/** An HTTP client for one hub. */
export function restClient(base: string) {
  const url = new URL(base);
  const agent = new Agent({ keepAlive: false });
  return {
    /**
     * Sends one request. `timeoutMs` ends it when no answer (or, with `stream`, no status) came in
     * time. With `stream`, the answer is taken at the status line and the connection is dropped:
     * the body of an event stream never ends. Never rejects.
     */
    send(
      method: string,
      path: string,
      headers: Record<string, string>,
      body: Buffer | undefined,
      timeoutMs: number,
      stream = false,
    ): Promise<HttpAnswer> {
      return new Promise<HttpAnswer>((resolve) => {
        let settled = false;
        let timer: NodeJS.Timeout | undefined;
        const done = (a: HttpAnswer) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(a);
        };
        let req: ReturnType<typeof request>;
        try {
          req = request({
            host: url.hostname,
            port: url.port,
            method,
            path,
            agent,
            headers: body ? { ...headers, 'content-length': String(body.length) } : headers,
          });
        } catch (err) {
          done({ error: 'unsendable', message: (err as Error).message });
          return;
        }
        timer = setTimeout(() => {
          done({ error: 'timeout', message: `no answer within ${timeoutMs} ms` });
          req.destroy();
        }, timeoutMs);
        req.on('error', (err) => done({ error: 'closed', message: err.message }));
        req.on('response', (res) => {
          const contentType = String(res.headers['content-type'] ?? '');
          if (stream && contentType.startsWith('text/event-stream')) {
            done({ status: res.statusCode ?? 0, contentType, text: '' });
            res.destroy();
            return;
          }
          const chunks: Buffer[] = [];
          let kept = 0;
          res.on('data', (c: Buffer) => {
            if (kept < KEEP_BYTES) {
              chunks.push(c);
              kept += c.length;
            }
          });
          res.on('end', () =>
            done({ status: res.statusCode ?? 0, contentType, text: Buffer.concat(chunks).subarray(0, KEEP_BYTES).toString() }),
          );
          res.on('error', (err) => done({ error: 'closed', message: err.message }));
        });
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
