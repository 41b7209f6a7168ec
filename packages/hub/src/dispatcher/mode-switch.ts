import { ErrorCodes, HeraldError } from '@herald/core';
import type { Store } from '../store/index.ts';

/** Pauses named in the refusal, at most. */
const NAMED = 5;

/**
 * Checks, before a hub starts in archive mode, that no pause holds the flow (docs/composition.md,
 * "Mode switches"). Archive mode delivers straight from `herald.ingest` to `herald.events`: it can
 * neither hold events nor release held ones before newer events of their flow, so switching while
 * a pause holds would strand its events (guarantee 4: a pause always ends, held events go out
 * first). Pauses that ended or expired with nothing held, and the pauses of finished replays, are
 * closed here (nothing is left to release). Anything else refuses the start with CONFLICT, one
 * line that says what holds and what to do: run in router mode until the pauses end.
 *
 * Rejects with the database's error when it fails (the start fails; nothing changed).
 */
export async function assertArchiveSwitchSafe(store: Pick<Store, 'pauses' | 'held' | 'replays'>, now = Date.now()): Promise<void> {
  const { pauses } = store;
  const held = await store.held.total();
  const unfinished = await store.replays.listUnfinished('flow');
  if (held === 0) {
    await pauses.endExpired(now);
    await pauses.endForFinishedReplays(now);
  }
  const holding = await pauses.loadHolding();
  const running = new Set(unfinished.map((r) => r.id));
  const blocking =
    held > 0 ? holding : holding.filter((p) => p.endedAt === undefined || (p.replayId !== undefined && running.has(p.replayId)));
  if (held === 0 && blocking.length === 0) {
    // Ended with nothing left to hold: closed, as the router's release pass would have.
    await pauses.markReleased(
      holding.map((p) => p.id),
      now,
    );
    return;
  }
  const named = blocking
    .slice(0, NAMED)
    .map((p) =>
      p.replayId !== undefined
        ? `replay ${p.replayId} on ${p.selector.canonical}`
        : `pause ${p.id} on ${p.selector.canonical} ${p.endedAt === undefined ? `until ${new Date(p.expiresAt).toISOString()}` : '(ended, not yet released)'}`,
    );
  if (named.length === 0) named.push('their pauses ended, their release did not finish');
  const more = blocking.length > NAMED ? `, and ${blocking.length - NAMED} more` : '';
  throw new HeraldError(
    ErrorCodes.CONFLICT,
    `HERALD_MODE=archive refused: ${blocking.length} pause${blocking.length === 1 ? '' : 's'} still hold${blocking.length === 1 ? 's' : ''} the flow ` +
      `(${held} event${held === 1 ? '' : 's'} held: ${named.join('; ')}${more}). Archive mode can neither hold events nor release ` +
      'held ones before newer events: run the hub in router mode until they end (resume with DELETE /api/v1/pauses/{id} ' +
      'or `herald resume <id>`, or let them expire; a replay ends by itself), then switch',
    { details: { parameter: 'HERALD_MODE', pauses: blocking.length, held } },
  );
}
