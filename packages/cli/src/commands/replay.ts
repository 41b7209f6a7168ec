import type { Command } from 'commander';
import { progressLine } from '../progress.ts';
import { UsageError } from '../usage.ts';
import { type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

interface ReplayDoc {
  id: string;
  status: string;
  count: number;
  error?: string | null;
}

function int(flag: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`invalid ${flag} ${JSON.stringify(v)}: expected a whole number`);
  return Number(v);
}

/**
 * `herald replay <selector> --last N | --from-offset N | --since TIME [--to-offset N | --until TIME] [--wait]`:
 * re-sends stored events into the flow (herald.events, marked with x-herald-replay) over the hub's
 * REST API; prints the replay id. With --wait, polls until done and prints the count; exits 1 if
 * the replay failed, 2 for flags that are wrong or exclude each other. `herald replay-status <id>` prints a replay's state; `herald replay-cancel <id>`
 * stops a replay (DELETE /api/v1/replays/{id}) and prints its state, `cancelled` (or how it finished
 * when it finished first).
 */
export const registerReplay: RegisterCommand = (program: Command) => {
  program
    .command('replay')
    .description('re-send stored events matching a selector into the flow, marked as a replay')
    .argument('<selector>', 'sender:type patterns, comma-separated')
    .option('--last <n>', 'the last N matching events')
    .option('--from-offset <n>', 'from this offset (inclusive)')
    .option('--since <time>', 'from this event time (ISO 8601, inclusive)')
    .option('--to-offset <n>', 'up to this offset (inclusive; default: the head of the log)')
    .option('--until <time>', 'up to this event time (exclusive)')
    .option('--wait', 'wait until the replay finished')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(
      async (
        selector: string,
        o: HubFlags & { last?: string; fromOffset?: string; since?: string; toOffset?: string; until?: string; wait?: boolean },
      ) => {
        const starts = [o.last, o.fromOffset, o.since].filter((v) => v !== undefined);
        if (starts.length !== 1) throw new UsageError('give exactly one of --last, --from-offset, --since');
        if (o.toOffset !== undefined && o.until !== undefined) throw new UsageError('give at most one of --to-offset, --until');
        const from =
          o.last !== undefined
            ? { last: int('--last', o.last) }
            : o.fromOffset !== undefined
              ? { offset: int('--from-offset', o.fromOffset) }
              : { time: o.since };
        const to =
          o.toOffset !== undefined ? { offset: int('--to-offset', o.toOffset) } : o.until !== undefined ? { time: o.until } : undefined;
        const hub = hubOf(o);
        let r = await callHub<ReplayDoc>(hub, 'POST', '/replays', { selector, from, ...(to ? { to } : {}), target: 'flow' });
        if (!o.wait) {
          process.stdout.write(`replay ${r.id} ${r.status}\n`);
          return;
        }
        const progress = progressLine(process.stderr);
        while (r.status === 'pending' || r.status === 'running') {
          await new Promise((res) => setTimeout(res, 200));
          r = await callHub<ReplayDoc>(hub, 'GET', `/replays/${r.id}`);
          progress.update(`replay ${r.id} ${r.status}: ${r.count} event(s) sent`);
        }
        progress.done();
        process.stdout.write(`replay ${r.id} ${r.status}: ${r.count} event(s)${r.error ? ` (${r.error})` : ''}\n`);
        if (r.status === 'failed' || r.status === 'cancelled') process.exitCode = 1;
      },
    );
  program
    .command('replay-status')
    .description("print a replay's status and count")
    .argument('<id>', 'the replay id')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(async (id: string, o: HubFlags) => {
      const r = await callHub<ReplayDoc>(hubOf(o), 'GET', `/replays/${encodeURIComponent(id)}`);
      process.stdout.write(`replay ${r.id} ${r.status}: ${r.count} event(s)${r.error ? ` (${r.error})` : ''}\n`);
    });
  program
    .command('replay-cancel')
    .description('cancel a replay: no more of its events are sent, its held live events go out')
    .argument('<id>', 'the replay id')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .action(async (id: string, o: HubFlags) => {
      const r = await callHub<ReplayDoc>(hubOf(o), 'DELETE', `/replays/${encodeURIComponent(id)}`);
      process.stdout.write(`replay ${r.id} ${r.status}: ${r.count} event(s)${r.error ? ` (${r.error})` : ''}\n`);
    });
};
