import { parseSelector } from '@herald/core';
import { boundToJson, type Replay, type ReplayFrom, type ReplayStatus, type ReplayTarget, type ReplayTo } from '../replays/replay.ts';
import type { SqlExecutor } from './driver.ts';
import { epochMs, optionalMs, toBigInt, tsParam } from './sql-helpers.ts';

interface ReplayRow {
  id: string;
  selector: string;
  target: string;
  from_spec: Record<string, unknown> | string;
  to_spec: Record<string, unknown> | string | null;
  after_offset: string;
  up_to: string;
  since_ms: number | null;
  until_ms: number | null;
  status: ReplayStatus;
  position: string;
  count: string;
  created_ms: number;
  finished_ms: number | null;
  error: string | null;
}

const COLUMNS = `id::text AS id, selector, target, from_spec, to_spec, after_offset::text AS after_offset, up_to::text AS up_to,
  ${epochMs('since')} AS since_ms, ${epochMs('until')} AS until_ms, status, position::text AS position, count::text AS count,
  ${epochMs('created_at')} AS created_ms, ${epochMs('finished_at')} AS finished_ms, error`;

function bound(spec: Record<string, unknown> | string): ReplayFrom {
  const o = (typeof spec === 'string' ? JSON.parse(spec) : spec) as Record<string, unknown>;
  if ('last' in o) return { last: Number(o.last) };
  if ('offset' in o) return { offset: toBigInt(o.offset) };
  return { time: Date.parse(String(o.time)) };
}

const SUBSCRIPTION_PREFIX = 'subscription:';

/** The `target` column: `flow`, or `subscription:<name>` for a replay into one durable subscription. */
function targetText(t: ReplayTarget): string {
  return t === 'flow' ? 'flow' : `${SUBSCRIPTION_PREFIX}${t.subscription}`;
}

function targetOf(text: string): ReplayTarget {
  return text.startsWith(SUBSCRIPTION_PREFIX) ? { subscription: text.slice(SUBSCRIPTION_PREFIX.length) } : 'flow';
}

function toReplay(r: ReplayRow): Replay {
  return {
    id: r.id,
    selector: parseSelector(r.selector),
    from: bound(r.from_spec),
    to: r.to_spec === null ? undefined : (bound(r.to_spec) as ReplayTo),
    target: targetOf(r.target),
    status: r.status,
    count: Number(r.count),
    after: toBigInt(r.after_offset),
    upTo: toBigInt(r.up_to),
    since: optionalMs(r.since_ms),
    until: optionalMs(r.until_ms),
    position: toBigInt(r.position),
    createdAt: Number(r.created_ms),
    finishedAt: optionalMs(r.finished_ms),
    error: r.error ?? undefined,
  };
}

/** The columns every new replay row sets first, and their values ($1…$9). */
const INSERT_COLUMNS = 'id, selector, target, from_spec, to_spec, after_offset, up_to, since, until';
const INSERT_VALUES = `$1::uuid, $2, $3, $4::jsonb, $5::jsonb, $6::bigint, $7::bigint, ${tsParam(8)}, ${tsParam(9)}`;
function insertParams(r: Replay): unknown[] {
  return [
    r.id,
    r.selector.canonical,
    targetText(r.target),
    JSON.stringify(boundToJson(r.from)),
    r.to === undefined ? null : JSON.stringify(boundToJson(r.to)),
    r.after.toString(),
    r.upTo.toString(),
    r.since ?? null,
    r.until ?? null,
  ];
}

/**
 * The `replays` table (migration 002): replays into the flow (target `flow`, run by the dispatcher)
 * and into one durable subscription (target `subscription:<name>`, run by the subscription manager).
 * Every method is one statement (a flow replay and the pause that holds its flow are written
 * together), and rejects when the database fails.
 */
export interface ReplayStore {
  /** Inserts a pending flow replay and its pause (id `pauseId`, expiring at `pauseExpiresAt`) in one statement. */
  insert(replay: Replay, pause: { id: string; expiresAt: number }): Promise<void>;
  /**
   * Inserts a replay into a subscription (no pause: it holds nothing), with its `status` (`pending`,
   * or `done` when nothing matched) and `finishedAt`.
   */
  insertForSubscription(replay: Replay): Promise<void>;
  get(id: string): Promise<Replay | undefined>;
  /**
   * Pending or running replays of one kind, oldest first: what a starting dispatcher (`flow`, the
   * default) or subscription manager (`subscription`) continues.
   */
  listUnfinished(kind?: 'flow' | 'subscription'): Promise<Replay[]>;
  /**
   * Records progress after a chunk was sent; the replay is running from then on. `upTo` lowers the
   * end of its range (a subscription replay is capped at what its consumer was given). Does nothing
   * to a finished replay.
   */
  progress(id: string, position: bigint, count: number, upTo?: bigint): Promise<void>;
  /** Marks the replay done, failed or cancelled and ends its pause, in one statement. */
  finish(id: string, status: 'done' | 'failed' | 'cancelled', at: number, error?: string): Promise<void>;
}

/** The ReplayStore over an SQL executor. */
export function createReplayStore(sql: SqlExecutor): ReplayStore {
  return {
    async insert(r, pause) {
      await sql.query(
        `WITH r AS (
           INSERT INTO replays (${INSERT_COLUMNS}, status, position, count, created_at)
           VALUES (${INSERT_VALUES}, 'pending', $6::bigint, 0, ${tsParam(10)})
         )
         INSERT INTO pauses (id, selector, reason, replay_id, created_at, expires_at)
         VALUES ($11::uuid, $2, 'replay ' || $1, $1::uuid, ${tsParam(10)}, ${tsParam(12)})`,
        [...insertParams(r), r.createdAt, pause.id, pause.expiresAt],
      );
    },
    async insertForSubscription(r) {
      await sql.query(
        `INSERT INTO replays (${INSERT_COLUMNS}, status, position, count, created_at, finished_at)
         VALUES (${INSERT_VALUES}, $10, $11::bigint, $12::bigint, ${tsParam(13)}, ${tsParam(14)})`,
        [...insertParams(r), r.status, r.position.toString(), r.count, r.createdAt, r.finishedAt ?? null],
      );
    },
    async get(id) {
      const { rows } = await sql.query<ReplayRow>(`SELECT ${COLUMNS} FROM replays WHERE id = $1::uuid`, [id]);
      return rows[0] ? toReplay(rows[0]) : undefined;
    },
    async listUnfinished(kind = 'flow') {
      const { rows } = await sql.query<ReplayRow>(
        `SELECT ${COLUMNS} FROM replays WHERE status IN ('pending', 'running') AND ${kind === 'flow' ? `target = 'flow'` : `target LIKE '${SUBSCRIPTION_PREFIX}%'`}
          ORDER BY created_at, id`,
        [],
      );
      return rows.map(toReplay);
    },
    async progress(id, position, count, upTo) {
      await sql.query(
        `UPDATE replays SET status = 'running', position = $2::bigint, count = $3::bigint, up_to = coalesce($4::bigint, up_to),
          started_at = coalesce(started_at, now())
          WHERE id = $1::uuid AND status IN ('pending', 'running')`,
        [id, position.toString(), count, upTo === undefined ? null : upTo.toString()],
      );
    },
    async finish(id, status, at, error) {
      await sql.query(
        `WITH p AS (UPDATE pauses SET ended_at = ${tsParam(3)} WHERE replay_id = $1::uuid AND ended_at IS NULL)
         UPDATE replays SET status = $2, finished_at = ${tsParam(3)}, error = $4 WHERE id = $1::uuid`,
        [id, status, at, error ?? null],
      );
    },
  };
}
