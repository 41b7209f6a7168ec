export type { Ingest, IngestOptions, IngestStats, SenderCheck } from './ingest.ts';
export { createIngest, DISPATCHED_KEY, probeAmqp } from './ingest.ts';
export { ARCHIVE_QUEUE, probeQueueTypes, ROUTER_QUEUE } from './topology.ts';
