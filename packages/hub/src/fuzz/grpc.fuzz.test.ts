import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GRPC_ERROR_CODE_KEY, GRPC_SERVICE, PROTO_LOADER_OPTIONS, PROTO_PATH } from '@herald/core';
import { bytesOf } from './boundary.ts';
import { AcceptedEvents, type FuzzHub, fuzzSettings, startFuzzHub } from './fuzz-kit.ts';
import { fuzzEdge, type Outcome } from './fuzz-runner.ts';
import { type GrpcInput, garbled, grpcInput } from './grpc-inputs.ts';

const settings = fuzzSettings();
/** A Publish, or a stream's status after the client half-closed, that has not come by then is a hang. */
const ANSWER_MS = 10_000;
/** How long a stream that starts with an open is given to open (or fail) before the client half-closes it. */
const OPEN_MS = 300;
/** How long any other stream (no messages, an ack first) is given before the client half-closes it. */
const IDLE_MS = 10;
/** Statuses that are never an answer to bad input: the hub failed. */
const BROKEN = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN]);

const identity = (b: Buffer) => b;
const statusName = (code: number) => grpc.status[code] ?? String(code);
const heraldCode = (md: grpc.Metadata | undefined) => String(md?.get(GRPC_ERROR_CODE_KEY)[0] ?? '');

