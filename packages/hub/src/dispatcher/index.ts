export { DISPATCHED_KEY, readCheckpoint } from './checkpoint.ts';
export type { Dispatcher, DispatcherOptions, DispatcherStats, Forward, PauseView } from './dispatcher.ts';
export { createDispatcher } from './dispatcher.ts';
export type { FlowMetrics, FlowStats, ForwardedListener } from './flow.ts';
export { LogFlow } from './flow.ts';
export { assertArchiveSwitchSafe } from './mode-switch.ts';
