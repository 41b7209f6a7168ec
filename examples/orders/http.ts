// A few lines of HTTP for the example's two small APIs: JSON in and out, errors as RFC 7807
// problem documents, bodies bounded. node:http only, so the example needs no web framework.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An error the client caused, answered with its status and detail. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
  ) {
    super(detail);
  }
}

export type Route = (req: IncomingMessage, path: string[]) => Promise<{ status: number; body: unknown } | undefined>;

const MAX_BODY_BYTES = 64 * 1024;

/** Reads a JSON object body of at most 64 KiB; anything else is a 4xx problem. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new HttpProblem(415, 'Unsupported Media Type', 'send content-type: application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpProblem(413, 'Payload Too Large', `the body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpProblem(400, 'Bad Request', 'the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpProblem(400, 'Bad Request', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

/** A decoded path segment; a malformed escape (`%zz`) is the client's error, not a 500. */
function segment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpProblem(400, 'Bad Request', 'the path holds a malformed %-escape');
  }
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export interface JsonServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `routes` on 127.0.0.1:`port` (0 = any free port). A route answers undefined when the path
 * is not its own; a thrown HttpProblem becomes its status; anything else is a 500 that is logged
 * and never takes the server down.
 */
export async function serveJson(port: number, routes: readonly Route[], log: (line: string) => void): Promise<JsonServer> {
  const server: Server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname.split('/').filter(Boolean).map(segment);
      for (const route of routes) {
        const answer = await route(req, path);
        if (answer) return send(res, answer.status, answer.body);
      }
      throw new HttpProblem(404, 'Not Found', `no route ${req.method} ${url.pathname}`);
    } catch (err) {
      const problem = err instanceof HttpProblem ? err : new HttpProblem(500, 'Internal Server Error', 'the request failed; see the log');
      if (!(err instanceof HttpProblem)) log(`${req.method} ${req.url}: ${err instanceof Error ? err.message : String(err)}`);
      if (res.headersSent) return void res.destroy();
      send(
        res,
        problem.status,
        { type: 'about:blank', title: problem.title, status: problem.status, detail: problem.message },
        'application/problem+json',
      );
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Logs a retried failure once, not at every attempt, until another one comes. */
export function repeatsOnce(log: (line: string) => void): (line: string) => void {
  let last = '';
  return (line) => {
    if (line !== last) log(line);
    last = line;
  };
}
