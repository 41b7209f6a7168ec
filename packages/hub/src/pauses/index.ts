export type { HoldRule, Pause, PauseInput, PauseLimits } from './pause.ts';
export { DEFAULT_MAX_PAUSE_TTL_MS, DEFAULT_PAUSE_TTL_MS, normalizePauseInput, parseSelectorParameter, partitionHeld } from './pause.ts';
export type { PauseStore } from './pause-store.ts';
export { createPauseStore } from './pause-store.ts';