describe('fuzz: gRPC Publish and Subscribe, router hub on PostgreSQL', () => {
  let hub: FuzzHub | undefined;
  let client: grpc.Client;
  let service: grpc.ServiceDefinition;
  const accepted = new AcceptedEvents();

  before(async () => {
    console.log(
      `# fuzz grpc: seed ${settings.seed} (HERALD_FUZZ_SEED=${settings.seed} reproduces), ${settings.runs} inputs, batch ${settings.batch}`,
    );
    hub = await startFuzzHub('fuzzgrpc', settings);
    const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
    service = def[GRPC_SERVICE] as grpc.ServiceDefinition;
    client = new grpc.Client(hub.fx.grpc, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    // Subscriptions that exist, so that opens reach attach, catch-up and delivery.
    for (const [name, selector] of [
      ['fuzz-grpc', '*:*'],
      ['fuzz-grpc-billing', 'billing:*'],
    ]) {
      const r = await fetch(`${hub.fx.http}/api/v1/subscriptions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, selector, start: 'earliest' }),
      });
      assert.equal(r.status, 201, await r.text());
    }
  });
  after(async () => {
    client?.close();
    await hub?.close();
  });

  /** The encoded request, or undefined when proto-loader cannot encode it (nothing is sent then). */
  const encode = (method: 'Publish' | 'Subscribe', message: Record<string, unknown>): Buffer | undefined => {
    try {
      return (service[method] as grpc.MethodDefinition<object, object>).requestSerialize(message);
    } catch {
      return undefined;
    }
  };

  function publish(input: Extract<GrpcInput, { publish: unknown }>, index: number): Promise<Outcome> {
    const { data, ...rest } = input.publish;
    const bytes = encode('Publish', { ...rest, data: data ? bytesOf(data) : undefined });
    if (!bytes) return Promise.resolve({ tally: 'Publish not encodable' });
    const def = service.Publish as grpc.MethodDefinition<Buffer, { id: string }>;
    return new Promise<Outcome>((resolve) => {
      client.makeUnaryRequest(
        def.path,
        identity,
        def.responseDeserialize,
        garbled(bytes, input.garble),
        new grpc.Metadata(),
        { deadline: Date.now() + ANSWER_MS },
        (err, res) => {
          if (!err) {
            if (index >= 0 && res?.id) accepted.add({ id: res.id, index, input, via: 'gRPC Publish' });
            return resolve({ tally: 'Publish OK' });
          }
          const tally = `Publish ${statusName(err.code)} ${heraldCode(err.metadata)}`.trim();
          if (BROKEN.has(err.code) || err.code === grpc.status.DEADLINE_EXCEEDED)
            return resolve({ tally, failure: `Publish → ${tally.slice(8)}: ${err.details.slice(0, 120)}`, detail: err.details });
          resolve({ tally });
        },
      );
    });
  }

  function subscribe(input: Extract<GrpcInput, { subscribe: unknown }>): Promise<Outcome> {
    const buffers: Buffer[] = [];
    for (const m of input.subscribe) {
      const b = encode('Subscribe', m);
      if (!b) return Promise.resolve({ tally: 'Subscribe not encodable' });
      buffers.push(buffers.length === 0 ? garbled(b, input.garble) : b);
    }
    const def = service.Subscribe as grpc.MethodDefinition<Buffer, { kind?: string; events?: { events: unknown[] } }>;
    return new Promise<Outcome>((resolve) => {
      const call = client.makeBidiStreamRequest(def.path, identity, def.responseDeserialize, new grpc.Metadata(), {
        deadline: Date.now() + OPEN_MS + ANSWER_MS + 1000,
      });
      let opened = false;
      let events = 0;
      let halfClosed = false;
      const timers: NodeJS.Timeout[] = [];
      const halfClose = () => {
        if (halfClosed) return;
        halfClosed = true;
        call.end();
        // The hub answers a half-close by detaching the consumer and ending the stream with OK.
        timers.push(
          setTimeout(() => {
            call.cancel();
            finish({
              tally: 'Subscribe no status',
              failure: `Subscribe → no status within ${ANSWER_MS} ms of the client's half-close`,
              detail: `opened: ${opened}, events: ${events}`,
            });
          }, ANSWER_MS),
        );
      };
      let done = false;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        for (const t of timers) clearTimeout(t);
        resolve(o);
      };
      // The acks go once the stream is open, so that they reach the consumer (sent with the open,
      // each would be refused as above the last delivered offset, and nothing would be delivered).
      const startsWithOpen = 'open' in (input.subscribe[0] ?? {});
      const [first, ...rest] = buffers;
      call.on('data', (m: { kind?: string; events?: { events: unknown[] } }) => {
        if (m.kind === 'opened') {
          opened = true;
          // Let a first batch of events come, then ack, then go.
          timers.push(
            setTimeout(() => {
              if (halfClosed || done) return;
              for (const b of rest) call.write(b);
              timers.push(setTimeout(halfClose, IDLE_MS));
            }, IDLE_MS),
          );
        } else events += m.events?.events.length ?? 0;
      });
      call.on('error', () => undefined);
      call.on('status', (s: grpc.StatusObject) => {
        const tally = `Subscribe ${statusName(s.code)} ${heraldCode(s.metadata)}`.trim();
        if (BROKEN.has(s.code) || s.code === grpc.status.DEADLINE_EXCEEDED)
          finish({
            tally,
            failure: `Subscribe → ${tally.slice(10)}: ${s.details.slice(0, 120)}`,
            detail: `${s.details} (opened: ${opened}, events: ${events})`,
          });
        else finish({ tally: opened ? `${tally} (opened)` : tally });
      });
      if (first) call.write(first);
      if (!startsWithOpen) for (const b of rest) call.write(b);
      timers.push(setTimeout(halfClose, startsWithOpen ? OPEN_MS : IDLE_MS));
    });
  }

  test(`${settings.runs} Publish and Subscribe messages; never INTERNAL or UNKNOWN, what is published is stored, and after every ${settings.batch} the invariant holds`, async () => {
    const h = hub as FuzzHub;
    const report = await fuzzEdge(
      h,
      {
        name: 'grpc',
        arbitrary: grpcInput,
        send: (input, index) => ('publish' in input ? publish(input, index) : subscribe(input)),
        afterCheck: () => accepted.takeUnstored(h.fx.http),
      },
      settings,
    );
    console.log(report.text);
    assert.ok(report.ok, report.summary);
    assert.ok(report.inputs >= settings.runs);
  });
});
