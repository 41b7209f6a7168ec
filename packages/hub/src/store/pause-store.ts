import { parseSelector } from '@herald/core';
import type { Pause } from '../pauses/pause.ts';
import type { SqlExecutor } from './driver.ts';
import { epochMs, optionalMs, tsParam } from './sql-helpers.ts';

interface PauseRow {
  id: string;
  selector: string;
  reason: string | null;
  replay_id: string | null;
  created_ms: number;
  expires_ms: number;
  ended_ms: number | null;
  released_ms: number | null;
}

const COLUMNS = `id::text AS id, selector, reason, replay_id::text AS replay_id,
  ${epochMs('created_at')} AS created_ms, ${epochMs('expires_at')} AS expires_ms,
  ${epochMs('ended_at')} AS ended_ms, ${epochMs('released_at')} AS released_ms`;

function toPause(r: PauseRow): Pause {
  return {
    id: r.id,
    selector: parseSelector(r.selector),
    reason: r.reason ?? undefined,
    replayId: r.replay_id ?? undefined,
    createdAt: Number(r.created_ms),
    expiresAt: Number(r.expires_ms),
    endedAt: optionalMs(r.ended_ms),
    releasedAt: optionalMs(r.released_ms),
  };
}

/**
 * The `pauses` table (migration 002). Times are the hub's clock (epoch ms passed in), so a timer
 * armed from a pause's expiry and the query that ends it agree. Every method is one statement and
 * rejects when the database fails.
 */
export interface PauseStore {
  insert(p: Omit<Pause, 'endedAt' | 'releasedAt'>): Promise<void>;
  get(id: string): Promise<Pause | undefined>;
  /** User pauses (not the replays' own) that still hold: active, or ended with events still being released. */
  listUnreleased(): Promise<Pause[]>;
  /** Every pause that still holds, the replays' own included: the dispatcher's holding set at start. */
  loadHolding(): Promise<Pause[]>;
  /** Ends an active user pause; undefined when there is no such pause or it ended already. */
  end(id: string, at: number): Promise<Pause | undefined>;
  /** Ends every active pause whose expiry is at or before `now`; returns their ids. */
  endExpired(now: number): Promise<string[]>;
  /** Ends the pause of a finished replay (done or failed), also one a crash left behind. */
  endForFinishedReplays(at: number): Promise<string[]>;
  markReleased(ids: readonly string[], at: number): Promise<void>;
}

/** The PauseStore over an SQL executor. */
export function createPauseStore(sql: SqlExecutor): PauseStore {
  return {
    async insert(p) {
      await sql.query(
        `INSERT INTO pauses (id, selector, reason, replay_id, created_at, expires_at) VALUES ($1, $2, $3, $4, ${tsParam(5)}, ${tsParam(6)})`,
        [p.id, p.selector.canonical, p.reason ?? null, p.replayId ?? null, p.createdAt, p.expiresAt],
      );
    },
    async get(id) {
      const { rows } = await sql.query<PauseRow>(`SELECT ${COLUMNS} FROM pauses WHERE id = $1::uuid`, [id]);
      return rows[0] ? toPause(rows[0]) : undefined;
    },
    async listUnreleased() {
      const { rows } = await sql.query<PauseRow>(
        `SELECT ${COLUMNS} FROM pauses WHERE released_at IS NULL AND replay_id IS NULL ORDER BY created_at, id`,
        [],
      );
      return rows.map(toPause);
    },
    async loadHolding() {
      const { rows } = await sql.query<PauseRow>(`SELECT ${COLUMNS} FROM pauses WHERE released_at IS NULL ORDER BY created_at, id`, []);
      return rows.map(toPause);
    },
    async end(id, at) {
      const { rows } = await sql.query<PauseRow>(
        `UPDATE pauses SET ended_at = ${tsParam(2)} WHERE id = $1::uuid AND ended_at IS NULL AND replay_id IS NULL RETURNING ${COLUMNS}`,
        [id, at],
      );
      return rows[0] ? toPause(rows[0]) : undefined;
    },
    async endExpired(now) {
      const { rows } = await sql.query<{ id: string }>(
        `UPDATE pauses SET ended_at = ${tsParam(1)} WHERE ended_at IS NULL AND expires_at <= ${tsParam(1)} RETURNING id::text AS id`,
        [now],
      );
      return rows.map((r) => r.id);
    },
    async endForFinishedReplays(at) {
      const { rows } = await sql.query<{ id: string }>(
        `UPDATE pauses p SET ended_at = ${tsParam(1)} FROM replays r
          WHERE p.replay_id = r.id AND p.ended_at IS NULL AND r.status IN ('done', 'failed', 'cancelled') RETURNING p.id::text AS id`,
        [at],
      );
      return rows.map((r) => r.id);
    },
    async markReleased(ids, at) {
      if (ids.length === 0) return;
      await sql.query(`UPDATE pauses SET released_at = ${tsParam(2)} WHERE id = ANY($1::uuid[]) AND released_at IS NULL`, [ids, at]);
    },
  };
}
