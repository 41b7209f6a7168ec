export type { BaselineFigures } from './baseline.ts';
export type { HeraldFigures, ReceiverResult } from './herald-run.ts';
export { NoDeliveryError } from './herald-run.ts';
export type { BenchOptions, RawBenchOptions } from './options.ts';
export { DEFAULT_AMQP_URL, normalizeBenchOptions, safeUrl } from './options.ts';
export type { BenchReport } from './run.ts';
export { formatReport, runBench } from './run.ts';
