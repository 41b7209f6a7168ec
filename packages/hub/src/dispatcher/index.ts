export type { Dispatcher, DispatcherOptions, DispatcherStats, Forward, PauseView } from './dispatcher.ts';
export { createDispatcher } from './dispatcher.ts';
export { assertArchiveSwitchSafe } from './mode-switch.ts';
