// The gRPC API, herald.v1.Herald: Publish, PublishStream, and Subscribe over the subscription manager.
export type { DirectAppend, DirectOutcome } from './publish-stream.ts';
export type { GrpcServer, GrpcServerOptions } from './server.ts';
export { createGrpcServer } from './server.ts';
export type { GrpcStatus } from './status.ts';
export { GRPC_STATUS_OF, toGrpcStatus } from './status.ts';
