export type { Cap, CapName, CapSpec } from './caps.ts';
export { CAPS, capReached, createCap } from './caps.ts';
