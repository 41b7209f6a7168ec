/**
 * `npm run test:cluster`: Herald on a three-node RabbitMQ cluster with quorum queues, under a node
 * failure (DESIGN.md §7). Not part of `npm test`: it changes the local broker's cluster membership
 * for a minute.
 *
 *   1. starts two more RabbitMQ nodes on this machine, rabbit2@localhost (AMQP 5673, management
 *      15673, distribution 25673) and rabbit3@localhost (5674, 15674, 25674), each with its config,
 *      data and log directories under /tmp/herald-cluster/, and joins them to rabbit@localhost;
 *   2. in a fresh vhost, declares Herald's queues as quorum queues through rabbit2, so that their
 *      leaders live on the node that will fail, and starts a router hub (HERALD_QUEUE_TYPE=quorum,
 *      a throwaway PostgreSQL database) and a publisher with confirms on rabbit@localhost;
 *   3. under load, kills rabbit2 (SIGKILL of its Erlang VM, as a crash would; the queue leaders move
 *      to the other two nodes), measures the time until an event published after the crash is
 *      delivered and the longest pause in deliveries, then starts rabbit2 again;
 *   4. checks that every confirmed event is in the log once and at a receiver queue;
 *   5. always, also on failure or Ctrl-C: deletes the vhost and the database, and takes the two nodes
 *      out of the cluster (stop_app, reset, stop; forget_cluster_node if rabbit@localhost still
 *      lists them), so rabbit@localhost is alone again. rabbit@localhost itself is never stopped or
 *      reset: others may be using it.
 *
 * Needs root (rabbitmqctl and rabbitmq-server switch to the rabbitmq user), RabbitMQ with the
 * management plugin on rabbit@localhost, PostgreSQL. Prints one line per step and a result line;
 * exits 1 when an event was lost or a step failed, 2 when the machine is not as expected (another
 * node already in the cluster, a port taken).
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createPublisher } from '@herald/client';
import { EVENTS_EXCHANGE, queueTypeArguments, uuidv7 } from '@herald/core';
import { createTestDatabase, createTestVhost, freePort, type HeraldProcess, startHubProcess, waitFor } from '@herald/testing';
import { connect } from 'amqplib';
import { checkLog } from '../packages/hub/src/ingest/check-log.ts';
import { openStore } from '../packages/hub/src/store/index.ts';

const exec = promisify(execFile);
const BASE = '/tmp/herald-cluster';
const MAIN = 'rabbit@localhost';

interface Node {
  name: string;
  short: string;
  amqp: number;
  management: number;
  dist: number;
}
const NODES: readonly Node[] = [
  { name: 'rabbit2@localhost', short: 'rabbit2', amqp: 5673, management: 15673, dist: 25673 },
  { name: 'rabbit3@localhost', short: 'rabbit3', amqp: 5674, management: 15674, dist: 25674 },
];
const FAILING = NODES[0] as Node;
/** About 100 events/s: one every this many ms. */
const TICK_MS = 10;

const t0 = Date.now();
function say(line: string): void {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);
}

