export type { TestVhost } from './broker.ts';
export { baseAmqpUrl, createTestVhost, managementUrl } from './broker.ts';
export type { TestDatabase } from './database.ts';
export { baseDatabaseUrl, createTestDatabase } from './database.ts';
export type { SelectorCase } from './selector-cases.ts';
export { invalidSelectorCases, selectorCases } from './selector-cases.ts';
