import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as nats from 'nats';
import { jetStreamName, runJetStream } from './jetstream.ts';
import { normalizeBenchOptions } from './options.ts';
import { createPlan } from './plan.ts';

/** The NATS server with JetStream that `npm run bench` compares with. */
const servers = process.env.HERALD_BENCH_NATS_URL ?? '127.0.0.1:4222';

describe('the JetStream side of npm run bench (e2e, real NATS)', { timeout: 30_000 }, () => {
  it('publishes and consumes a small run: positive rates, nothing lost, the stream deleted', async () => {
    const opts = normalizeBenchOptions({ count: '600', size: '1024', inFlight: '50', prefetch: '100', drainTimeout: '3000' }, {});
    const plan = createPlan(opts.senders, opts.types, opts.seed);
    const runId = `e2e-${process.pid}-${Date.now().toString(36)}`;
    const lines: string[] = [];
    const f = await runJetStream(opts, plan, runId, { servers, nats }, (l) => lines.push(l));
    assert.equal(f.sent, 600);
    assert.equal(f.lost, 0);
    assert.equal(f.reordered, 0);
    assert.ok(f.received >= 600, `received ${f.received}`);
    assert.ok(f.publishThroughput > 0 && f.endToEndThroughput > 0, JSON.stringify(f));
    assert.ok(f.endToEndThroughput <= f.publishThroughput * 1.5 + 1, 'end to end cannot outrun publishing by far');
    assert.ok(f.latencyMs.p50 > 0 && f.latencyMs.p50 <= f.latencyMs.p99 && f.latencyMs.p99 <= f.latencyMs.max, JSON.stringify(f.latencyMs));

    const nc = await nats.connect({ servers });
    try {
      const names: string[] = [];
      for await (const name of (await nc.jetstreamManager()).streams.names()) names.push(name);
      assert.ok(!names.includes(jetStreamName(runId)), 'the run deletes its stream');
    } finally {
      await nc.close();
    }
  });

  it('paced at a rate: sends rate × duration events, each once', async () => {
    const opts = normalizeBenchOptions({ rate: '500', duration: '1s', inFlight: '50', prefetch: '100', drainTimeout: '3000' }, {});
    const plan = createPlan(opts.senders, opts.types, opts.seed);
    const f = await runJetStream(opts, plan, `e2e-paced-${process.pid}`, { servers, nats }, () => {});
    assert.equal(f.sent, 500);
    assert.equal(f.lost, 0);
    assert.equal(f.duplicates, 0);
    assert.ok(f.latencyMs.p99 > 0);
  });
});
