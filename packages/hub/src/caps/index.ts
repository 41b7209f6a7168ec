export type { Cap, CapName, CapSpec, FixedCapSpec } from './caps.ts';
export { CAPS, capReached, createCap, FIXED_CAPS } from './caps.ts';
