import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { finished as streamFinished } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  DEFAULT_MAX_EVENT_BYTES,
  GRPC_ERROR_CODE_KEY,
  GRPC_SERVICE,
  PROTO_LOADER_OPTIONS,
  PROTO_PATH,
  uuidv7,
  type WirePublishAck,
  type WirePublishStreamResponse,
} from '@herald/core';
import { MAX_U64, PUBLISH_STREAM_LIMITS } from '../grpc/publish-stream.ts';
import { grpcServerOptions } from '../grpc/server.ts';
import { bytesOf } from './boundary.ts';
import { type Accepted, AcceptedEvents, type FuzzHub, fuzzSettings, startFuzzHub } from './fuzz-kit.ts';
import { fuzzEdge, type Outcome } from './fuzz-runner.ts';
import { garbled } from './grpc-inputs.ts';
import {
  type EventFields,
  type EventInput,
  eventsOf,
  floodOf,
  publishStreamInput,
  rawEventBytes,
  type StreamInput,
  streamRequestBytes,
} from './publish-stream-inputs.ts';

const base = fuzzSettings();
/** Streams, a tenth of HERALD_FUZZ_RUNS: each carries about ten events, some a thousand or more, and a probe stream follows each. */
const settings = { ...base, runs: Math.max(1, Math.ceil(base.runs / 10)) };
/** A stream's status after the client half-closed that has not come by then is a hang (floods get more, by size). */
const ANSWER_MS = 10_000;
/** How long the client's writes may make no progress before a slow reader starts reading again. */
const STALL_MS = 300;
/** Statuses that are never an answer to bad input: the hub failed. */
const BROKEN = new Set<number>([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DEADLINE_EXCEEDED]);
/** The valid events of one stream read back by id after the check (the first ones); every other kind answered stored is read back. */
const READ_BACK = 2;
/** The largest request grpc-js takes before it is parsed; a larger one ends the stream RESOURCE_EXHAUSTED. */
const MAX_REQUEST_BYTES = grpcServerOptions(DEFAULT_MAX_EVENT_BYTES)['grpc.max_receive_message_length'] as number;

const identity = (b: Buffer) => b;
const statusName = (code: number) => grpc.status[code] ?? String(code);
const heraldCode = (md: grpc.Metadata | undefined) => String(md?.get(GRPC_ERROR_CODE_KEY)[0] ?? '');

/** What the stream must come to once a request breaks a rule of the stream itself. */
interface StreamEnd {
  readonly request: number;
  readonly code: grpc.status;
  readonly details: RegExp;
  /** grpc-js's own refusal of an oversize message carries no Herald code. */
  readonly heraldCode: boolean;
}

/** One event as sent: its seq, what it is, the id it was sent with. */
interface Sent {
  readonly event: EventInput;
  readonly id: string | undefined;
  readonly request: number;
}

