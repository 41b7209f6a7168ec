import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { errorOfStatus } from '@herald/client/grpc';
import { ErrorCodes, GRPC_ERROR_CODE_KEY, HeraldError, ValidationError } from '@herald/core';
import { GRPC_STATUS_OF, toGrpcStatus } from './status.ts';

test('every Herald error code has a gRPC status', () => {
  for (const code of Object.values(ErrorCodes)) assert.ok(GRPC_STATUS_OF[code] !== undefined, code);
});

test('bad input is INVALID_ARGUMENT, conflicts ALREADY_EXISTS, hub trouble UNAVAILABLE, timeouts DEADLINE_EXCEEDED, caps RESOURCE_EXHAUSTED', () => {
  const cases: [keyof typeof ErrorCodes, Status][] = [
    ['INVALID_SENDER', Status.INVALID_ARGUMENT],
    ['INVALID_TYPE', Status.INVALID_ARGUMENT],
    ['INVALID_SELECTOR', Status.INVALID_ARGUMENT],
    ['INVALID_EVENT', Status.INVALID_ARGUMENT],
    ['EVENT_TOO_LARGE', Status.INVALID_ARGUMENT],
    ['INVALID_REQUEST', Status.INVALID_ARGUMENT],
    ['INVALID_CONFIG', Status.INVALID_ARGUMENT],
    ['NOT_FOUND', Status.NOT_FOUND],
    ['CONFLICT', Status.ALREADY_EXISTS],
    ['UNAVAILABLE', Status.UNAVAILABLE],
    ['PUBLISH_FAILED', Status.UNAVAILABLE],
    ['CLOSED', Status.UNAVAILABLE],
    ['TIMEOUT', Status.DEADLINE_EXCEEDED],
    ['LIMIT_EXCEEDED', Status.RESOURCE_EXHAUSTED],
  ];
  for (const [code, expected] of cases) {
    const s = toGrpcStatus(new HeraldError(ErrorCodes[code], `it is ${code}`));
    assert.equal(s.code, expected, code);
    assert.equal(s.details, `it is ${code}`);
    assert.deepEqual(s.metadata.get(GRPC_ERROR_CODE_KEY), [code]);
    assert.equal(s.internal, false);
  }
});

test('subclasses keep their code; anything else is INTERNAL and flagged', () => {
  assert.equal(toGrpcStatus(new ValidationError(ErrorCodes.INVALID_SELECTOR, 'x')).code, Status.INVALID_ARGUMENT);
  const s = toGrpcStatus(new TypeError('boom'));
  assert.equal(s.code, Status.INTERNAL);
  assert.equal(s.details, 'internal error: boom');
  assert.equal(s.internal, true);
  assert.deepEqual(s.metadata.get(GRPC_ERROR_CODE_KEY), []);
});

test('the SDK reads the status back into the same Herald code', () => {
  for (const code of Object.values(ErrorCodes)) {
    const s = toGrpcStatus(new HeraldError(code, 'why'));
    const err = errorOfStatus(s, 'subscription x');
    assert.equal(err.code, code);
    assert.match(err.message, /^subscription x: why \(gRPC [A-Z_]+\)$/);
  }
  // Without the hub's metadata (a proxy, the channel itself) the nearest code.
  assert.equal(
    errorOfStatus({ code: Status.UNAVAILABLE, details: 'No connection established', metadata: undefined as never }, 'x').code,
    'UNAVAILABLE',
  );
  assert.equal(errorOfStatus({ code: Status.ALREADY_EXISTS, details: '', metadata: undefined as never }, 'x').code, 'CONFLICT');
});

test('details stay short whatever the message echoes (a 100 KB trailer once hung the connection)', () => {
  const s = toGrpcStatus(new ValidationError(ErrorCodes.INVALID_SENDER, `invalid sender ${'é'.repeat(50_000)}`));
  assert.ok(s.details.length <= 501, `${s.details.length} characters`);
  assert.ok(s.details.startsWith('invalid sender éé'));
  assert.ok(toGrpcStatus(new Error('x'.repeat(100_000))).details.length <= 501);
});
