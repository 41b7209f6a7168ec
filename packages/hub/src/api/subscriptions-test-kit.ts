// Test helpers for the subscription routes' int and e2e tests (not exported by the package).
import { waitFor } from '@herald/testing';

/** One Server-Sent Events connection, read as it arrives. */
export interface SseClient {
  readonly status: number;
  readonly events: { id: string | undefined; event: string; data: { offset: string; replay?: string; type: string } }[];
  readonly comments: string[];
  /** Resolves once the server ended the stream. */
  readonly done: Promise<void>;
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  /** Starts reading a stream opened with `paused`. */
  resume(): void;
  close(): Promise<void>;
}

/**
 * Opens an SSE stream with fetch and parses it as it arrives: events (data parsed as JSON) and
 * comments. `paused` leaves the body unread (the socket fills up) until resume().
 */
export async function openSse(url: string, headers: Record<string, string> = {}, paused = false): Promise<SseClient> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal });
  const out: SseClient['events'] = [];
  const comments: string[] = [];
  let buf = '';
  let resume = () => {};
  const resumed = paused ? new Promise<void>((r) => (resume = r)) : Promise.resolve();
  const done = (async () => {
    await resumed;
    if (!res.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let i = buf.indexOf('\n\n');
        while (i >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          i = buf.indexOf('\n\n');
          if (frame.startsWith(':')) {
            comments.push(frame.slice(1).trim());
            continue;
          }
          const f: Record<string, string> = {};
          for (const line of frame.split('\n')) {
            const c = line.indexOf(': ');
            f[line.slice(0, c)] = line.slice(c + 2);
          }
          if (f.data !== undefined) out.push({ id: f.id, event: f.event ?? 'message', data: JSON.parse(f.data) });
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return {
    status: res.status,
    events: out,
    comments,
    done,
    async waitFor(n, timeoutMs = 20_000) {
      await waitFor(`${n} SSE events (have ${out.length})`, () => out.length >= n, timeoutMs, 10);
    },
    resume: () => resume(),
    async close() {
      resume();
      ac.abort();
      await done;
    },
  };
}
