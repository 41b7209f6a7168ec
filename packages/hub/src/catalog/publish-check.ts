import { ErrorCodes, HeraldError, type HeraldEvent, ValidationError } from '@herald/core';

/** Checks one event against the catalog: throws a ValidationError (SCHEMA_VIOLATION) when its type validates and its data does not match. */
export type EventCheck = (event: HeraldEvent) => void;

/**
 * The catalog's check at the API edge, before the hub publishes for a REST or gRPC caller: a
 * violating event is refused to its publisher (400, INVALID_ARGUMENT) instead of answered 2xx and
 * dead-lettered later. Ingest checks again, for what AMQP publishers send straight to
 * herald.ingest and for a type whose validation another hub turned on meanwhile.
 *
 * Every event is checked before the first is published, so a batch goes whole or not at all; the
 * error of a batch names the event by its index (`details.index`), that of a single event the
 * `data` field. The message is the validation's: the type, the schema version and ajv's errors,
 * bounded. Synchronous; no I/O.
 */
export function checkBeforePublish(check: EventCheck, events: readonly HeraldEvent[]): void {
  for (const [index, event] of events.entries()) {
    try {
      check(event);
    } catch (thrown) {
      // Anything else the validator throws (a stack overflow on data nested past what a recursive
      // schema can walk, say) is still this event's fault: a 400, never a 500.
      const err =
        thrown instanceof HeraldError
          ? thrown
          : new HeraldError(
              ErrorCodes.SCHEMA_VIOLATION,
              `the data of ${event.sender}:${event.type} could not be validated: ${String((thrown as Error)?.message ?? thrown).slice(0, 200)}`,
              {
                cause: thrown,
              },
            );
      if (events.length === 1) throw new ValidationError(err.code, err.message, { cause: err, details: { parameter: 'data' } });
      throw new ValidationError(err.code, `event ${index} of the batch (none was published): ${err.message}`, {
        cause: err,
        details: { index, id: event.id },
      });
    }
  }
}
