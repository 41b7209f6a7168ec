export { createExchangeStore, type ExchangeRecord, type ExchangeStore } from './exchange-store.ts';
export { assertExchangeName, Exchanges, MAX_EXCHANGES } from './exchanges.ts';
