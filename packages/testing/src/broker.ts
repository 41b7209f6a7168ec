import { randomBytes } from 'node:crypto';

/** The RabbitMQ the tests use: `HERALD_TEST_AMQP_URL`, else `HERALD_AMQP_URL`, else the local one. */
export const baseAmqpUrl = process.env.HERALD_TEST_AMQP_URL ?? process.env.HERALD_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
/** RabbitMQ's management API, used to make vhosts and drop connections. */
export const managementUrl = process.env.HERALD_TEST_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';

/** Calls the management API; a status other than 2xx and `tolerated` (404 by default) rejects. */
async function management(method: string, path: string, body?: unknown, tolerated: readonly number[] = [404]): Promise<Response> {
  const url = new URL(managementUrl);
  const auth = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
  url.username = '';
  url.password = '';
  const res = await fetch(new URL(`api${path}`, url.href.endsWith('/') ? url.href : `${url.href}/`), {
    method,
    headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (!res.ok && !tolerated.includes(res.status)) {
    throw new Error(`RabbitMQ management ${method} ${path} answered ${res.status}: ${await res.text()}`);
  }
  return res;
}

/** A vhost of its own for one test file: isolation without name prefixes. */
export interface TestVhost {
  readonly name: string;
  /** An AMQP URL for this vhost. */
  readonly url: string;
  /** Closes every client connection to this vhost, as a broker restart or network cut would. */
  dropConnections(): Promise<number>;
  /** Names and message counts of the queues in this vhost. */
  queues(): Promise<{ name: string; messages: number; consumers: number }[]>;
  /**
   * Creates a RabbitMQ user (`<vhost>-<name>`, a random password) with these permissions on this
   * vhost only, and answers an AMQP URL that logs in as it. Deleted with the vhost.
   */
  addUser(name: string, permissions: VhostPermissions): Promise<{ user: string; password: string; url: string }>;
  /** Deletes the vhost and everything in it. */
  delete(): Promise<void>;
}

/** RabbitMQ's three permission regexes on resource (exchange and queue) names. */
export interface VhostPermissions {
  configure: string;
  write: string;
  read: string;
}

/** Creates a fresh vhost (`herald-test-<prefix>-<random>`) that guest may use. */
export async function createTestVhost(prefix = 't'): Promise<TestVhost> {
  const name = `herald-test-${prefix}-${randomBytes(4).toString('hex')}`;
  const enc = encodeURIComponent(name);
  await management('PUT', `/vhosts/${enc}`, {});
  const user = decodeURIComponent(new URL(baseAmqpUrl).username || 'guest');
  await management('PUT', `/permissions/${enc}/${encodeURIComponent(user)}`, { configure: '.*', write: '.*', read: '.*' });
  const base = new URL(baseAmqpUrl);
  base.pathname = `/${enc}`;
  const url = base.href;
  const users: string[] = [];
  return {
    name,
    url,
    async addUser(userName, permissions) {
      const user = `${name}-${userName}`;
      const password = `pw-${randomBytes(12).toString('hex')}`;
      await management('PUT', `/users/${encodeURIComponent(user)}`, { password, tags: '' });
      users.push(user);
      await management('PUT', `/permissions/${enc}/${encodeURIComponent(user)}`, permissions);
      const u = new URL(url);
      u.username = encodeURIComponent(user);
      u.password = encodeURIComponent(password);
      return { user, password, url: u.href };
    },
    async dropConnections() {
      const res = await management('GET', `/vhosts/${enc}/connections`);
      if (res.status === 404) return 0;
      const conns = (await res.json()) as { name: string }[];
      // A connection that closes between the list and its DELETE answers 404, or 500 when its
      // process ended during the request: either way it is gone, which is what was asked.
      await Promise.all(conns.map((c) => management('DELETE', `/connections/${encodeURIComponent(c.name)}`, undefined, [404, 500])));
      return conns.length;
    },
    async queues() {
      const res = await management('GET', `/queues/${enc}`);
      if (res.status === 404) return [];
      const qs = (await res.json()) as { name: string; messages?: number; consumers?: number }[];
      return qs.map((q) => ({ name: q.name, messages: q.messages ?? 0, consumers: q.consumers ?? 0 }));
    },
    async delete() {
      await management('DELETE', `/vhosts/${enc}`);
      for (const user of users.splice(0)) await management('DELETE', `/users/${encodeURIComponent(user)}`);
    },
  };
}