/** Runs a RabbitMQ command line tool; rejects with its output. */
async function tool(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { env: { ...process.env, ...env }, timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim().split('\n').slice(-5).join(' | ')}`);
  }
}
const ctl = (node: string, ...args: string[]) => tool('rabbitmqctl', ['-n', node, ...args]);

function dirOf(node: Node): string {
  return join(BASE, node.short);
}

/** The environment a node of ours starts with: its own env file, never /etc/rabbitmq's (which names rabbit@localhost). */
function nodeEnv(node: Node): Record<string, string> {
  const dir = dirOf(node);
  return {
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_NODENAME: node.name,
    RABBITMQ_NODE_PORT: String(node.amqp),
    RABBITMQ_DIST_PORT: String(node.dist),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, `${node.short}.pid`),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
  };
}

function writeNodeFiles(node: Node): void {
  const dir = dirOf(node);
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ['mnesia', 'log']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(
    join(dir, 'rabbitmq.conf'),
    [`listeners.tcp.local = 127.0.0.1:${node.amqp}`, `management.tcp.port = ${node.management}`, 'management.tcp.ip = 127.0.0.1', ''].join(
      '\n',
    ),
  );
  writeFileSync(join(dir, 'enabled_plugins'), '[rabbitmq_management].\n');
  const env = nodeEnv(node);
  writeFileSync(
    env.RABBITMQ_CONF_ENV_FILE as string,
    [
      `NODENAME=${node.name}`,
      `NODE_PORT=${node.amqp}`,
      `DIST_PORT=${node.dist}`,
      `CONFIG_FILE=${env.RABBITMQ_CONFIG_FILE}`,
      `MNESIA_BASE=${env.RABBITMQ_MNESIA_BASE}`,
      `LOG_BASE=${env.RABBITMQ_LOG_BASE}`,
      `PID_FILE=${env.RABBITMQ_PID_FILE}`,
      `ENABLED_PLUGINS_FILE=${env.RABBITMQ_ENABLED_PLUGINS_FILE}`,
      'ERL_EPMD_ADDRESS=127.0.0.1',
      'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"',
      '',
    ].join('\n'),
  );
  // The nodes run as the rabbitmq user.
  const { uid, gid } = rabbitmqUser;
  for (const p of ['', 'mnesia', 'log', 'rabbitmq.conf', 'enabled_plugins', 'rabbitmq-env.conf']) chownSync(join(dir, p), uid, gid);
  chmodSync(dir, 0o755);
}

let rabbitmqUser = { uid: 0, gid: 0 };

async function startNode(node: Node): Promise<void> {
  await tool('rabbitmq-server', ['-detached'], nodeEnv(node));
  // The node registers with epmd a moment after -detached returns: until then await_startup fails at once.
  const end = Date.now() + 120_000;
  for (;;) {
    try {
      await tool('rabbitmqctl', ['-n', node.name, 'await_startup', '--timeout', '90'], {}, 100_000);
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(1000);
    }
  }
}

/** The running nodes of rabbit@localhost's cluster. */
async function runningNodes(): Promise<string[]> {
  const status = JSON.parse(await ctl(MAIN, 'cluster_status', '--formatter', 'json')) as { running_nodes: string[]; disk_nodes: string[] };
  return status.running_nodes;
}
async function memberNodes(): Promise<string[]> {
  const status = JSON.parse(await ctl(MAIN, 'cluster_status', '--formatter', 'json')) as { disk_nodes: string[]; ram_nodes?: string[] };
  return [...status.disk_nodes, ...(status.ram_nodes ?? [])];
}

/**
 * Kills a node of ours the hard way, as a crash would: SIGKILL of its Erlang VM, the process the
 * node itself names (so nothing else is hit). Resolves with the time of the kill once the cluster
 * sees the node gone.
 */
async function crash(node: Node): Promise<number> {
  const pid = Number((await ctl(node.name, 'eval', 'list_to_integer(os:getpid()).')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) throw new Error(`${node.name} named no process to kill`);
  const at = Date.now();
  process.kill(pid, 'SIGKILL');
  await waitFor(`${node.name} gone`, async () => !(await runningNodes()).includes(node.name), 30_000, 100);
  return at;
}

/** Each queue of the vhost, its type and the node of its leader. */
async function leaders(vhost: string): Promise<string> {
  const out = await ctl(MAIN, 'list_queues', '-p', vhost, 'name', 'type', 'leader', '--no-table-headers', '--quiet');
  return out
    .trim()
    .split('\n')
    .map((l) => l.trim().replace(/^(\S+)\s+(\S+)\s+(\S+)$/, '$1 ($2) on $3'))
    .join(', ');
}

/** The longest time without a delivery, from `from` until the last delivery in `times`. */
function longestGap(times: number[], from: number): number {
  let gap = 0;
  let last = from;
  for (const t of times) {
    if (t < from) continue;
    gap = Math.max(gap, t - last);
    last = t;
  }
  return gap;
}

/** Whether nothing listens on 127.0.0.1:`port`. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Which of our nodes were started (and so must be removed). */
const started = new Set<Node>();

async function removeNodes(): Promise<void> {
  // The last of ours first; each step is tried whatever the previous one did.
  for (const node of [...NODES].reverse()) {
    if (!started.has(node)) continue;
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        say(`cleanup: ${what} on ${node.name}: ${(err as Error).message}`);
      }
    };
    // Quorum queues of other vhosts (ours is deleted by now) lose this node's member first, while
    // their majority is still there.
    await attempt('shrink', () => tool('rabbitmq-queues', ['-n', MAIN, 'shrink', node.name]));
    await attempt('stop_app', () => ctl(node.name, 'stop_app'));
    await attempt('reset', () => ctl(node.name, 'reset'));
    await attempt('stop', () => ctl(node.name, 'stop'));
  }
  for (const node of NODES) {
    if (!started.has(node)) continue;
    if ((await memberNodes().catch((): string[] => [])).includes(node.name)) {
      await ctl(MAIN, 'forget_cluster_node', node.name).catch((err) => say(`cleanup: forget_cluster_node ${node.name}: ${err.message}`));
    }
  }
  const left = await memberNodes().catch((): string[] => ['unknown']);
  say(left.length === 1 && left[0] === MAIN ? `${MAIN} is alone again` : `WARNING: ${MAIN}'s cluster still lists ${left.join(', ')}`);
  for (const node of NODES) if (started.has(node)) rmSync(dirOf(node), { recursive: true, force: true });
  rmSync(BASE, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const id = await tool('id', ['-u', 'rabbitmq']).catch(() => '');
  const gidText = await tool('id', ['-g', 'rabbitmq']).catch(() => '');
  if (!id) {
    say('no rabbitmq user: this needs the RabbitMQ server of this machine');
    return 2;
  }
  rabbitmqUser = { uid: Number(id.trim()), gid: Number(gidText.trim()) };
  let members: string[];
  try {
    members = await memberNodes();
  } catch (err) {
    say(`cannot ask ${MAIN} for its cluster (run as root, with RabbitMQ running): ${(err as Error).message}`);
    return 2;
  }
  if (members.length !== 1 || members[0] !== MAIN) {
    say(`${MAIN}'s cluster is ${members.join(', ')}: expected it alone; remove the other nodes first`);
    return 2;
  }
  for (const node of NODES) {
    for (const port of [node.amqp, node.management, node.dist]) {
      if (!(await portFree(port))) {
        say(`port ${port} (for ${node.name}) is taken: is a node of an earlier run still up? \`rabbitmqctl -n ${node.name} stop\``);
        return 2;
      }
    }
  }

  let vhost: Awaited<ReturnType<typeof createTestVhost>> | undefined;
  let db: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  let hub: HeraldProcess | undefined;
  let failed = false;
  const cleanup = async () => {
    await hub?.kill('SIGKILL');
    await vhost?.delete().catch((err) => say(`cleanup: vhost: ${err.message}`));
    await db?.drop().catch((err) => say(`cleanup: database: ${err.message}`));
    await removeNodes();
  };
  let cleaning: Promise<void> | undefined;
  const onSignal = () => {
    say('interrupted: cleaning up');
    cleaning ??= cleanup();
    void cleaning.then(() => process.exit(1));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    for (const node of NODES) {
      writeNodeFiles(node);
      started.add(node);
      await startNode(node);
      await ctl(node.name, 'stop_app');
      await ctl(node.name, 'reset');
      await ctl(node.name, 'join_cluster', MAIN);
      await ctl(node.name, 'start_app');
      say(`${node.name} joined (AMQP ${node.amqp}, management ${node.management})`);
    }
    const running = await runningNodes();
    if (running.length !== 3) throw new Error(`expected 3 running nodes, got ${running.join(', ')}`);

    vhost = await createTestVhost('cluster');
    db = await createTestDatabase('cluster');
    const onFailing = new URL(vhost.url);
    onFailing.port = String(FAILING.amqp);
    // Herald's queues, declared through the node that will fail: quorum queue leaders start on the
    // node that declares them. The hub declares the same (equivalent) queues again.
    const quorum = queueTypeArguments('quorum');
    {
      const c = await connect(onFailing.href);
      const ch = await c.createChannel();
      await ch.assertQueue('herald.ingest', { durable: true, arguments: { ...quorum, 'x-single-active-consumer': true } });
      await ch.assertQueue('herald.dead', { durable: true, arguments: quorum });
      await ch.assertQueue('cluster-receiver', { durable: true, arguments: quorum });
      await c.close();
    }
    const httpPort = await freePort();
    hub = await startHubProcess({
      HERALD_AMQP_URL: vhost.url,
      HERALD_DATABASE_URL: db.url,
      HERALD_MODE: 'router',
      HERALD_QUEUE_TYPE: 'quorum',
      HERALD_HTTP_PORT: String(httpPort),
    });
    say(`hub running with HERALD_QUEUE_TYPE=quorum in vhost ${vhost.name}; queue leaders on ${FAILING.name}`);

    // The receiver, on rabbit@localhost.
    const rc = await connect(vhost.url);
    rc.on('error', () => undefined);
    const rch = await rc.createChannel();
    await rch.bindQueue('cluster-receiver', EVENTS_EXCHANGE, 'cl.#');
    const delivered: { id: string; at: number }[] = [];
    await rch.consume('cluster-receiver', (m) => m && delivered.push({ id: String(m.properties.messageId), at: Date.now() }), {
      noAck: true,
    });

    const publisher = await createPublisher({ url: vhost.url, sender: 'cl', confirmTimeoutMs: 60_000 });
    const sentAt = new Map<string, number>();
    const confirmed = new Set<string>();
    const failures: string[] = [];
    const inFlight = new Set<Promise<void>>();
    let loading = true;
    let seq = 0;
    const load = (async () => {
      while (loading) {
        const id = uuidv7();
        sentAt.set(id, Date.now());
        const p = publisher.publish('tick', { seq: ++seq }, { id }).then(
          () => void confirmed.add(id),
          (err: Error) => void failures.push(err.message),
        );
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        await sleep(TICK_MS);
      }
      await Promise.all([...inFlight]);
    })();

    await waitFor('events flowing', () => delivered.length >= 300, 30_000);
    say(`load running: ${delivered.length} events delivered so far`);
    say(`queue leaders: ${await leaders(vhost.name)}`);
    await sleep(2000);
    const stoppedAt = await crash(FAILING);
    say(`${FAILING.name} killed (SIGKILL of its Erlang VM)`);
    const again = () => delivered.find((d) => d.at > stoppedAt && (sentAt.get(d.id) ?? 0) > stoppedAt);
    await waitFor('an event published after the crash delivered', () => again() !== undefined, 60_000, 10);
    const flowMs = (again() as { at: number }).at - stoppedAt;
    say(`events flow again ${flowMs} ms after the crash; queue leaders now: ${await leaders(vhost.name)}`);
    await sleep(3000);
    const gapMs = longestGap(
      delivered.filter((d) => d.at >= stoppedAt - 1000).map((d) => d.at),
      stoppedAt,
    );
    await startNode(FAILING);
    say(`${FAILING.name} back (${(await runningNodes()).length} nodes running)`);
    await sleep(3000);
    loading = false;
    await load;
    await publisher.close();

    const reader = await openStore({ url: db.url });
    try {
      await waitFor('every confirmed event in the log', async () => (await reader.headOffset()) >= BigInt(confirmed.size), 60_000, 200);
      await waitFor('every confirmed event at the receiver', () => new Set(delivered.map((d) => d.id)).size >= confirmed.size, 60_000);
      const log = await checkLog(reader);
      const atReceiver = new Set(delivered.map((d) => d.id));
      const lostInLog = [...confirmed].filter((i) => !log.ids.has(i)).length;
      const lostAtReceiver = [...confirmed].filter((i) => !atReceiver.has(i)).length;
      const ok = lostInLog === 0 && lostAtReceiver === 0 && log.offsetBreaks === 0 && log.ids.size === log.count;
      say(
        `${ok ? 'ok' : 'FAIL'}: ${confirmed.size} events confirmed (${failures.length} publishes failed and were not counted), ` +
          `${log.count} in the log (lost ${lostInLog}, offset breaks ${log.offsetBreaks}), ${atReceiver.size} at the receiver ` +
          `(${delivered.length - atReceiver.size} duplicates, lost ${lostAtReceiver}); flowing again ${flowMs} ms after ${FAILING.name} crashed, ` +
          `longest pause in deliveries ${gapMs} ms`,
      );
      failed = !ok;
    } finally {
      await reader.close();
      await rc.close().catch(() => undefined);
    }
  } catch (err) {
    say(`FAIL: ${(err as Error).message}`);
    failed = true;
  } finally {
    cleaning ??= cleanup();
    await cleaning;
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`cluster: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
