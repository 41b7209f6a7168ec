import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GRPC_SERVICE, PROTO_LOADER_OPTIONS, PROTO_PATH, type WirePublishAck, type WirePublishStreamResponse } from '@herald/core';

/** A PublishStream opened by hand, for the tests that must write what the SDK would not. */
export interface RawPublishStream {
  /** Write `{ seq, events }` requests (or Buffers, with `bytes`); end() when done. */
  readonly call: grpc.ClientDuplexStream<unknown, WirePublishStreamResponse>;
  /** Every answer so far, in the order they came. */
  readonly acks: WirePublishAck[];
  /** The stream's status, once it ended. */
  readonly status: Promise<grpc.StatusObject>;
  /** Closes the client (after the status). */
  close(): void;
}

/**
 * Opens PublishStream on the hub at `url` (`host:port`), with `token` as its bearer credentials
 * when given. With `bytes`, requests are written as raw Buffers (field 1 = seq, field 2 = one
 * event each), so a test can send what does not encode.
 */
export async function openRawPublishStream(url: string, o: { token?: string; bytes?: boolean } = {}): Promise<RawPublishStream> {
  const def = await protoLoader.load(PROTO_PATH, { ...PROTO_LOADER_OPTIONS });
  const m = (def[GRPC_SERVICE] as grpc.ServiceDefinition).PublishStream as grpc.MethodDefinition<unknown, WirePublishStreamResponse>;
  const client = new grpc.Client(url, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (o.token !== undefined) metadata.set('authorization', `Bearer ${o.token}`);
  const serialize = o.bytes ? (b: unknown) => b as Buffer : m.requestSerialize;
  const call = client.makeBidiStreamRequest(m.path, serialize, m.responseDeserialize, metadata);
  const acks: WirePublishAck[] = [];
  call.on('data', (r: WirePublishStreamResponse) => acks.push(...r.acks));
  call.on('error', () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { call, acks, status, close: () => client.close() };
}
