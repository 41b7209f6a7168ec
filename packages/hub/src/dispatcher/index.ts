export type { Dispatcher, DispatcherOptions, DispatcherStats, Forward, PauseView } from './dispatcher.ts';
export { createDispatcher } from './dispatcher.ts';
export type { HeldRow, HeldStore } from './held-store.ts';
export { createHeldStore } from './held-store.ts';
export { assertArchiveSwitchSafe } from './mode-switch.ts';
export type { SqlExecutor } from './sql.ts';
