export type { HubConfig, HubMode, HubOptions } from './config.ts';
export { normalizeConfig, redactUrl } from './config.ts';
