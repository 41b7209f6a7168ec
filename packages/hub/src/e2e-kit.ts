import assert from 'node:assert/strict';
import { INGEST_EXCHANGE } from '@herald/core';
import { createRawPublisher, makeEvents, type RawMessage } from '@herald/testing';
import { connect } from 'amqplib';
import type { checkLog } from './ingest/check-log.ts';

// Shared by the hub's end-to-end files (archive mode on PostgreSQL and on the embedded store).

/** `senders` publishers in parallel, each on its own connection with confirms; resolves with the confirmed messages. */
export async function publishFromSenders(
  url: string,
  total: number,
  senders: string[][],
): Promise<{ confirmed: RawMessage[]; ms: number }> {
  const t0 = Date.now();
  const per = Math.ceil(total / senders.length);
  const parts = await Promise.all(
    senders.map(async (s, i) => {
      const msgs = makeEvents(Math.min(per, total - i * per), { senders: s, size: 200 });
      const pub = await createRawPublisher(url);
      try {
        const ok = await pub.publishMany(INGEST_EXCHANGE, msgs, 1000);
        return msgs.filter((_, j) => ok[j]);
      } finally {
        await pub.close();
      }
    }),
  );
  return { confirmed: parts.flat(), ms: Date.now() - t0 };
}

export async function queueDepth(url: string, queue: string): Promise<number> {
  const conn = await connect(url);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await conn.close();
  }
}

export function assertComplete(log: Awaited<ReturnType<typeof checkLog>>, confirmed: readonly RawMessage[], exact: boolean): void {
  if (exact) assert.equal(log.count, confirmed.length, 'one row per published event');
  assert.equal(log.ids.size, log.count, 'each id at most once');
  assert.equal(log.offsetBreaks, 0, 'offsets 1..N with no gap');
  assert.equal(log.head, BigInt(log.count));
  let missing = 0;
  for (const m of confirmed) if (!log.ids.has(String(m.options?.messageId))) missing++;
  assert.equal(missing, 0, 'every confirmed event is in the log');
}
