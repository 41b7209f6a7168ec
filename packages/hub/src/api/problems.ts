import { type ErrorCode, ErrorCodes, HeraldError } from '@herald/core';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** An RFC 7807 problem document, with Herald's stable error code. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  /** The query parameter, path parameter or body field that is wrong. */
  parameter?: string;
}

/** The one map from error codes to HTTP statuses. */
const STATUS: Record<ErrorCode, number> = {
  INVALID_SENDER: 400,
  INVALID_TYPE: 400,
  INVALID_SELECTOR: 400,
  INVALID_EVENT: 400,
  INVALID_CONFIG: 400,
  INVALID_REQUEST: 400,
  SCHEMA_VIOLATION: 400,
  EVENT_TOO_LARGE: 413,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PUBLISH_FAILED: 502,
  CLOSED: 503,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  LIMIT_EXCEEDED: 429,
  // Raised only by the SDK, when a caller's AbortSignal fires; never by the hub.
  ABORTED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** An error for a bad request parameter, naming it. */
export function badParameter(parameter: string, detail: string): HeraldError {
  return new HeraldError(ErrorCodes.INVALID_REQUEST, detail, { details: { parameter } });
}

/** A 404 for the thing asked for. */
export function notFound(detail: string): HeraldError {
  return new HeraldError(ErrorCodes.NOT_FOUND, detail);
}

function send(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type('application/problem+json').send(problem);
}

function problemOf(code: string, status: number, detail: string, instance: string, parameter?: string): Problem {
  const p: Problem = {
    type: `https://herald.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    code,
    instance,
  };
  if (parameter !== undefined) p.parameter = parameter;
  return p;
}

/** Names the parameter a schema validation error is about: `selector`, `limit`, `data`, …. */
function validationParameter(err: FastifyError): string | undefined {
  const first = err.validation?.[0];
  if (!first) return undefined;
  // ajv names one property (additionalProperty, missingProperty); TypeBox a list (additionalProperties, requiredProperties).
  const params = (first.params ?? {}) as Record<string, unknown>;
  const list = (v: unknown) => (Array.isArray(v) ? v[0] : v);
  const extra = params.additionalProperty ?? params.missingProperty ?? list(params.additionalProperties) ?? list(params.requiredProperties);
  const path = String(first.instancePath ?? '')
    .replace(/^\//, '')
    .replaceAll('/', '.');
  if (typeof extra === 'string') return path ? `${path}.${extra}` : extra;
  return path || undefined;
}

const WHERE: Record<string, string> = { querystring: 'query parameter', params: 'path parameter', body: 'body field', headers: 'header' };

/** One line a person can act on: `unknown query parameter "colour"`, `body field "sender": must be string`. */
function validationDetail(err: FastifyError, parameter: string | undefined): string {
  const first = err.validation?.[0];
  const where = WHERE[err.validationContext ?? ''] ?? 'parameter';
  const name = parameter === undefined ? where : `${where} ${JSON.stringify(parameter)}`;
  const keyword = first?.keyword;
  const schemaPath = String(first?.schemaPath ?? '');
  if (keyword === 'additionalProperties' || (keyword === 'boolean' && schemaPath.endsWith('/additionalProperties')))
    return `unknown ${name}`;
  if (keyword === 'required') return `missing ${name}`;
  return `invalid ${name}: ${first?.message ?? err.message}`;
}

/**
 * Installs the one place where errors become HTTP answers: HeraldErrors by their code, schema
 * validation errors as 400 naming the parameter, unknown routes as 404, anything else as a 500
 * that does not leak internals (logged instead).
 */
export function installProblems(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const instance = request.url;
    if (err instanceof HeraldError) {
      const status = STATUS[err.code] ?? 500;
      const parameter = typeof err.details?.parameter === 'string' ? err.details.parameter : undefined;
      if (status >= 500) request.log.warn({ err }, 'request failed');
      // A refusal that ends by itself (a rate limit) says when to come back; a 401 which scheme it wants.
      const retryAfter = err.details?.retryAfterSeconds;
      if (typeof retryAfter === 'number') reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfter))));
      if (status === 401) reply.header('www-authenticate', 'Bearer realm="herald"');
      return send(reply, problemOf(err.code, status, err.message, instance, parameter));
    }
    if (err.validation) {
      const parameter = validationParameter(err);
      const detail = validationDetail(err, parameter);
      return send(reply, problemOf(ErrorCodes.INVALID_REQUEST, 400, detail, instance, parameter));
    }
    if (err.statusCode === 413 || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return send(reply, problemOf(ErrorCodes.EVENT_TOO_LARGE, 413, 'request body is too large', instance));
    }
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
      return send(reply, problemOf(ErrorCodes.INVALID_REQUEST, err.statusCode, err.message, instance));
    }
    request.log.error({ err }, 'unexpected error');
    return send(reply, problemOf('INTERNAL', 500, 'the hub failed to answer this request; see its log', instance));
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, problemOf(ErrorCodes.NOT_FOUND, 404, `no route ${request.method} ${request.url.split('?')[0]}`, request.url)),
  );
}
