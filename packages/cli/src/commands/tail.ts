import { randomBytes } from 'node:crypto';
import { type SubscriptionEvent, type SubscriptionStart, subscription } from '@herald/client/grpc';
import { bodyJson, isJsonContentType, parseSelector } from '@herald/core';
import type { Command } from 'commander';
import { progressLine } from '../progress.ts';
import { UsageError } from '../usage.ts';
import { grpcUrlOption, type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

interface TailOptions extends HubFlags {
  subscription?: string;
  from?: string;
  grpcUrl?: string;
  json?: boolean;
}

const DATA_WIDTH = 100;

/** `--from`: new | earliest | offset:N | last:N | time:ISO. Throws a UsageError naming the flag. */
export function parseFrom(text: string): SubscriptionStart {
  if (text === 'new' || text === 'earliest') return text;
  const m = /^(offset|last|time):(.+)$/.exec(text);
  if (m) {
    const [, kind, value] = m as unknown as [string, string, string];
    if (kind === 'offset' && /^\d+$/.test(value)) return { offset: BigInt(value) };
    if (kind === 'last' && /^\d+$/.test(value) && Number(value) > 0) return { last: Number(value) };
    if (kind === 'time' && Number.isFinite(Date.parse(value))) return { time: new Date(Date.parse(value)) };
  }
  throw new UsageError(
    `invalid --from ${JSON.stringify(text)}: expected new, earliest, offset:N, last:N or time:ISO (e.g. time:2026-01-31T12:00:00Z)`,
  );
}

function isText(contentType: string): boolean {
  return isJsonContentType(contentType) || contentType.toLowerCase().startsWith('text/');
}

/** One line: offset, time, sender:type, the data as text (newlines flattened, truncated). */
export function formatLine(e: SubscriptionEvent): string {
  let data = isText(e.contentType) ? e.data.toString('utf8').replace(/\s*\n\s*/g, ' ') : `base64:${e.data.toString('base64')}`;
  if (data.length > DATA_WIDTH) data = `${data.slice(0, DATA_WIDTH - 1)}…`;
  const replay = e.replay ? `  (replay ${e.replay})` : '';
  return `${e.offset}  ${new Date(e.time).toISOString()}  ${e.sender}:${e.type}  ${data}${replay}`;
}

/** One JSON object, like `herald events --json`: `data` parsed when JSON, else `dataBase64`. */
export function formatJson(e: SubscriptionEvent): string {
  const doc: Record<string, unknown> = {
    offset: e.offset.toString(),
    id: e.id,
    sender: e.sender,
    type: e.type,
    time: new Date(e.time).toISOString(),
    contentType: e.contentType,
  };
  if (e.subject !== undefined) doc.subject = e.subject;
  if (e.correlationId !== undefined) doc.correlationId = e.correlationId;
  if (e.causationId !== undefined) doc.causationId = e.causationId;
  if (Object.keys(e.headers).length > 0) doc.headers = e.headers;
  if (e.replay !== undefined) doc.replay = e.replay;
  Object.assign(doc, bodyJson(e.contentType, e.data));
  return JSON.stringify(doc);
}

/**
 * `herald tail <selector> [--subscription NAME] [--from …] [--grpc-url host:port] [--token T] [--json]`:
 * a live tail over the hub's gRPC API, one line per event, each acknowledged once printed. The
 * token goes as `authorization: Bearer <token>` metadata on the stream and as the Authorization
 * header of the REST call.
 *
 * With --subscription the tail is durable: run it again and it resumes after the last printed
 * event (--from applies only when the subscription is created). Without, it uses a temporary
 * subscription `tail-<random>` starting at --from (default new) and deletes it over the REST API
 * (--hub-url) when it exits. It reconnects by itself when the hub restarts (a note on stderr); it stops
 * on Ctrl-C, or with one line and exit 1 on a permanent error (bad selector, a subscription that
 * exists with another selector, deleted meanwhile); a bad --from exits 2.
 */
export const registerTail: RegisterCommand = (program: Command) => {
  program
    .command('tail')
    .description('print events matching a selector as they arrive, e.g. herald tail "billing:*" --subscription ops-tail')
    .argument('<selector>', 'sender:type patterns, comma-separated')
    .option('--subscription <name>', 'a durable subscription: resume where the last tail with this name stopped')
    .option('--from <position>', 'where a new subscription starts: new (default), earliest, offset:N, last:N, time:ISO')
    .addOption(grpcUrlOption())
    .addOption(hubUrlOption('to delete the temporary subscription'))
    .addOption(tokenOption())
    .option('--json', 'one JSON object per line')
    .action(async (selector: string, o: TailOptions) => {
      parseSelector(selector);
      const start = o.from === undefined ? 'new' : parseFrom(o.from);
      // Resolved before the stream opens, so a bad URL or token fails before anything is created.
      const hub = hubOf(o);
      const temporary = o.subscription === undefined;
      const name = o.subscription ?? `tail-${randomBytes(6).toString('hex')}`;
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A closed pipe (`herald tail … | head`) ends the tail quietly.
      process.stdout.on('error', stop);
      let down = false;
      const sub = subscription(name, selector, {
        url: o.grpcUrl || undefined,
        token: hub.token,
        start,
        signal: ac.signal,
        onError: (err) => {
          if (!down) process.stderr.write(`herald tail: ${err.message}; reconnecting\n`);
          down = true;
        },
      });
      if (temporary) process.stderr.write(`herald tail: temporary subscription ${name}\n`);
      // Catching up into a file or a pipe, stderr says how far it got (on a terminal the events show it).
      const progress = process.stdout.isTTY === true ? undefined : progressLine(process.stderr);
      let head: bigint | undefined | null;
      try {
        for await (const e of sub) {
          if (progress && head === undefined) {
            head = null;
            const view = await callHub<{ headOffset?: string }>(hub, 'GET', `/subscriptions/${encodeURIComponent(name)}`).catch(
              () => undefined,
            );
            if (view?.headOffset !== undefined) head = BigInt(view.headOffset);
          }
          if (progress && typeof head === 'bigint') {
            if (e.offset < head) progress.update(`herald tail: catching up, offset ${e.offset} of ${head}`);
            else {
              progress.done();
              head = null;
            }
          }
          if (down) {
            process.stderr.write('herald tail: reconnected\n');
            down = false;
          }
          process.stdout.write(`${o.json ? formatJson(e) : formatLine(e)}\n`);
          e.ack();
        }
      } finally {
        await sub.close();
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        if (temporary) {
          await callHub(hub, 'DELETE', `/subscriptions/${encodeURIComponent(name)}`).catch((err: unknown) => {
            const why = err instanceof Error ? err.message : String(err);
            process.stderr.write(`herald tail: could not delete the temporary subscription ${name}: ${why}\n`);
          });
        }
      }
    });
};
