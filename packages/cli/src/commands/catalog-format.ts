/** An event type as `GET /api/v1/catalog` returns it. */
export interface CatalogTypeDoc {
  sender: string;
  type: string;
  description: string | null;
  version: number | null;
  schema: unknown;
  example: unknown;
  validate: boolean;
  updatedAt: string | null;
  /** Only for an admin's token: the hub shows who produces and consumes a type to admins alone. */
  producers?: { sender: string; userId: string | null; events: number; firstSeen: string; lastSeen: string }[];
  consumers?: { kind: 'subscription' | 'exchange'; name: string; firstSeen: string; lastSeen: string }[];
  firstSeen: string | null;
  lastSeen: string | null;
  /** Only from `GET /api/v1/catalog/{sender}/{type}`. */
  versions?: { version: number; schema: unknown; createdAt: string }[];
}

/** A type in one line: `<sender>:<type>  v<version>  [validated]  <description>`. */
export function catalogLine(t: CatalogTypeDoc): string {
  const parts = [`${t.sender}:${t.type}`, t.version === null ? 'no schema' : `v${t.version}`];
  if (t.validate) parts.push('validated');
  if (t.producers !== undefined && t.consumers !== undefined)
    parts.push(`${t.producers.length} producer(s), ${t.consumers.length} consumer(s)`);
  if (t.lastSeen !== null) parts.push(`last seen ${t.lastSeen}`);
  if (t.description !== null) parts.push(t.description);
  return parts.join('  ');
}

/** Text from the hub placed in Markdown: on one line, without characters that would open markup. */
function inline(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/([\\`*_[\]<>|#])/g, '\\$1');
}

/** A fenced JSON block; the fence is longer than any run of backticks inside. */
function jsonBlock(value: unknown): string {
  const text = JSON.stringify(value, null, 2);
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}json\n${text}\n${fence}`;
}

const GUARANTEE =
  'At least once, through `herald.events` (routing key `<sender>.<type>`); in offset order within a flow; ' +
  'kept in the log, so it can be queried and replayed.';

/** What catalogMarkdown prints besides the entries. */
export interface CatalogMarkdownOptions {
  /**
   * What traffic showed: first and last seen, producers and consumers. Default true; false leaves
   * them out, so that the same entries always give the same text (a document kept in a repository).
   */
  readonly observed?: boolean | undefined;
}

/**
 * The catalog as Markdown: a contents list, then per event type its name, description, delivery
 * guarantee, schema, example, producers and consumers.
 */
export function catalogMarkdown(
  types: readonly CatalogTypeDoc[],
  title = 'Event catalog',
  { observed = true }: CatalogMarkdownOptions = {},
): string {
  const out: string[] = [`# ${title}`, ''];
  if (types.length === 0) return `${out.join('\n')}\nNo event types yet.\n`;
  for (const t of types) out.push(`- [${t.sender}:${t.type}](#${anchor(t)})${t.description === null ? '' : ` — ${inline(t.description)}`}`);
  out.push('');
  for (const t of types) {
    out.push(`<a id="${anchor(t)}"></a>`, '', `## ${t.sender}:${t.type}`, '');
    out.push(t.description === null ? '_No description._' : inline(t.description), '');
    out.push(`- **Routing key:** \`${t.sender}.${t.type}\``);
    out.push(`- **Schema version:** ${t.version === null ? 'none' : String(t.version)}`);
    out.push(
      `- **Delivery guarantee:** ${GUARANTEE}${t.validate ? ' Validated at ingest: an event whose data does not match is refused to a REST or gRPC publisher and dead-lettered when it came through AMQP (SCHEMA_VIOLATION).' : ''}`,
    );
    if (observed && t.firstSeen !== null) out.push(`- **Seen:** first ${t.firstSeen}, last ${t.lastSeen}`);
    out.push('', '### Schema', '', t.schema === null ? '_None in the catalog._' : jsonBlock(t.schema), '');
    if (t.example !== null) out.push('### Example', '', jsonBlock(t.example), '');
    // Without an admin's token the hub leaves producers and consumers out: so does the text.
    if (!observed || t.producers === undefined || t.consumers === undefined) continue;
    out.push('### Producers', '');
    if (t.producers.length === 0) out.push('_None seen._');
    for (const p of t.producers)
      out.push(
        `- ${inline(p.sender)}${p.userId === null ? '' : ` (RabbitMQ user ${inline(p.userId)})`}: ${p.events} events, first ${p.firstSeen}, last ${p.lastSeen}`,
      );
    out.push('', '### Consumers', '');
    if (t.consumers.length === 0) out.push('_None seen._');
    for (const c of t.consumers) out.push(`- ${c.kind} ${inline(c.name)}: first ${c.firstSeen}, last ${c.lastSeen}`);
    out.push('');
  }
  return out.join('\n');
}

function anchor(t: CatalogTypeDoc): string {
  return `${t.sender}-${t.type}`.toLowerCase().replace(/[^a-z0-9_-]/g, '-');
}
