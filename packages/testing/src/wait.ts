import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `fn` every `intervalMs` until it returns true; rejects with "timed out waiting for <what>"
 * after `timeoutMs`. For conditions a test cannot be told about (rows in a table, queue depth).
 */
export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 60_000, intervalMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}
