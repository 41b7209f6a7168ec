export type { DirectOutcome, Ingest, IngestOptions, IngestOutlet, IngestStats, SenderCheck } from './ingest.ts';
export { createIngest } from './ingest.ts';
export { ARCHIVE_QUEUE, probeQueueTypes, ROUTER_QUEUE } from './topology.ts';
export { probeAmqp, unreachable } from './unreachable.ts';
