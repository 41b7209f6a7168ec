import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestVhost, SOURCE_NODE_ARGS, type TestVhost } from '@herald/testing';
import { type ChannelModel, connect } from 'amqplib';
import type { BenchReport } from './bench/index.ts';

const main = fileURLToPath(new URL('./main.ts', import.meta.url));

/** Runs the real `herald` CLI as a child process. */
function herald(args: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...SOURCE_NODE_ARGS, main, ...args],
      { env: { ...process.env, HERALD_AMQP_URL: url }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('herald bench (e2e, real RabbitMQ)', { timeout: 60_000 }, () => {
  let vhost: TestVhost;
  let conn: ChannelModel;

  before(async () => {
    vhost = await createTestVhost('bench');
  });

  after(async () => {
    await conn?.close().catch(() => {});
    await vhost?.delete();
  });

  it('runs the five receivers over the archive binding: nothing lost or reordered', async () => {
    const topo = await herald(['topology', '--mode', 'archive'], vhost.url);
    assert.equal(topo.code, 0, topo.stderr);
    assert.match(topo.stdout, /archive/);

    // A spy queue of our own on herald.events sees what really flowed, independently of the bench.
    conn = await connect(vhost.url, { noDelay: true });
    const ch = await conn.createChannel();
    const spy = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(spy, 'herald.events', '#');

    const res = await herald(['bench', '--json', '--count', '3000', '--senders', '3', '--types', '4', '--size', '256'], vhost.url);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON object on stdout');
    const report = JSON.parse(lines[0]!) as {
      run: string;
      sent: number;
      ok: boolean;
      receivers: BenchReport['receivers'];
      sentBy: Record<string, Record<string, number>>;
    };
    assert.equal(report.sent, 3000);
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.receivers.map((r) => r.kind),
      ['one-sender', 'types', 'pairs', 'senders', 'all'],
    );

    // Count per sender.type what the spy got of this run.
    const seen = new Map<string, number>();
    let spied = 0;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`spy saw ${spied} of 3000`)), 10_000);
      void ch.consume(
        spy,
        (msg) => {
          if (!msg) return;
          const body = JSON.parse(msg.content.toString()) as { run?: string };
          if (body.run !== report.run) return;
          seen.set(msg.fields.routingKey, (seen.get(msg.fields.routingKey) ?? 0) + 1);
          if (++spied === 3000) {
            clearTimeout(timer);
            resolve();
          }
        },
        { noAck: true },
      );
    });
    const count = (pred: (s: string, t: string) => boolean) => {
      let n = 0;
      for (const [key, c] of seen) {
        const [s, t] = key.split('.') as [string, string];
        if (pred(s, t)) n += c;
      }
      return n;
    };
    for (const [s, row] of Object.entries(report.sentBy)) {
      for (const [t, n] of Object.entries(row)) assert.equal(seen.get(`${s}.${t}`) ?? 0, n, `sentBy ${s}.${t}`);
    }
    const want: Record<string, number> = {
      'one-sender': count((s) => s === 's1'),
      types: count((_, t) => t === 't1' || t === 't2'),
      pairs: count((s, t) => (s === 's1' && t === 't1') || (s === 's2' && t === 't2')),
      senders: count((s) => s === 's1' || s === 's2'),
      all: 3000,
    };
    // The random type choice makes these uneven: a wrong formula would not land on them by luck.
    assert.ok(want['one-sender']! > 900 && want['one-sender']! < 1100);
    for (const r of report.receivers) {
      assert.equal(r.expected, want[r.kind], `${r.kind} expected`);
      assert.equal(r.lost, 0, `${r.kind} lost`);
      assert.equal(r.reordered, 0, `${r.kind} reordered`);
      assert.ok(r.received >= r.expected, `${r.kind} received`);
      assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max, `${r.kind} latency`);
      assert.ok(r.throughput > 0, `${r.kind} throughput`);
    }
    const left = (await vhost.queues()).filter((q) => q.name.startsWith('herald.bench.'));
    assert.deepEqual(left, [], 'the run deletes its queues');
  });

  it('fails clearly when nothing routes herald.ingest to herald.events', async () => {
    const topo = await herald(['topology', '--mode', 'router'], vhost.url);
    assert.equal(topo.code, 0, topo.stderr);
    const res = await herald(['bench', '--json', '--count', '100', '--warmup', '1500'], vhost.url);
    assert.notEqual(res.code, 0);
    assert.equal(res.stdout, '');
    assert.match(res.stderr, /herald topology --mode archive/);
    assert.match(res.stderr, /hub/);
    const left = (await vhost.queues()).filter((q) => q.name.startsWith('herald.bench.'));
    assert.deepEqual(left, [], 'the failed run deletes its queues too');
  });
});
