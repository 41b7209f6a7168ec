// Example: log severities (seed 002). One logger publishes debug, info, critical and error records;
// four consumers select debug+info+critical+error, debug+info, critical, and error, and each prints
// how many records of each type it received. Ends by itself: exit 0 when every consumer received
// exactly what its selector matches, 1 otherwise (or after --timeout).
//
//   npm start                          # the hub (router mode), in another shell
//   npm run example -- log-severity    # [--debug N --info N --critical N --error N] [--prefix P] [--timeout MS] [--json]
//
// RabbitMQ: HERALD_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672. The hub's REST API, where the
// example first puts its events in the catalog (catalog.json): HERALD_HUB_URL, else
// http://127.0.0.1:8080 (and HERALD_TOKEN when the hub has auth on).
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type CatalogEntry, putCatalogEntries } from '@herald/client';
import { CONSUMERS, createLogger, type LogConsumer, SEVERITIES, type Severity, startLogConsumer } from './logs.ts';

const USAGE =
  'usage: npm run example -- log-severity [--debug N] [--info N] [--critical N] [--error N] [--prefix P] [--timeout MS] [--json]';

interface Options {
  readonly prefix: string;
  readonly sender: string;
  readonly counts: Record<Severity, number>;
  readonly timeoutMs: number;
  readonly json: boolean;
}

function integer(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) > max)
    throw new Error(`--${name} ${JSON.stringify(value)}: expected an integer from 0 to ${max}`);
  return Number(value);
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      debug: { type: 'string' },
      info: { type: 'string' },
      critical: { type: 'string' },
      error: { type: 'string' },
      prefix: { type: 'string', default: '' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const defaults: Record<Severity, number> = { debug: 40, info: 30, critical: 20, error: 10 };
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, integer(s, values[s], defaults[s], 100_000)])) as Record<Severity, number>;
  const sender = `${values.prefix}app`;
  // The sender rule of DESIGN.md §1; the SDK would refuse it too, but later and less plainly.
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(sender))
    throw new Error(`--prefix ${JSON.stringify(values.prefix)}: the sender "${sender}" must match [A-Za-z0-9_-]{1,64}`);
  return { prefix: values.prefix, sender, counts, timeoutMs: integer('timeout', values.timeout, 30_000, 3_600_000), json: values.json };
}

/** Interleaves the severities (d, i, c, e, d, i, …) until each has its count, so order is mixed. */
function schedule(counts: Record<Severity, number>): Severity[] {
  const left = { ...counts };
  const out: Severity[] = [];
  while (SEVERITIES.some((s) => left[s] > 0)) {
    for (const s of SEVERITIES) {
      if (left[s] > 0) {
        out.push(s);
        left[s]--;
      }
    }
  }
  return out;
}

function expectedOf(consumer: LogConsumer, counts: Record<Severity, number>): Record<string, number> {
  return Object.fromEntries(consumer.spec.severities.filter((s) => counts[s] > 0).map((s) => [`log.${s}`, counts[s]]));
}

function same(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => (a[k] ?? 0) === (b[k] ?? 0));
}

function reached(got: Record<string, number>, want: Record<string, number>): boolean {
  return Object.entries(want).every(([k, n]) => (got[k] ?? 0) >= n);
}

/** Rejects with `what` after `ms`; the timer never keeps the process alive. */
function deadline(ms: number, what: () => string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(what())), ms).unref());
}

