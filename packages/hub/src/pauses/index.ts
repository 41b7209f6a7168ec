export type { HoldRule, Pause, PauseInput, PauseLimits } from './pause.ts';
export { DEFAULT_MAX_PAUSE_TTL_MS, DEFAULT_PAUSE_TTL_MS, normalizePauseInput, parseSelectorParameter, partitionHeld } from './pause.ts';
