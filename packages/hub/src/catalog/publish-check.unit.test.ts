// checkBeforePublish: every event is checked before any is published; a single event's error names
// `data`, a batch's the index of the event at fault; the check's message is kept.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createEvent, ErrorCodes, type HeraldEvent, ValidationError } from '@herald/core';
import { checkBeforePublish } from './publish-check.ts';

const event = (amount: number): HeraldEvent =>
  createEvent({ sender: 'shop', type: 'order.placed', data: Buffer.from(JSON.stringify({ amount })) });

/** Refuses a negative amount, as the catalog's validation would; records what it saw. */
function negativeRefused(seen: HeraldEvent[]) {
  return (e: HeraldEvent) => {
    seen.push(e);
    if ((JSON.parse(e.data.toString()) as { amount: number }).amount < 0)
      throw new ValidationError(ErrorCodes.SCHEMA_VIOLATION, 'the data does not match: /amount must be >= 0');
  };
}

describe('checkBeforePublish', () => {
  test('valid events pass, every one checked', () => {
    const seen: HeraldEvent[] = [];
    const events = [event(1), event(2), event(3)];
    checkBeforePublish(negativeRefused(seen), events);
    assert.deepEqual(seen, events);
  });

  test('one event: SCHEMA_VIOLATION naming data, with the check message', () => {
    assert.throws(
      () => checkBeforePublish(negativeRefused([]), [event(-1)]),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.code === ErrorCodes.SCHEMA_VIOLATION &&
        err.details?.parameter === 'data' &&
        err.message === 'the data does not match: /amount must be >= 0',
    );
  });

  test('a batch: the error names the index of the first violating event and that none was published', () => {
    const events = [event(1), event(-1), event(2)];
    assert.throws(
      () => checkBeforePublish(negativeRefused([]), events),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.code === ErrorCodes.SCHEMA_VIOLATION &&
        err.details?.index === 1 &&
        err.details?.id === events[1]?.id &&
        /^event 1 of the batch \(none was published\): the data does not match: \/amount must be >= 0$/.test(err.message),
    );
  });

  test('anything else the check throws (a stack overflow on deep data) refuses that event too, as ingest dead-letters it', () => {
    assert.throws(
      () =>
        checkBeforePublish(() => {
          throw new RangeError('Maximum call stack size exceeded');
        }, [event(1)]),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.code === ErrorCodes.SCHEMA_VIOLATION &&
        err.details?.parameter === 'data' &&
        /could not be validated: Maximum call stack size exceeded$/.test(err.message),
    );
  });
});
