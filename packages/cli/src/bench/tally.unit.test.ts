import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPlan, eventAt, typeIndexOf } from './plan.ts';
import { receiverSpecs } from './receivers.ts';
import { ReceiverTally, SentTally } from './tally.ts';

const plan = createPlan(3, 4);
const typeOf = (s: number, seq: number) => typeIndexOf(plan, s, seq);

describe('bench tally', () => {
  it('computes each receiver kind’s expected count from what was sent', () => {
    const sent = new SentTally(plan);
    const byKey = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const ev = eventAt(plan, i);
      sent.confirm(ev.sender, ev.type);
      const key = `${plan.senders[ev.sender]}.${plan.types[ev.type]}`;
      byKey.set(key, (byKey.get(key) ?? 0) + 1);
    }
    // Counted by hand, without the selector code.
    const sum = (pred: (s: string, t: string) => boolean) =>
      [...byKey].filter(([k]) => pred(k.split('.')[0]!, k.split('.')[1]!)).reduce((a, [, n]) => a + n, 0);
    const want: Record<string, number> = {
      'one-sender': sum((s) => s === 's1'),
      types: sum((_, t) => t === 't1' || t === 't2'),
      pairs: sum((s, t) => (s === 's1' && t === 't1') || (s === 's2' && t === 't2')),
      senders: sum((s) => s === 's1' || s === 's2'),
      all: 5000,
    };
    for (const spec of receiverSpecs(plan)) {
      assert.equal(new ReceiverTally(plan, spec.selector).expectedFrom(sent), want[spec.kind], spec.kind);
    }
    assert.deepEqual(Object.keys(sent.bySender()), ['s1', 's2', 's3']);
    assert.equal(sent.confirmed, 5000);
  });

  it('counts duplicates, reordering, loss and misrouting', () => {
    const sent = new SentTally(plan);
    const r = new ReceiverTally(plan, ['s1:*']);
    // s1 sends seq 0..9.
    for (let seq = 0; seq < 10; seq++) sent.confirm(0, typeOf(0, seq));
    const got = (seq: number) => r.record(0, typeOf(0, seq), seq, 1000, performance.now());
    got(0);
    got(1);
    got(3);
    got(2); // reordered: 3 came first
    got(3); // duplicate, not a second reorder
    got(5);
    got(4); // reordered
    for (const seq of [6, 7]) got(seq); // 8 and 9 never arrive
    r.record(1, 0, 0, 1000, performance.now()); // s2 does not match s1:*
    const f = r.figures(sent, typeOf);
    assert.equal(f.expected, 10);
    assert.equal(f.received, 10);
    assert.equal(f.duplicates, 1);
    assert.equal(f.reordered, 2);
    assert.equal(f.lost, 2);
    assert.equal(f.unexpected, 1);
    assert.equal(f.latencyMs.p50, 1);
  });

  it('keeps per-sender order separate', () => {
    const r = new ReceiverTally(plan, ['*:*']);
    r.record(0, 0, 5, 1, 1);
    r.record(1, 0, 0, 1, 2); // another sender's lower seq is not a reorder
    r.record(0, 0, 6, 1, 3);
    assert.equal(r.reordered, 0);
  });

  it('does not count a delivered but failed publish as expected', () => {
    const sent = new SentTally(plan);
    const r = new ReceiverTally(plan, ['*:*']);
    sent.confirm(0, typeOf(0, 0));
    sent.fail(0, 1);
    r.record(0, typeOf(0, 0), 0, 10, 1);
    r.record(0, typeOf(0, 1), 1, 10, 2);
    const f = r.figures(sent, typeOf);
    assert.equal(f.expected, 1);
    assert.equal(f.lost, 0);
    assert.equal(f.unexpected, 1);
  });

  it('reports latency percentiles in milliseconds', () => {
    const r = new ReceiverTally(plan, ['*:*']);
    for (let i = 1; i <= 1000; i++) r.record(0, 0, i, i * 10, i); // 10 µs … 10 ms
    const f = r.latency;
    assert.equal(f.totalCount, 1000);
    const s = r.figures(new SentTally(plan), typeOf).latencyMs;
    assert.ok(Math.abs(s.p50 - 5) < 0.02, `p50 ${s.p50}`);
    assert.ok(Math.abs(s.p99 - 9.9) < 0.02, `p99 ${s.p99}`);
    assert.ok(Math.abs(s.max - 10) < 0.02, `max ${s.max}`);
  });

  it('tracks a million sequence numbers in a bit set', () => {
    const r = new ReceiverTally(plan, ['*:*']);
    for (let seq = 0; seq < 1_000_000; seq++) r.record(0, 0, seq, 1, 1);
    assert.equal(r.distinct, 1_000_000);
    assert.equal(r.duplicates, 0);
  });
});
