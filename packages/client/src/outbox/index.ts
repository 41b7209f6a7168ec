// @herald/client/outbox: the transactional outbox and inbox on the service's own PostgreSQL. A
// subpath of its own, so that `@herald/client` never loads `pg` (an optional peer dependency).
export type { Inbox, InboxOptions } from './inbox.ts';
export { createInbox } from './inbox.ts';
export type { Outbox, OutboxEvent, OutboxOptions } from './outbox.ts';
export { createOutbox } from './outbox.ts';
export type { OutboxRelay, OutboxRelayEvents, OutboxRelayState, OutboxRelayStats } from './relay.ts';
export { createOutboxRelay } from './relay.ts';
export type { OutboxRelayOptions } from './relay-options.ts';
export type { OutboxTableOptions } from './schema.ts';
export { INBOX_TABLE_SQL, migrateOutbox, OUTBOX_TABLE_SQL, outboxSchemaSql } from './schema.ts';
export type { Queryable } from './types.ts';
