import type { IncomingHttpHeaders } from 'node:http';
import {
  assertSender,
  bodyJson,
  ErrorCodes,
  type EventInit,
  HeraldError,
  isJsonContentType,
  isoTime,
  isUuid,
  preview,
  TRACEPARENT,
  TRACESTATE,
} from '@herald/core';
import Type from 'typebox';
import type { StoredEvent } from '../store/index.ts';
import { named } from './openapi.ts';
import { badParameter } from './problems.ts';

/**
 * CloudEvents 1.0 (https://github.com/cloudevents/spec) over the REST API, the mapping of
 * docs/cloudevents.md: structured mode (`application/cloudevents+json`, a batch as
 * `application/cloudevents-batch+json`) and binary mode (`ce-*` headers, the body is the data).
 */

export const CLOUDEVENT_MEDIA = 'application/cloudevents+json';
export const CLOUDEVENT_BATCH_MEDIA = 'application/cloudevents-batch+json';

/** A CloudEvents extension attribute name: lowercase letters and digits, at most 20. */
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;

/** Attributes the mapping gives a meaning of its own; any other is an extension, i.e. a header. */
const MAPPED = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'datacontenttype',
  'data',
  'data_base64',
  'subject',
  'heraldoffset',
  'heraldreplay',
  'heraldheaders',
  'correlationid',
  'causationid',
  TRACEPARENT,
  TRACESTATE,
]);
/** Set by the hub, ignored on publish (a CloudEvent read from Herald can be posted back as it is). */
const READ_ONLY = new Set(['heraldoffset', 'heraldreplay']);

const text = (description: string) => Type.Optional(Type.String({ description }));

/** A CloudEvent in structured mode: the response of the CloudEvents media types and a publish body. */
export const CloudEventSchema = named(
  'CloudEvent',
  Type.Object(
    {
      specversion: Type.String({ description: 'always "1.0"; any other is refused' }),
      id: Type.String({ description: 'the event id: a UUID (v7 preferred), the idempotency key' }),
      source: Type.String({ description: 'the sender: one segment [A-Za-z0-9_-]{1,64}' }),
      type: Type.String({ description: 'the type: dot-separated segments of [A-Za-z0-9_-], e.g. invoice.paid' }),
      time: text('RFC 3339; default now on publish; milliseconds are kept'),
      datacontenttype: text('the content type of the data; default application/json'),
      data: Type.Optional(
        Type.Unknown({ description: 'the data as JSON, when datacontenttype is JSON (a string for text types on publish)' }),
      ),
      data_base64: Type.Optional(Type.String({ contentEncoding: 'base64', description: 'the data as base64, for other content types' })),
      subject: text('the subject'),
      heraldoffset: Type.Optional(
        Type.String({ pattern: '^[0-9]+$', description: "the event's offset in the log (decimal); set by the hub, ignored on publish" }),
      ),
      correlationid: text('the correlation id'),
      causationid: text('the causation id'),
      traceparent: text('W3C trace context (distributed tracing extension): 00-<32 hex>-<16 hex>-<2 hex>'),
      tracestate: text('W3C tracestate, at most 512 bytes of printable ASCII; only with a traceparent'),
      heraldheaders: text('the event headers whose names are not extension names, as a JSON object of strings'),
    },
    {
      additionalProperties: Type.Union([Type.String(), Type.Number(), Type.Boolean()], {
        description: 'extensions: the event headers (names of a-z0-9, at most 20), string values',
      }),
      examples: [
        {
          specversion: '1.0',
          id: '0190b6e4-7c1a-7cc2-9b43-3f1d2e5a6b7c',
          source: 'billing',
          type: 'invoice.paid',
          time: '2026-01-31T12:00:00.000Z',
          datacontenttype: 'application/json',
          data: { invoice: 'INV-1042', amount: 12.5 },
          traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        },
      ],
    },
  ),
);

/** True when `accept` asks for `media` at least as much as for application/json (wildcards aside). */
export function prefers(accept: string | undefined, media: string): boolean {
  if (accept === undefined || !accept.toLowerCase().includes('cloudevents')) return false;
  let wanted = -1;
  let json = -1;
  for (const part of accept.split(',')) {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    if (!Number.isFinite(weight)) continue;
    if (type === media) wanted = Math.max(wanted, weight);
    else if (type === 'application/json') json = Math.max(json, weight);
  }
  return wanted > 0 && wanted >= json;
}

/** A stored event as a CloudEvent in structured mode. */
export function cloudEvent(e: StoredEvent & { readonly replay?: string | undefined }): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    specversion: '1.0',
    id: e.id,
    source: e.sender,
    type: e.type,
    time: isoTime(e.time),
    datacontenttype: e.contentType,
  };
  if (e.data.length > 0) {
    const body = bodyJson(e.contentType, e.data);
    if ('data' in body) ce.data = body.data;
    else ce.data_base64 = body.dataBase64;
  }
  if (e.subject !== undefined) ce.subject = e.subject;
  ce.heraldoffset = e.offset.toString();
  if (e.replay !== undefined) ce.heraldreplay = e.replay;
  if (e.correlationId !== undefined) ce.correlationid = e.correlationId;
  if (e.causationId !== undefined) ce.causationid = e.causationId;
  if (e.traceparent !== undefined) ce.traceparent = e.traceparent;
  if (e.tracestate !== undefined) ce.tracestate = e.tracestate;
  let others: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(e.headers)) {
    if (EXTENSION_NAME.test(name) && !MAPPED.has(name)) ce[name] = value;
    else {
      others ??= {};
      others[name] = value;
    }
  }
  if (others !== undefined) ce.heraldheaders = JSON.stringify(others);
  return ce;
}

