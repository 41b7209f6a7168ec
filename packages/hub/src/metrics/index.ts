export { countByFlow, DEFAULT_MAX_FLOWS, type Flow, FlowCounts, OTHER, type Rates, RateWindow } from './flows.ts';
export { type FlowStats, HubMetrics, type MetricsSources, type ReceiverDepth, type StatsSnapshot } from './metrics.ts';
