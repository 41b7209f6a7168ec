// The example's database: the order service's write model (`orders`) and the read model's own
// tables (`order_views`, `order_stats`, `rejected_events`). Both live in one database here for a
// one-command run; nothing in the code relies on that, each side touches only its own tables.
import pg from 'pg';

/** The default: a local database the example creates on first run. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/herald_orders_example';

/** Creates the database named in `url` when the server says it does not exist. */
export async function ensureDatabase(url: string): Promise<void> {
  const probe = new pg.Client({ connectionString: url });
  try {
    await probe.connect();
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err; // 3D000: invalid_catalog_name
  } finally {
    await probe.end().catch(() => undefined);
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`database name ${JSON.stringify(name)}: create it yourself, or use [a-z0-9_]`);
  target.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: target.href });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    if ((err as { code?: string }).code !== '42P04') throw err; // 42P04: created meanwhile by another process
  } finally {
    await admin.end();
  }
}

/** The order service's tables: the state that commands change. */
export async function migrateWriteModel(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS orders (
      id          uuid PRIMARY KEY,
      customer    text NOT NULL,
      items       jsonb NOT NULL,
      total_cents bigint NOT NULL,
      status      text NOT NULL CHECK (status IN ('placed', 'paid', 'shipped')),
      placed_at   timestamptz NOT NULL DEFAULT now(),
      updated_at  timestamptz NOT NULL DEFAULT now()
    )`);
}

/** The read model's tables: what the queries read, built only from events. */
export async function migrateReadModel(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS order_views (
      id          uuid PRIMARY KEY,
      customer    text,
      total_cents bigint,
      paid_cents  bigint,
      status      text NOT NULL,
      placed_at   timestamptz,
      paid_at     timestamptz,
      shipped_at  timestamptz,
      last_offset bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS order_stats (
      id            boolean PRIMARY KEY DEFAULT true CHECK (id),
      placed        bigint NOT NULL DEFAULT 0,
      paid          bigint NOT NULL DEFAULT 0,
      shipped       bigint NOT NULL DEFAULT 0,
      revenue_cents bigint NOT NULL DEFAULT 0,
      rejected      bigint NOT NULL DEFAULT 0
    );
    INSERT INTO order_stats (id) VALUES (true) ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS rejected_events (
      event_id    uuid PRIMARY KEY,
      "offset"    bigint NOT NULL,
      type        text NOT NULL,
      reason      text NOT NULL,
      rejected_at timestamptz NOT NULL DEFAULT now()
    )`);
}