describe('fuzz: gRPC PublishStream, router hub on PostgreSQL', () => {
  let hub: FuzzHub | undefined;
  let client: grpc.Client;
  let service: grpc.ServiceDefinition;
  const accepted = new AcceptedEvents();
  /** Answers by kind of event and outcome, for the summary: `bad refused INVALID_SENDER`, `hostile stored`. */
  const answered = new Map<string, number>();

  before(async () => {
    console.log(
      `# fuzz publish-stream: seed ${settings.seed} (HERALD_FUZZ_SEED=${settings.seed} reproduces), ${settings.runs} streams, batch ${settings.batch}`,
    );
    hub = await startFuzzHub('fuzzpstream', settings);
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    service = def[GRPC_SERVICE] as grpc.ServiceDefinition;
    client = new grpc.Client(hub.fx.grpc, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  });
  after(async () => {
    client?.close();
    await hub?.close();
  });

  const encodeEvent = (fields: EventFields): Buffer | undefined => {
    const { data, ...rest } = fields;
    try {
      return (service.Publish as grpc.MethodDefinition<object, object>).requestSerialize({
        ...rest,
        data: data ? bytesOf(data) : undefined,
      });
    } catch {
      return undefined;
    }
  };

  /** The requests' bytes and what each seq stands for; undefined when proto-loader cannot encode an event. */
  function build(input: StreamInput): { frames: Buffer[]; sent: Map<bigint, Sent>; end: StreamEnd | undefined } | undefined {
    const frames: Buffer[] = [];
    const sent = new Map<bigint, Sent>();
    const used = new Set<string>();
    let end: StreamEnd | undefined;
    let seq = input.firstSeq;
    for (const [n, r] of input.requests.entries()) {
      const events = eventsOf(r);
      const bytes: Buffer[] = [];
      for (const [i, e] of events.entries()) {
        let fields = 'good' in e ? e.good : 'bad' in e ? e.bad : 'hostile' in e ? e.hostile : undefined;
        // A repeated good event gets an id of its own: a flood is stored, not answered duplicate.
        if ('good' in e && fields && used.has(String(fields.id))) fields = { ...fields, id: uuidv7() };
        if ('good' in e && fields) used.add(String(fields.id));
        let b: Buffer | undefined;
        if (fields) b = encodeEvent(fields);
        else if ('raw' in e) {
          const raw = e.raw;
          if (raw instanceof Uint8Array) b = Buffer.from(raw);
          else {
            const encoded = encodeEvent(raw.base);
            b = encoded && rawEventBytes(raw, encoded);
          }
        }
        if (!b) return undefined;
        bytes.push(b);
        if (end === undefined)
          sent.set(seq + BigInt(i), { event: e, id: fields && typeof fields.id === 'string' ? fields.id : undefined, request: n });
      }
      const frame = streamRequestBytes(seq, bytes);
      frames.push(n === 0 ? garbled(frame, input.garble) : frame);
      if (end === undefined) {
        if (frame.length > MAX_REQUEST_BYTES)
          end = { request: n, code: grpc.status.RESOURCE_EXHAUSTED, details: /larger than max/i, heraldCode: false };
        else if (events.length > PUBLISH_STREAM_LIMITS.eventsPerRequest)
          end = { request: n, code: grpc.status.RESOURCE_EXHAUSTED, details: /at most 1000 events/, heraldCode: true };
        else if (seq + BigInt(events.length) - 1n > MAX_U64)
          end = { request: n, code: grpc.status.INVALID_ARGUMENT, details: /2\^64/, heraldCode: true };
        if (end) for (const [s, x] of sent) if (x.request === n) sent.delete(s);
      }
      seq += BigInt(events.length);
    }
    return { frames, sent, end };
  }

  /** What is wrong with the answer to one event, or undefined when it is a right one. */
  function judge(x: Sent, a: WirePublishAck): { failure: string; detail: string } | undefined {
    const detail = JSON.stringify(a);
    if (a.outcome === 'refused' && (!a.refused?.code || !a.refused.message))
      return { failure: 'an event was refused without a code or a reason', detail };
    const e = x.event;
    if ('good' in e) {
      if (a.outcome === 'refused') return { failure: `a valid event was refused ${a.refused?.code}`, detail };
      if (a.id !== x.id) return { failure: 'a stored event was answered with another id', detail: `sent ${x.id}: ${detail}` };
    } else if ('bad' in e) {
      if (a.outcome !== 'refused') return { failure: `an event with a ${e.why} was answered ${a.outcome}`, detail };
      if (a.refused?.code !== e.code) return { failure: `an event with a ${e.why} was refused ${a.refused?.code}, not ${e.code}`, detail };
    } else if ('raw' in e && e.code !== undefined) {
      if (a.outcome !== 'refused' || a.refused?.code !== e.code)
        return { failure: `bytes that are no PublishRequest were answered ${a.refused?.code ?? a.outcome}, not ${e.code}`, detail };
    }
    return undefined;
  }

  /** Sends one stream, half-closes it and waits for its status; never rejects. */
  function sendStream(
    input: StreamInput,
    index: number,
  ): Promise<Outcome & { answered: number; answers?: ReadonlyMap<bigint, WirePublishAck> }> {
    const built = build(input);
    if (!built) return Promise.resolve({ tally: 'PublishStream not encodable', answered: 0 });
    const { frames, sent, end } = built;
    const events = input.requests.reduce((n, r) => n + eventsOf(r).length, 0);
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    const budget = ANSWER_MS + events + Math.ceil(bytes / 1024);
    const def = service.PublishStream as grpc.MethodDefinition<Buffer, WirePublishStreamResponse>;
    const call = client.makeBidiStreamRequest(def.path, identity, def.responseDeserialize, new grpc.Metadata(), {
      deadline: Date.now() + budget + 5000,
    });
    const answers = new Map<bigint, WirePublishAck>();
    const problems: { failure: string; detail: string }[] = [];
    const keep: Accepted[] = [];
    call.on('data', (m: WirePublishStreamResponse) => {
      for (const a of m.acks) {
        const seq = BigInt(a.seq);
        if (answers.has(seq)) problems.push({ failure: 'a seq was answered twice', detail: JSON.stringify(a) });
        answers.set(seq, a);
        const x = sent.get(seq);
        if (!x) {
          if (!end && !input.garble) problems.push({ failure: 'a seq never sent was answered', detail: JSON.stringify(a) });
          continue;
        }
        const kind = input.garble ? 'garbled' : Object.keys(x.event)[0];
        const key = `${kind} ${a.outcome}${a.refused ? ` ${a.refused.code}` : ''}`;
        if (index >= 0) answered.set(key, (answered.get(key) ?? 0) + 1);
        const wrong = input.garble ? undefined : judge(x, a);
        if (wrong) problems.push(wrong);
        if (index >= 0 && a.outcome !== 'refused' && a.id && (!('good' in x.event) || keep.length < READ_BACK))
          keep.push({ id: a.id, index, input: `seq ${seq} of the stream`, via: 'gRPC PublishStream' });
      }
    });
    call.on('error', () => undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        call.cancel();
        done({ code: -1, details: '', metadata: new grpc.Metadata() });
      }, budget);
      let finished = false;
      const done = (s: { code: number; details: string; metadata: grpc.Metadata }) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        clearInterval(stall);
        accepted.add(...keep);
        const tally = s.code === -1 ? 'PublishStream no status' : `PublishStream ${statusName(s.code)} ${heraldCode(s.metadata)}`.trim();
        const got = `${tally}: ${s.details.slice(0, 200)} (${answers.size} of ${sent.size} answered)`;
        const fail = (failure: string) => resolve({ tally, failure: `PublishStream → ${failure}`, detail: got, answered: answers.size });
        if (s.code === -1) return fail(`no status within ${budget} ms of the client's half-close`);
        if (BROKEN.has(s.code)) return fail(`${statusName(s.code)}: ${s.details.slice(0, 120)}`);
        const first = problems[0];
        if (first) return resolve({ tally, failure: `PublishStream → ${first.failure}`, detail: first.detail, answered: answers.size });
        if (s.code !== grpc.status.OK && (!s.details || (heraldCode(s.metadata) === '' && !/larger than max/i.test(s.details))))
          return fail(`${statusName(s.code)} without a reason or a Herald code`);
        if (!input.garble && end) {
          if (s.code !== end.code || !end.details.test(s.details) || (end.heraldCode && heraldCode(s.metadata) === ''))
            return fail(
              `request ${end.request} should end the stream ${statusName(end.code)} (${end.details.source}), it ended ${statusName(s.code)}`,
            );
        } else if (!input.garble) {
          if (s.code !== grpc.status.OK) return fail(`a stream of well-framed requests ended ${statusName(s.code)}`);
          if (answers.size !== sent.size) return fail('the stream ended OK with events not answered');
        }
        resolve({ tally, answered: answers.size, answers });
      };
      // The status can come while answers still wait in a paused stream: it counts once they are all read.
      call.on('status', (s: grpc.StatusObject) => {
        call.resume();
        streamFinished(call, { writable: false }, () => done(s));
      });
      // A slow reader reads nothing until its writes stop going out (the hub stopped reading), then everything.
      let written = 0;
      let lastWritten = -1;
      const stall = setInterval(() => {
        if (input.slowReader && written === lastWritten) call.resume();
        lastWritten = written;
      }, STALL_MS);
      if (input.slowReader) call.pause();
      for (const f of frames) call.write(f, () => written++);
      call.end();
    });
  }

  /** A valid event on a stream of its own, after an input: must be answered stored with an offset, and read back. */
  async function probe(index: number): Promise<Outcome | undefined> {
    const id = uuidv7();
    const event = { good: { id, sender: 'fuzzps', type: 'after.input', data: { bytes: new Uint8Array(Buffer.from('{}')) } } };
    const o = await sendStream({ firstSeq: 1n, requests: [{ events: [event] }] }, index);
    const ack = o.answers?.get(1n);
    if (o.failure || o.answered !== 1 || ack?.outcome !== 'stored' || ack.stored?.offset === undefined)
      return {
        tally: 'probe failed',
        failure: `a valid event on a fresh stream after this input was not answered stored with its offset: ${o.failure ?? o.tally}`,
        detail: `${o.detail ?? ''} ${JSON.stringify(ack)}`,
      };
    return undefined;
  }

  test(`${settings.runs} PublishStream streams of hostile events; each bad one refused with its reason, never INTERNAL, a fresh stream stores after each, and after every ${settings.batch} the invariant holds`, async () => {
    const h = hub as FuzzHub;
    const report = await fuzzEdge(
      h,
      {
        name: 'publish-stream',
        arbitrary: publishStreamInput,
        async send(input, index) {
          const o = await sendStream(input, index);
          return (await probe(index)) ?? o;
        },
        afterCheck: () => accepted.takeUnstored(h.fx.http),
      },
      settings,
    );
    console.log(report.text);
    const byCount = [...answered.entries()].sort((a, b) => b[1] - a[1]);
    console.log(`# fuzz publish-stream events answered: ${byCount.map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    assert.ok(report.ok, report.summary);
    assert.ok(report.inputs >= settings.runs);
  });

  const floodEvent = (type: string): EventFields => ({
    id: randomUUID(),
    sender: 'fuzzps',
    type,
    data: { bytes: new Uint8Array(Buffer.from('{"n":1}')) },
  });

  for (const shape of ['events', 'bytes'] as const)
    for (const slow of [false, true])
      test(`a flood past the bound of pending ${shape}${slow ? ', from a client that reads no answer until its writes stall,' : ''} is answered event by event; a fresh stream stores after it; the invariant holds`, async () => {
        const h = hub as FuzzHub;
        const input = floodOf(floodEvent(`flood.${shape}`), shape, slow);
        const events = input.requests.reduce((n, r) => n + eventsOf(r).length, 0);
        const o = await sendStream(input, 0);
        assert.equal(o.failure, undefined, `${o.failure}: ${o.detail}`);
        assert.equal(o.tally, 'PublishStream OK');
        assert.equal(o.answered, events, 'every event answered once');
        assert.equal((await probe(0))?.failure, undefined);
        assert.deepEqual(await h.check(), [], 'the invariant');
        assert.deepEqual(await accepted.takeUnstored(h.fx.http), [], 'what was answered stored reads back');
      });

  test('a request of 5,000 events ends the stream RESOURCE_EXHAUSTED naming the bound; a fresh stream stores after it', async () => {
    const input: StreamInput = {
      firstSeq: 1n,
      requests: [{ events: [{ good: floodEvent('before.oversize') }] }, { events: [{ good: floodEvent('oversize') }], repeatTo: 5000 }],
    };
    const o = await sendStream(input, 0);
    assert.equal(o.failure, undefined, `${o.failure}: ${o.detail}`);
    assert.equal(o.tally, 'PublishStream RESOURCE_EXHAUSTED LIMIT_EXCEEDED');
    assert.equal((await probe(0))?.failure, undefined);
    assert.deepEqual(await (hub as FuzzHub).check(), [], 'the invariant');
  });
});
