export { assertExchangeName, Exchanges, MAX_EXCHANGES } from './exchanges.ts';
