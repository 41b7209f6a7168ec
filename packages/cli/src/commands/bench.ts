import type { Command } from 'commander';
import { formatReport, normalizeBenchOptions, type RawBenchOptions, runBench } from '../bench/index.ts';
import { amqpUrlOption } from './flags.ts';
import type { RegisterCommand } from './index.ts';

/**
 * `herald bench`: N senders × M types through the SDK to the five receiver kinds at once; reports
 * loss, duplicates, reordering, send→receive latency and throughput, optionally against raw
 * amqplib. Exits 1 when anything is lost, reordered or misrouted, and with a clear message when
 * events do not reach herald.events (no hub and no archive binding); 2 for a bad flag. Never
 * changes topology.
 */
export const registerBench: RegisterCommand = (program: Command) => {
  program
    .command('bench')
    .description('measure send→receive latency, throughput and ordering for the five receiver kinds')
    .option('--senders <n>', 'senders s1…sN, one publisher each (default 3)')
    .option('--types <m>', 'event types t1…tM (default 4)')
    .option('--rate <r>', 'events per second over all senders, or max (default max)')
    .option('--count <n>', 'events to send (default 10000)')
    .option('--duration <duration>', 'send for this long instead of a count, e.g. 20s, 2m; a bare number is seconds')
    .option('--size <bytes>', 'event body size (default 1024)')
    .option('--seed <n>', 'seed of the type choice (default 1)')
    .option('--in-flight <n>', 'unconfirmed publishes per sender at most (default 1000)')
    .option('--prefetch <n>', 'receiver prefetch (default 500)')
    .option(
      '--drain-timeout <duration>',
      'after the last confirm, wait this long without deliveries before counting the rest lost; a bare number is ms (default 5s)',
    )
    .option('--warmup <duration>', 'how long a probe event may take to arrive before the run fails; a bare number is ms (default 5s)')
    .option('--receivers <kinds>', 'receiver kinds to run, comma-separated, including all (default: one-sender,types,pairs,senders,all)')
    .option('--baseline', 'also measure raw amqplib (confirms, manual acks) with the same load')
    .option('--json', 'print one JSON object on stdout')
    .option('--quiet', 'no progress lines on stderr')
    .addOption(amqpUrlOption())
    .action(async (raw: RawBenchOptions) => {
      const opts = normalizeBenchOptions(raw);
      const log = opts.quiet ? () => {} : (line: string) => process.stderr.write(`bench: ${line}\n`);
      const report = await runBench(opts, log);
      process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : formatReport(report));
      if (!report.ok) process.exitCode = 1;
    });
};
