export type { Replay, ReplayFrom, ReplayInput, ReplayRange, ReplayStatus, ReplayTarget, ReplayTo } from './replay.ts';
export {
  boundToJson,
  MAX_REPLAY_LAST,
  normalizeReplayInput,
  parseHistoryPoint,
  resolveReplayRange,
  subscriptionTarget,
} from './replay.ts';
export type { ReplayStore } from './replay-store.ts';
export { createReplayStore } from './replay-store.ts';
