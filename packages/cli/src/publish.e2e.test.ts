// `herald publish` against a hub process: --traceparent and --tracestate travel with the event into
// the log; a malformed one is a usage error (exit 2, the flag named) found before connecting.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RouterHub, restClient, spawnHerald, startRouterHub, waitFor } from '@herald/testing';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** Runs `herald publish <args>` to its end: the exit code, the id it printed (if any) and stderr. */
async function publish(args: string[], env: Record<string, string>) {
  const p = spawnHerald(['publish', ...args], env);
  const code = await p.exited;
  return { code, stderr: p.stderr(), id: /^[0-9a-f]{8}-[0-9a-f-]{27}$/m.exec(p.output())?.[0] };
}

describe('herald publish, hub process', { timeout: 88_000 }, () => {
  let fx: RouterHub;
  let env: Record<string, string>;

  before(async () => {
    fx = await startRouterHub('clipub');
    env = { HERALD_AMQP_URL: fx.vhost.url };
  });
  after(async () => {
    await fx?.close();
  });

  test('--traceparent and --tracestate reach the log with the event', async () => {
    const r = await publish(
      ['billing', 'invoice.paid', '{"amount":42}', '--traceparent', TRACEPARENT, '--tracestate', 'rojo=00f067aa0ba902b7'],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.id, 'it printed the id');
    const id = r.id;
    const call = restClient(fx.http);
    let event: Record<string, unknown> = {};
    await waitFor(
      'the event in the log',
      async () => {
        const got = await call('GET', `/api/v1/events/by-id/${id}`);
        if (got.status === 200) event = got.json();
        return got.status === 200;
      },
      30_000,
      100,
    );
    assert.equal(event.traceparent, TRACEPARENT);
    assert.equal(event.tracestate, 'rojo=00f067aa0ba902b7');
    assert.deepEqual(event.data, { amount: 42 });
  });

  test('a malformed --traceparent or --tracestate, or a tracestate alone: exit 2 naming the flag, nothing sent', async () => {
    // An unreachable broker: had the command tried to connect, it would exit 1 saying so.
    const nowhere = { HERALD_AMQP_URL: 'amqp://127.0.0.1:1' };
    for (const [flags, message] of [
      [['--traceparent', '00-xyz'], /^herald: invalid --traceparent: "00-xyz" is not 00-<32 hex digits>/],
      [['--traceparent', TRACEPARENT, '--tracestate', 'not a member'], /^herald: invalid --tracestate: list member "not a member"/],
      [['--tracestate', 'rojo=1'], /^herald: invalid --tracestate: a tracestate needs a traceparent/],
    ] as const) {
      const r = await publish(['billing', 'invoice.paid', '{}', ...flags], nowhere);
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split('\n');
      assert.match(lines[0] ?? '', message);
      assert.equal(lines[1], '(see herald publish --help)');
      assert.equal(lines.length, 2, r.stderr);
    }
  });
});
