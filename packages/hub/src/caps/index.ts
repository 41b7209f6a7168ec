export type { BudgetName, BudgetSpec, Cap, CapName, CapSpec, FixedCapSpec } from './caps.ts';
export { BUDGETS, CAPS, capReached, createCap, FIXED_CAPS } from './caps.ts';
