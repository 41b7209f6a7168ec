import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { burstFor, drive, dueEvents, plannedTotal } from './pacer.ts';

describe('bench pacing', () => {
  it('makes events due at the rate since the start', () => {
    assert.equal(dueEvents(0, 1000, 0, 100), 0);
    assert.equal(dueEvents(10, 1000, 0, 100), 10);
    assert.equal(dueEvents(10, 1000, 7, 100), 3);
    assert.equal(dueEvents(1.5, 10_000, 0, 1000), 15);
    assert.equal(dueEvents(1000, 10_000, 10_000, 1000), 0);
    // Ahead of schedule: nothing due, never negative.
    assert.equal(dueEvents(5, 1000, 9, 100), 0);
  });

  it('caps a catch-up burst, then catches up over later ticks', () => {
    assert.equal(dueEvents(1000, 1000, 0, burstFor(1000)), 20);
    assert.equal(burstFor(10_000), 200);
    assert.equal(burstFor(1), 1);
  });

  it('knows the total in advance unless flat out for a duration', () => {
    assert.equal(plannedTotal('max', { total: 5 }), 5);
    assert.equal(plannedTotal(1000, { durationMs: 20_000 }), 20_000);
    assert.equal(plannedTotal('max', { durationMs: 1000 }), undefined);
  });

  it('sends flat out within the in-flight window and waits for every confirm', async () => {
    let inFlight = 0;
    let peak = 0;
    const res = await drive({
      rate: 'max',
      stop: { total: 1000 },
      maxInFlight: 50,
      send: async () => {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight -= 1;
      },
    });
    assert.equal(res.issued, 1000);
    assert.equal(res.confirmed, 1000);
    assert.equal(inFlight, 0);
    assert.ok(peak <= 50 && peak > 1, `peak ${peak}`);
  });

  it('holds a rate of 10,000/s and counts failures', async () => {
    const res = await drive({
      rate: 10_000,
      stop: { total: 3000 },
      maxInFlight: 1000,
      send: async (i) => {
        if (i % 100 === 0) throw new Error('nack');
      },
    });
    const ms = res.endedAt - res.startedAt;
    assert.equal(res.confirmed + res.failed, 3000);
    assert.equal(res.failed, 30);
    assert.ok(ms >= 290 && ms < 600, `3000 events at 10k/s took ${ms} ms`);
  });

  it('holds a rate of 1,000/s', async () => {
    const res = await drive({ rate: 1000, stop: { durationMs: 300 }, maxInFlight: 100, send: async () => {} });
    assert.equal(res.issued, 300);
    const ms = res.endedAt - res.startedAt;
    assert.ok(ms >= 290 && ms < 450, `300 events at 1k/s took ${ms} ms`);
  });
});