async function main(): Promise<boolean> {
  const opts = options(process.argv.slice(2));
  const run = randomUUID();
  const started = Date.now();
  const end = started + opts.timeoutMs;
  const types = SEVERITIES.map((s) => `log.${s}`);
  // What the logger publishes, in the hub's catalog (validated there): catalog.json, for this sender.
  const catalog = JSON.parse(await readFile(new URL('./catalog.json', import.meta.url), 'utf8')) as { events: CatalogEntry[] };
  await putCatalogEntries(catalog.events.map((e) => ({ ...e, sender: `${opts.prefix}${e.sender}` })));

  let wake: () => void = () => undefined;
  const consumers = CONSUMERS.map((spec) => startLogConsumer(opts.sender, run, spec, () => wake()));
  const logger = createLogger(opts.sender);
  try {
    // Every queue must be bound before the first publish, or it would miss what went by.
    await Promise.race([
      Promise.all(consumers.map((c) => c.ready)),
      deadline(
        opts.timeoutMs,
        () => `timed out after ${opts.timeoutMs} ms binding the consumers' queues: is RabbitMQ up at HERALD_AMQP_URL?`,
      ),
    ]);

    const publishing = Date.now();
    const order = schedule(opts.counts);
    if (!opts.json) {
      const mix = SEVERITIES.map((s) => `log.${s} ${opts.counts[s]}`).join(', ');
      console.log(`sender ${opts.sender}, run ${run}: publishing ${order.length} records (${mix})`);
    }
    await Promise.race([
      Promise.all(order.map((severity, seq) => logger.log(severity, { run, seq, message: `${severity} record ${seq}` }))),
      deadline(end - Date.now(), () => `timed out after ${opts.timeoutMs} ms publishing: is the hub running (npm start)?`),
    ]);
    const published = Date.now();

    // The positive signal: every consumer has at least what its selector matches.
    const expected = new Map(consumers.map((c) => [c, expectedOf(c, opts.counts)]));
    const done = () => consumers.every((c) => reached(c.counts(), expected.get(c) ?? {}));
    if (!done()) {
      await Promise.race([
        new Promise<void>((resolve) => {
          wake = () => {
            if (done()) resolve();
          };
        }),
        deadline(end - Date.now(), () => {
          const short = consumers.map((c) => `${c.spec.name} ${JSON.stringify(c.counts())} of ${JSON.stringify(expected.get(c))}`);
          return `timed out after ${opts.timeoutMs} ms waiting for the consumers: ${short.join('; ')}`;
        }),
      ]);
    }

    const ok = consumers.every((c) => same(c.counts(), expected.get(c) ?? {}));
    if (opts.json) {
      const report = {
        sender: opts.sender,
        run,
        published: Object.fromEntries(SEVERITIES.map((s) => [`log.${s}`, opts.counts[s]])),
        consumers: Object.fromEntries(
          consumers.map((c) => [c.spec.name, { selector: c.selector, counts: c.counts(), duplicates: c.duplicates, foreign: c.foreign }]),
        ),
        ok,
      };
      console.log(JSON.stringify(report));
    } else {
      console.log(`published in ${published - publishing} ms; delivered to every consumer in ${Date.now() - published} ms more`);
      const width = Math.max(...consumers.map((c) => c.spec.name.length));
      console.log(['consumer'.padEnd(width), ...types, 'total'].join('  '));
      for (const c of consumers) {
        const counts = c.counts();
        const cells = types.map((t) => String(counts[t] ?? 0).padStart(t.length));
        const total = Object.values(counts).reduce((a, b) => a + b, 0);
        const extra = [c.duplicates ? `${c.duplicates} duplicate deliveries` : '', c.foreign ? `${c.foreign} of other runs ignored` : '']
          .filter(Boolean)
          .join(', ');
        console.log(
          [c.spec.name.padEnd(width), ...cells, String(total).padStart(5), `  ${c.selector.join(', ')}`, extra].join('  ').trimEnd(),
        );
      }
      console.log(
        ok ? 'every consumer received exactly what its selector matches' : 'MISMATCH: a consumer received more than its selector matches',
      );
    }
    return ok;
  } finally {
    // Bounded: with RabbitMQ gone, close() would wait for the confirm timeout.
    await Promise.race([
      Promise.allSettled([logger.close(), ...consumers.map((c) => c.close())]),
      new Promise((resolve) => setTimeout(resolve, 5_000).unref()),
    ]);
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    console.error(`log-severity: ${err instanceof Error ? err.message : String(err)}`);
    const code = (err as { code?: unknown }).code;
    if ((err instanceof Error && err.message.startsWith('--')) || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')))
      console.error(USAGE);
    process.exit(1);
  },
);
