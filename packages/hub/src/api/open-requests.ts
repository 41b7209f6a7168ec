import { ErrorCodes, HeraldError } from '@herald/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * Open long polls and SSE streams, aborted when the server closes (preClose), so a waiting client
 * never holds a hub's shutdown.
 */
export function openRequests(app: FastifyInstance): <T>(request: FastifyRequest, fn: (signal: AbortSignal) => Promise<T>) => Promise<T> {
  const open = new Set<AbortController>();
  app.addHook('preClose', (done) => {
    for (const ac of open) ac.abort(new HeraldError(ErrorCodes.CLOSED, 'the hub is stopping'));
    done();
  });
  /** Runs `fn` with a signal that aborts when the client goes away or the hub stops. */
  return async (request, fn) => {
    const ac = new AbortController();
    const gone = () => ac.abort();
    request.raw.on('close', gone);
    // Gone already (e.g. while attaching): nothing should wait for nobody.
    if (request.raw.destroyed) ac.abort();
    open.add(ac);
    try {
      return await fn(ac.signal);
    } finally {
      open.delete(ac);
      request.raw.off('close', gone);
    }
  };
}
