export type { Replay, ReplayFrom, ReplayInput, ReplayRange, ReplayStatus, ReplayTarget, ReplayTo } from './replay.ts';
export {
  boundToJson,
  MAX_REPLAY_LAST,
  normalizeReplayInput,
  parseHistoryPoint,
  resolveReplayRange,
  subscriptionTarget,
} from './replay.ts';
