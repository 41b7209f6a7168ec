import { DEFAULT_AMQP_URL } from '@herald/client';
import { preview, redactSecrets } from '@herald/core';
import { Option } from 'commander';
import { UsageError } from '../usage.ts';

// The flags every command that needs them spells the same, each with its environment variable.
// A flag wins over its variable; an empty variable counts as unset.

/** `--amqp-url <url>`, HERALD_AMQP_URL: RabbitMQ. */
export function amqpUrlOption(): Option {
  return new Option('--amqp-url <url>', `RabbitMQ (HERALD_AMQP_URL, default ${DEFAULT_AMQP_URL})`);
}

/** `--hub-url <url>`, HERALD_HUB_URL: the hub's REST API, and what the command uses it for when that is not plain. */
export function hubUrlOption(purpose?: string): Option {
  const what = purpose === undefined ? "the hub's REST API" : `the hub's REST API, ${purpose}`;
  return new Option('--hub-url <url>', `${what} (HERALD_HUB_URL, default http://127.0.0.1:$HERALD_HTTP_PORT, else :8080)`);
}

/** `--grpc-url <host:port>`, HERALD_GRPC_URL: the hub's gRPC API. */
export function grpcUrlOption(): Option {
  return new Option('--grpc-url <host:port>', "the hub's gRPC API (HERALD_GRPC_URL, default 127.0.0.1:$HERALD_GRPC_PORT, else :50051)");
}

/** `--token <token>`, HERALD_TOKEN: sent to the hub as `Authorization: Bearer <token>`. */
export function tokenOption(): Option {
  return new Option('--token <token>', 'API token, sent to the hub as Authorization: Bearer <token> (HERALD_TOKEN)');
}

/** The flags of a command that talks to the hub over REST, as commander hands them over. */
export interface HubFlags {
  hubUrl?: string | undefined;
  token?: string | undefined;
}

/** Where and as whom to call the hub's REST API. */
export interface Hub {
  /** The base URL, without a trailing slash or `/api/v1`. */
  readonly url: string;
  /** Sent as `Authorization: Bearer <token>`; undefined sends no Authorization header. */
  readonly token: string | undefined;
}

/** The hub's REST API when neither `--hub-url` nor HERALD_HUB_URL nor HERALD_HTTP_PORT says otherwise. */
export const DEFAULT_HUB_URL = 'http://127.0.0.1:8080';

function given(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** The AMQP URL: `--amqp-url`, else HERALD_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672. */
export function amqpUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return given(flag) ?? given(env.HERALD_AMQP_URL) ?? DEFAULT_AMQP_URL;
}

/**
 * The token: `--token`, else HERALD_TOKEN, else none. Throws a UsageError unless it is printable
 * ASCII without spaces, at most 4,096 characters (what a header value may carry; the SDK's rule for
 * its `token` option). Never echoes the token.
 */
export function token(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromFlag = given(flag);
  const value = fromFlag ?? given(env.HERALD_TOKEN);
  if (value !== undefined && (value.length > 4096 || !/^[\x21-\x7e]+$/.test(value))) {
    const setting = fromFlag !== undefined ? '--token' : 'HERALD_TOKEN';
    throw new UsageError(`invalid ${setting}: expected up to 4096 printable ASCII characters, no spaces`);
  }
  return value;
}

/**
 * The hub to call: `--hub-url`, else HERALD_HUB_URL, else http://127.0.0.1:$HERALD_HTTP_PORT, else
 * http://127.0.0.1:8080 (a URL given with the API prefix, `…/api/v1`, means the same), and the token.
 * Throws a UsageError naming the flag or variable for a URL that is not http:// or https://.
 */
export function hubOf(flags: HubFlags, env: NodeJS.ProcessEnv = process.env): Hub {
  const fromFlag = given(flags.hubUrl);
  const fromEnv = given(env.HERALD_HUB_URL);
  const port = given(env.HERALD_HTTP_PORT);
  const raw = fromFlag ?? fromEnv ?? (port ? `http://127.0.0.1:${port}` : DEFAULT_HUB_URL);
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    const setting = fromFlag !== undefined ? '--hub-url' : fromEnv !== undefined ? 'HERALD_HUB_URL' : 'HERALD_HTTP_PORT';
    throw new UsageError(
      `invalid ${setting} ${preview(redactSecrets(raw))}: expected the hub's http:// or https:// URL, e.g. http://127.0.0.1:8080`,
    );
  }
  return { url: raw.replace(/\/+$/, '').replace(/\/api\/v1$/, ''), token: token(flags.token, env) };
}
