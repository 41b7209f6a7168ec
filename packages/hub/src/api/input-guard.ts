import { ErrorCodes, HeraldError, jsonTextDeeperThan, LIMITS, preview, textProblem } from '@herald/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * The REST edge's rules for every request, before any route sees it (DESIGN.md §2 limits): a JSON
 * body nested at most LIMITS.jsonDepth deep (checked on the raw text, so nothing recursive ever
 * parses or serializes a deeper one), and every string — path and query parameters, body keys and
 * values — valid UTF-8 without NUL. A violation is a 400 problem naming the parameter or body field,
 * so no route, store or broker ever sees such a string. An event's `data` is the exception: it is the
 * body's bytes to Herald, and JSON.stringify writes a NUL or a lone surrogate in it as an escape;
 * so is a body kept as bytes (a binary-mode CloudEvent's data).
 */
export function installInputGuard(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, guardedJsonParser(app));
  app.addHook('preValidation', async (request: FastifyRequest) => {
    findBadText('path parameter', request.params);
    findBadText('query parameter', request.query);
    const body = request.body;
    if (typeof body === 'object' && body !== null && !Array.isArray(body) && 'data' in body) {
      const { data: _bytes, ...envelope } = body as Record<string, unknown>;
      findBadText('body field', envelope);
    } else if (!Buffer.isBuffer(body)) findBadText('body field', body);
  });
}

type JsonParser = (request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => void;

/** The JSON body parser of the REST edge: refuses a body nested deeper than LIMITS.jsonDepth before parsing it. */
export function guardedJsonParser(app: FastifyInstance): JsonParser {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  return (request, body, done) => {
    if (jsonTextDeeperThan(String(body)))
      return done(invalid('body', `the JSON body nests deeper than ${LIMITS.jsonDepth.value} levels`), undefined);
    return parseJson(request, String(body), done);
  };
}

function invalid(parameter: string, detail: string): HeraldError {
  return new HeraldError(ErrorCodes.INVALID_REQUEST, detail, { details: { parameter } });
}

/** Walks a parsed value without recursion and throws for the first string that is not acceptable text. */
function findBadText(where: string, value: unknown): void {
  if (value === undefined || value === null) return;
  const stack: [string, unknown][] = [['', value]];
  while (stack.length > 0) {
    const [path, v] = stack.pop() as [string, unknown];
    if (typeof v === 'string') {
      const problem = textProblem(v);
      if (problem !== undefined) throw invalid(path || where, `invalid ${where} ${preview(path)}: ${problem}`);
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push([`${path}[${i}]`, v[i]]);
    } else if (typeof v === 'object' && v !== null) {
      for (const [k, child] of Object.entries(v)) {
        const at = path === '' ? k : `${path}.${k}`;
        const problem = textProblem(k);
        if (problem !== undefined) throw invalid(path || where, `invalid ${where} name ${preview(k)}: ${problem}`);
        stack.push([at, child]);
      }
    }
  }
}
