import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, type HeraldProcess, makeEvents, type RouterHub, spawnHerald, startRouterHub, waitFor } from '@herald/testing';

/** The event lines of a tail's output: `<offset>  <time>  <sender:type>  <data>`. */
function eventLines(p: HeraldProcess): string[] {
  return p
    .output()
    .split('\n')
    .filter((l) => /^\d+ {2}\S+ {2}\S+:\S+ {2}/.test(l));
}

describe('herald tail, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let env: Record<string, string>;
  let base = '';

  before(async () => {
    fx = await startRouterHub('tail');
    base = fx.http;
    env = { HERALD_GRPC_URL: fx.grpc, HERALD_HUB_URL: base };
  });
  after(async () => {
    await fx?.close();
  });

  const publish = async (n: number) => {
    const pub = await createRawPublisher(fx.vhost.url);
    try {
      assert.ok((await pub.publishMany(INGEST_EXCHANGE, makeEvents(n, { size: 80 }))).every(Boolean));
    } finally {
      await pub.close();
    }
  };

  test('--subscription: prints the matching events, then resumes after the last printed one', async () => {
    // makeEvents: senders rotate billing, shipping, crm, auth: 3 of 12 are billing.
    await publish(12);
    const first = spawnHerald(['tail', 'billing:*', '--subscription', 'ops-tail', '--from', 'earliest'], env);
    await waitFor('3 lines', () => eventLines(first).length >= 3, 30_000, 50);
    assert.equal(await first.kill('SIGINT'), 0, first.output());
    const a = eventLines(first);
    assert.equal(a.length, 3, first.output());
    for (const l of a) assert.match(l, /^\d+ {2}\d{4}-\d\d-\d\dT[\d:.]+Z {2}billing:\S+ {2}\{"i":\d+,"pad":"x*"\}$/);

    await publish(12);
    const second = spawnHerald(['tail', 'billing:*', '--subscription', 'ops-tail', '--json'], env);
    await waitFor(
      '3 more',
      () =>
        second
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{')).length >= 3,
      30_000,
      50,
    );
    assert.equal(await second.kill('SIGINT'), 0, second.output());
    const b = second
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { offset: string; sender: string; data: { i: number } });
    assert.equal(b.length, 3, second.output());
    const lastFirst = BigInt((a.at(-1) as string).split(' ')[0] as string);
    assert.ok(BigInt((b[0] as { offset: string }).offset) > lastFirst, 'resumed after the last printed event, nothing twice');
    assert.deepEqual(
      b.map((e) => e.sender),
      ['billing', 'billing', 'billing'],
    );
    const view = (await (await fetch(`${base}/api/v1/subscriptions/ops-tail`)).json()) as { ackedOffset: string; state: string };
    assert.equal(view.ackedOffset, (b.at(-1) as { offset: string }).offset, 'every printed event acknowledged');
    assert.equal(view.state, 'sleeping');
  });

  test('without --subscription: a temporary subscription, deleted at exit', async () => {
    const p = spawnHerald(['tail', '*:*', '--from', 'last:5'], env);
    await waitFor('5 lines', () => eventLines(p).length >= 5, 30_000, 50);
    assert.match(p.stderr(), /temporary subscription tail-[0-9a-f]+/);
    assert.equal(await p.kill('SIGINT'), 0, p.output());
    const list = (await (await fetch(`${base}/api/v1/subscriptions`)).json()) as { items?: { name: string }[] } | { name: string }[];
    const names = (Array.isArray(list) ? list : (list.items ?? [])).map((s) => s.name);
    assert.ok(!names.some((n) => n.startsWith('tail-')), `left behind: ${names}`);
    assert.ok(names.includes('ops-tail'));
  });

  test('bad input fails with one line: a bad selector, a bad --from (a usage error, 2), another selector for an existing name', async () => {
    const bad = spawnHerald(['tail', 'not a selector'], env);
    assert.equal(await bad.exited, 1);
    assert.match(bad.stderr(), /^herald: invalid selector/);
    const from = spawnHerald(['tail', '*:*', '--from', 'yesterday'], env);
    assert.equal(await from.exited, 2);
    assert.match(from.stderr(), /^herald: invalid --from "yesterday"/);
    const conflict = spawnHerald(['tail', 'crm:*', '--subscription', 'ops-tail'], env);
    assert.equal(await conflict.exited, 1);
    assert.match(conflict.stderr(), /^herald: subscription ops-tail at .*: .*(selector|exists).*\(gRPC ALREADY_EXISTS\)\n$/);
  });
});
