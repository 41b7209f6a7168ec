import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveryCounter } from './deliveries.ts';
import { OneReceiverRun } from './one-receiver-run.ts';
import { createPlan, encodePayload, nowMs } from './plan.ts';
import { ReceiverTally } from './tally.ts';

const data = (run: string, seq: number) => encodePayload({ run, seq, ts: nowMs() }, 100);

describe('bench delivery counter', () => {
  it('counts the run’s events by sender and type name and passes over the rest', () => {
    const plan = createPlan(2, 2);
    const tally = new ReceiverTally(plan, ['*:*']);
    const counter = new DeliveryCounter(plan, 'r1', tally);
    counter.count('s1', 't1', data('r1', 0));
    counter.count('s2', 't2', data('r1', 0));
    counter.count('s1', 't1', data('r1', 0));
    counter.count('s1', 't1', data('another-run', 1));
    counter.count('s9', 't1', data('r1', 1));
    counter.count('s1', 't9', data('r1', 1));
    counter.count('s1', 't1', Buffer.from('not a bench event'));
    assert.deepEqual(
      { received: tally.received, distinct: tally.distinct, duplicates: tally.duplicates },
      { received: 3, distinct: 2, duplicates: 1 },
    );
    assert.equal(counter.probeSeen, false);
    assert.ok(tally.lastAt > 0);
  });

  it('notices the run’s probe without counting it', () => {
    const plan = createPlan(1, 1);
    const tally = new ReceiverTally(plan, ['*:*']);
    const counter = new DeliveryCounter(plan, 'r2', tally);
    counter.count('s1', 'bench-probe', data('r1-probe', 1));
    assert.equal(counter.probeSeen, false);
    counter.count('s1', 'bench-probe', data('r2-probe', 1));
    assert.equal(counter.probeSeen, true);
    assert.equal(tally.received, 0);
  });
});

describe('bench run with one receiver', () => {
  it('publishes the plan, waits for the receiver and sums up loss and rates', async () => {
    const plan = createPlan(2, 3);
    const run = new OneReceiverRun(plan, 'r3');
    const result = await run.publish(
      { rate: 'max', count: 100, durationMs: undefined, inFlight: 10, size: 64, drainTimeoutMs: 200 },
      {
        publish: async (ev, body) => {
          // Every event but sender 2's seq 7 arrives, a moment after its confirm.
          if (ev.sender === 1 && ev.seq === 7) return;
          setImmediate(() => run.count(plan.senders[ev.sender]!, plan.types[ev.type]!, body));
        },
      },
    );
    assert.equal(result.confirmed, 100);
    const f = run.figures(result);
    assert.deepEqual(
      { sent: f.sent, received: f.received, lost: f.lost, duplicates: f.duplicates },
      { sent: 100, received: 99, lost: 1, duplicates: 0 },
    );
    assert.ok(f.publishThroughput > 0 && f.endToEndThroughput > 0);
  });
});
