import { errText } from './unreachable.ts';

/** A step of the batch failed: which side, for logs and readiness. */
export class StepError extends Error {
  constructor(
    readonly side: 'store' | 'rabbitmq',
    readonly original: unknown,
  ) {
    super(errText(original));
  }
}

/** Runs a store step: its failure is the store's. */
export async function onStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StepError('store', err);
  }
}

/** Runs a RabbitMQ step: its failure is the broker's. */
export async function onBroker<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new StepError('rabbitmq', err);
  }
}
