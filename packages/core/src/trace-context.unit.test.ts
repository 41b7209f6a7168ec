import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkEvent, createEvent, forwardHeaderBytes, fromAmqp, toAmqp } from './envelope.ts';
import { ValidationError } from './errors.ts';
import { LIMITS } from './limits.ts';
import { toWireEvent } from './proto.ts';
import { joinTraceHeaders, splitTraceHeaders, traceparentProblem, tracestateProblem, validTraceContext } from './trace-context.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const TS = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
const base = { sender: 'billing', type: 'invoice.paid', data: { n: 1 } };

/** Values that are not a traceparent: each must be refused by name and dropped when carried. */
const BAD_TRACEPARENTS: unknown[] = [
  '',
  '00-abc',
  `${TP}\u0000`,
  `\u0000${TP}`,
  TP.toUpperCase(),
  `${TP}-extra`,
  '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
  '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
  '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01',
  ` ${TP}`,
  'x'.repeat(100_000),
  42,
  null,
  { traceparent: TP },
];
const BAD_TRACESTATES: unknown[] = [
  `a=${'b'.repeat(LIMITS.tracestateBytes.value)}`,
  'a=b\u0000',
  'a=b\n',
  'a=é',
  'A=b',
  'a',
  'a=b=c',
  Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','),
  7,
];

function refused(fn: () => unknown, parameter: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ValidationError, String(err));
    assert.equal(err.code, 'INVALID_EVENT');
    assert.equal(err.details?.parameter, parameter, err.message);
    return true;
  });
}

describe('trace context rules', () => {
  test('a W3C traceparent and tracestate pass; every malformed one is a problem', () => {
    assert.equal(traceparentProblem(TP), undefined);
    assert.equal(tracestateProblem(TS), undefined);
    assert.equal(tracestateProblem('tenant@vendor=x, other=y ,'), undefined);
    for (const v of BAD_TRACEPARENTS) assert.ok(traceparentProblem(v) !== undefined, `traceparent ${String(v).slice(0, 40)}`);
    for (const v of BAD_TRACESTATES) assert.ok(tracestateProblem(v) !== undefined, `tracestate ${String(v).slice(0, 40)}`);
  });

  test('set by name (createEvent: SDK, REST, gRPC): a malformed one refuses the event, naming the field', () => {
    const e = createEvent({ ...base, traceparent: TP, tracestate: TS });
    assert.equal(e.traceparent, TP);
    assert.equal(e.tracestate, TS);
    // null is as absent as undefined there; every other bad value is refused.
    for (const traceparent of BAD_TRACEPARENTS.filter((v) => v !== null))
      refused(() => createEvent({ ...base, traceparent: traceparent as string }), 'traceparent');
    for (const tracestate of BAD_TRACESTATES)
      refused(() => createEvent({ ...base, traceparent: TP, tracestate: tracestate as string }), 'tracestate');
    refused(() => createEvent({ ...base, tracestate: TS }), 'tracestate');
  });

  test('headers named traceparent and tracestate are the trace context, as on AMQP', () => {
    const e = createEvent({ ...base, headers: { traceparent: TP, tracestate: TS, tenant: 'acme' } });
    assert.deepEqual([e.traceparent, e.tracestate, e.headers], [TP, TS, { tenant: 'acme' }]);
    refused(() => createEvent({ ...base, traceparent: TP, headers: { traceparent: TP.replace('01', '00') } }), 'traceparent');
    refused(() => checkEvent({ ...e, headers: { traceparent: TP } }), 'headers');
  });

  test('toAmqp carries them as headers traceparent and tracestate; fromAmqp reads them back', () => {
    const e = createEvent({ ...base, traceparent: TP, tracestate: TS, headers: { tenant: 'acme' } });
    const m = toAmqp(e, { offset: 7n });
    assert.equal(m.properties.headers?.traceparent, TP);
    assert.equal(m.properties.headers?.tracestate, TS);
    const back = fromAmqp(m);
    assert.deepEqual([back.traceparent, back.tracestate, back.headers], [TP, TS, { tenant: 'acme' }]);
    assert.deepEqual([toWireEvent({ ...back, offset: 7n }).traceparent, toWireEvent({ ...back, offset: 7n }).tracestate], [TP, TS]);
  });

  test('carried along (fromAmqp): a malformed one is dropped, the event is kept, and nothing turns into an extra header', () => {
    const message = (headers: Record<string, unknown>) => ({
      routingKey: 'billing.invoice.paid',
      content: Buffer.from('{}'),
      properties: { messageId: crypto.randomUUID(), headers },
    });
    for (const traceparent of [...BAD_TRACEPARENTS, Buffer.from([0xff, 0, 1])]) {
      const e = fromAmqp(message({ traceparent, tracestate: TS }));
      assert.deepEqual([e.traceparent, e.tracestate, e.headers], [undefined, undefined, {}]);
    }
    for (const tracestate of BAD_TRACESTATES) {
      const e = fromAmqp(message({ traceparent: TP, tracestate }));
      assert.deepEqual([e.traceparent, e.tracestate, e.headers], [TP, undefined, {}]);
    }
    assert.equal(fromAmqp(message({ traceparent: Buffer.from(TP) })).traceparent, TP, 'bytes of ASCII text are text');
    assert.equal(fromAmqp(message({ traceparent: TP, tracestate: ' ' })).tracestate, undefined, 'an empty tracestate is none');
  });

  test('the log keeps them among the headers and reads them back the same way', () => {
    const e = createEvent({ ...base, traceparent: TP, tracestate: TS, headers: { tenant: 'acme' } });
    const stored = joinTraceHeaders(e);
    assert.deepEqual(stored, { tenant: 'acme', traceparent: TP, tracestate: TS });
    assert.deepEqual(splitTraceHeaders({ ...stored }), { headers: { tenant: 'acme' }, traceparent: TP, tracestate: TS });
    assert.deepEqual(splitTraceHeaders({ traceparent: 'bad', tracestate: TS }), { headers: {} });
    const plain = { tenant: 'acme' };
    assert.equal(joinTraceHeaders({ headers: plain }), plain, 'no copy without a trace context');
    assert.deepEqual(validTraceContext(undefined, TS), {});
  });

  test('they count in the header table as forwarded', () => {
    const without = createEvent(base);
    const withTrace = createEvent({ ...base, traceparent: TP, tracestate: TS });
    const entry = (name: string, value: string) => 1 + name.length + 1 + 4 + value.length;
    assert.equal(forwardHeaderBytes(withTrace) - forwardHeaderBytes(without), entry('traceparent', TP) + entry('tracestate', TS));
  });
});