/** Attribute values as a CloudEvent carries them, read into an event; `data` and its content type given apart. */
function eventInit(
  attributes: Record<string, unknown>,
  data: Buffer,
  contentType: string,
  parseTime: (v: string) => number | undefined,
): EventInit {
  const str = (name: string, required = false): string | undefined => {
    const v = attributes[name];
    if (v === undefined) {
      if (required) throw badParameter(name, `a CloudEvent needs the attribute ${name}`);
      return undefined;
    }
    if (typeof v !== 'string') throw badParameter(name, `CloudEvents attribute ${name} must be a string, got ${typeof v}`);
    return v;
  };
  const specversion = str('specversion', true);
  if (specversion !== '1.0')
    throw badParameter('specversion', `specversion ${preview(specversion)} is not supported: Herald speaks CloudEvents 1.0`);
  const id = str('id', true) as string;
  if (!isUuid(id))
    throw badParameter(
      'id',
      `CloudEvents id ${preview(id)} is not a UUID: Herald event ids are UUIDs (the idempotency key); use a UUID, v7 preferred`,
    );
  const source = str('source', true) as string;
  try {
    assertSender(source);
  } catch (err) {
    throw new HeraldError(
      ErrorCodes.INVALID_SENDER,
      `CloudEvents source ${preview(source)} is not a Herald sender: expected one segment of 1-64 characters of A-Z a-z 0-9 _ - (e.g. billing)`,
      { cause: err, details: { parameter: 'source' } },
    );
  }
  const time = str('time');
  const headers: Record<string, string> = {};
  const heraldHeaders = str('heraldheaders');
  if (heraldHeaders !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(heraldHeaders);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string'))
      throw badParameter('heraldheaders', 'heraldheaders must be a JSON object of string values');
    Object.assign(headers, parsed);
  }
  for (const [name, value] of Object.entries(attributes)) {
    if (MAPPED.has(name) || READ_ONLY.has(name)) continue;
    if (!EXTENSION_NAME.test(name))
      throw badParameter(name, `CloudEvents attribute ${preview(name)} is not an extension name: lowercase letters and digits, at most 20`);
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
      throw badParameter(name, `CloudEvents extension ${name} must be a string, a number or a boolean`);
    if (name in headers) throw badParameter(name, `header ${name} is given both as an extension and in heraldheaders`);
    headers[name] = String(value);
  }
  return {
    id,
    sender: source,
    type: str('type', true) as string,
    time: time === undefined ? undefined : parseTime(time),
    data,
    contentType,
    subject: str('subject'),
    correlationId: str('correlationid'),
    causationId: str('causationid'),
    traceparent: str(TRACEPARENT),
    tracestate: str(TRACESTATE),
    headers,
  };
}

/** A structured-mode CloudEvent (the parsed `application/cloudevents+json` body) as an event to publish. */
export function fromStructured(body: Record<string, unknown>, parseTime: (v: string) => number | undefined): EventInit {
  const contentType = body.datacontenttype ?? 'application/json';
  if (typeof contentType !== 'string') throw badParameter('datacontenttype', 'datacontenttype must be a string');
  const { data, data_base64: base64, ...attributes } = body;
  let bytes: Buffer;
  if (data !== undefined && base64 !== undefined) throw badParameter('data_base64', 'give either data or data_base64, not both');
  if (base64 !== undefined) {
    if (typeof base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64))
      throw badParameter('data_base64', 'data_base64 is not base64');
    bytes = Buffer.from(base64, 'base64');
  } else if (data === undefined) bytes = Buffer.alloc(0);
  else if (isJsonContentType(contentType)) bytes = Buffer.from(JSON.stringify(data));
  else if (typeof data === 'string') bytes = Buffer.from(data, 'utf8');
  else throw badParameter('data', `with datacontenttype ${contentType}, data must be a string (or send data_base64)`);
  return eventInit(attributes, bytes, contentType, parseTime);
}

/** True when a request is a binary-mode CloudEvent: it has a `ce-specversion` header. */
export function isBinaryCloudEvent(headers: IncomingHttpHeaders): boolean {
  return headers['ce-specversion'] !== undefined;
}

/**
 * A binary-mode CloudEvent as an event to publish: attributes from the `ce-*` headers
 * (percent-decoded, as the HTTP binding writes them), the data from the body, its content type
 * from Content-Type (default application/json).
 */
export function fromBinary(headers: IncomingHttpHeaders, body: Buffer, parseTime: (v: string) => number | undefined): EventInit {
  const attributes: Record<string, string> = {};
  for (const [header, value] of Object.entries(headers)) {
    if (!header.startsWith('ce-') || value === undefined) continue;
    const name = header.slice(3);
    if (name === 'datacontenttype')
      throw badParameter(header, 'in binary mode the data content type is the Content-Type header, not ce-datacontenttype');
    if (name === 'data' || name === 'data_base64') throw badParameter(header, 'in binary mode the data is the request body');
    const raw = Array.isArray(value) ? value.join(',') : value;
    try {
      attributes[name] = raw.includes('%') ? decodeURIComponent(raw) : raw;
    } catch {
      throw badParameter(header, `header ${header} is not valid percent-encoded UTF-8`);
    }
  }
  return eventInit(attributes, body, headers['content-type'] ?? 'application/json', parseTime);
}
