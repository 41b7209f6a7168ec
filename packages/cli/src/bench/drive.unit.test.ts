import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveryCounter } from './deliveries.ts';
import { type PlannedEvent, publishPlan, SdkSenders, warmUp } from './drive.ts';
import { createPlan, decodePayload, encodePayload, nowMs } from './plan.ts';
import { ReceiverTally, SentTally } from './tally.ts';

const load = { rate: 'max' as const, count: 120, durationMs: undefined, inFlight: 5, size: 64 };

describe('bench send loop', () => {
  it('publishes every event of the plan once, padded, and counts the confirms per sender and type', async () => {
    const plan = createPlan(3, 4);
    const sent = new SentTally(plan);
    const seen: PlannedEvent[] = [];
    const res = await publishPlan(load, plan, 'r1', sent, {
      publish: async (ev, body) => {
        assert.equal(body.length, 64);
        assert.deepEqual({ run: decodePayload(body)?.run, seq: decodePayload(body)?.seq }, { run: 'r1', seq: ev.seq });
        seen.push(ev);
      },
    });
    assert.deepEqual({ issued: res.issued, confirmed: res.confirmed, failed: res.failed }, { issued: 120, confirmed: 120, failed: 0 });
    assert.equal(sent.confirmed, 120);
    assert.deepEqual(
      plan.senders.map((_, s) => seen.filter((ev) => ev.sender === s).map((ev) => ev.seq)),
      plan.senders.map(() => Array.from({ length: 40 }, (_, i) => i)),
    );
    const counted = sent.counts.map((byType) => byType.reduce((a, b) => a + b, 0));
    assert.deepEqual(counted, [40, 40, 40]);
  });

  it('keeps the window at inFlight × senders', async () => {
    const plan = createPlan(3, 1);
    let open = 0;
    let peak = 0;
    await publishPlan(load, plan, 'r2', new SentTally(plan), {
      publish: async () => {
        peak = Math.max(peak, ++open);
        await new Promise((resolve) => setImmediate(resolve));
        open -= 1;
      },
    });
    assert.equal(peak, 15);
  });

  it('records failures in the sent tally and goes on', async () => {
    const plan = createPlan(2, 2);
    const sent = new SentTally(plan);
    const errors: unknown[] = [];
    const res = await publishPlan(load, plan, 'r3', sent, {
      publish: async (ev) => {
        if (ev.seq % 10 === 0) throw new Error(`nack ${ev.sender}/${ev.seq}`);
      },
      onFailure: (_index, err) => errors.push(err),
    });
    assert.deepEqual({ confirmed: res.confirmed, failed: res.failed }, { confirmed: 108, failed: 12 });
    assert.equal(sent.confirmed, 108);
    assert.equal(sent.failed.length, 12);
    assert.deepEqual(sent.failed.slice(0, 2), [
      [0, 0],
      [1, 0],
    ]);
    assert.equal(errors.length, 12);
  });

  it('stops early when aborted', async () => {
    const plan = createPlan(1, 1);
    let calls = 0;
    const res = await publishPlan({ ...load, count: undefined, rate: 1000, durationMs: 60_000 }, plan, 'r4', new SentTally(plan), {
      publish: async () => {
        calls += 1;
      },
      aborted: () => calls >= 20,
    });
    assert.equal(res.issued, 20);
  });
});

describe('bench warm-up', () => {
  it('probes until a probe comes through and numbers the probes', async () => {
    const plan = createPlan(1, 1);
    const counter = new DeliveryCounter(plan, 'w1', new ReceiverTally(plan, ['*:*']));
    const probes: number[] = [];
    const through = await warmUp('w1', 5000, {
      publish: async (type, body) => {
        assert.equal(type, 'bench-probe');
        probes.push(decodePayload(body)!.seq);
        // The third probe arrives.
        if (probes.length === 3) counter.count('s1', type, body);
      },
      seen: () => counter.probeSeen,
      everyMs: 20,
    });
    assert.equal(through, true);
    assert.deepEqual(probes, [1, 2, 3]);
  });

  it('gives up after the warm-up time', async () => {
    const started = performance.now();
    const through = await warmUp('w2', 100, { publish: async () => {}, seen: () => false, everyMs: 30 });
    assert.equal(through, false);
    assert.ok(performance.now() - started >= 100);
  });

  it('fails with the error of a failed probe', async () => {
    const err = new Error('no exchange');
    await assert.rejects(
      warmUp('w3', 5000, {
        publish: () => Promise.reject(err),
        seen: () => false,
        everyMs: 10,
      }),
      err,
    );
  });

  it('ends when aborted', async () => {
    let probes = 0;
    const through = await warmUp('w4', 60_000, {
      publish: async () => {
        probes += 1;
      },
      seen: () => false,
      everyMs: 10,
      aborted: () => probes >= 2,
    });
    assert.deepEqual({ through, probes }, { through: false, probes: 2 });
  });
});

describe('bench SDK senders', () => {
  it('publishes each event through its sender’s publisher and probes through the first, as JSON', async () => {
    const plan = createPlan(2, 3);
    const calls: string[] = [];
    const closed: string[] = [];
    const senders = new SdkSenders(plan, 7);
    senders.open((sender, maxPending) => ({
      publish: async (type, _data, options) => {
        calls.push(`${sender} ${type} ${options.contentType}`);
      },
      close: async () => {
        closed.push(`${sender}/${maxPending}`);
      },
    }));
    const body = encodePayload({ run: 'x', seq: 0, ts: nowMs() }, 0);
    await senders.publish({ sender: 1, seq: 0, type: 2 }, body);
    await senders.probe('bench-probe', body);
    await senders.close();
    assert.deepEqual(calls, ['s2 t3 application/json', 's1 bench-probe application/json']);
    assert.deepEqual(closed, ['s1/14', 's2/14']);
  });
});
