export { redactUrl } from '@herald/core';
export type { HubConfig, HubMode, HubOptions } from './config.ts';
export { normalizeConfig } from './config.ts';
