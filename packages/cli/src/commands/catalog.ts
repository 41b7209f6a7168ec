import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UsageError } from '../usage.ts';
import { type CatalogTypeDoc, catalogLine, catalogMarkdown } from './catalog-format.ts';
import { type Hub, type HubFlags, hubOf, hubUrlOption, tokenOption } from './flags.ts';
import { callHub } from './hub-api.ts';
import type { RegisterCommand } from './index.ts';

/** The largest JSON file `put` reads (the hub takes schemas and examples up to 64 KiB each). */
const MAX_FILE_BYTES = 1024 * 1024;

/** A JSON file given to a flag, parsed; a UsageError naming the flag when it cannot be read or is not JSON. */
async function jsonFile(path: string, flag: string): Promise<unknown> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.length > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (err) {
    throw new UsageError(`invalid ${flag} ${path}: cannot read it (${(err as Error).message})`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`invalid ${flag} ${path}: not JSON (${(err as Error).message})`, { cause: err });
  }
}

/** Writes to `--out` when given, else to stdout. */
async function emit(text: string, out: string | undefined): Promise<void> {
  const body = text.endsWith('\n') ? text : `${text}\n`;
  if (out === undefined) process.stdout.write(body);
  else {
    await writeFile(out, body);
    process.stderr.write(`wrote ${out}\n`);
  }
}

/** Every type of the catalog, page after page. */
async function allTypes(target: Hub): Promise<CatalogTypeDoc[]> {
  const items: CatalogTypeDoc[] = [];
  let after: string | null = null;
  do {
    const page: { items: CatalogTypeDoc[]; next: string | null } = await callHub(
      target,
      'GET',
      `/catalog${after === null ? '' : `?after=${encodeURIComponent(after)}`}`,
    );
    items.push(...page.items);
    after = page.next;
  } while (after !== null);
  return items;
}

const path = (sender: string, type: string) => `/catalog/${encodeURIComponent(sender)}/${encodeURIComponent(type)}`;

type Format = 'md' | 'asyncapi' | 'json';

function formatOf(raw: string | undefined): Format {
  const f = raw ?? 'md';
  if (f !== 'md' && f !== 'asyncapi' && f !== 'json')
    throw new UsageError(`invalid --format ${JSON.stringify(f)}: expected md, asyncapi or json`);
  return f;
}

/**
 * `herald catalog [--format md|asyncapi|json] [--out file]`, and `put`, `list`, `show`, `remove`:
 * the event catalog over the hub's REST API (/api/v1/catalog; reading needs any user's token,
 * writing a publisher's of the sender). The hub refusing or out of reach exits 1, with one line.
 */
export const registerCatalog: RegisterCommand = (program: Command) => {
  const catalog = program
    .command('catalog')
    .description('the event catalog: JSON Schemas of event types, producers and consumers; as Markdown or AsyncAPI 3.0')
    .option(
      '--format <format>',
      'md (Markdown: each event with its schema, example, producers, consumers), asyncapi (AsyncAPI 3.0 JSON) or json',
      'md',
    )
    .option('--out <file>', 'write to this file instead of stdout')
    .option('--no-observed', 'md: leave out what traffic showed (seen, producers, consumers): the same entries give the same text')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald catalog --help)')
    .action(async (o: HubFlags & { format?: string; out?: string; observed: boolean }) => {
      const format = formatOf(o.format);
      if (!o.observed && format !== 'md') throw new UsageError(`--no-observed is for --format md, not ${format}`);
      const target = hubOf(o);
      if (format === 'asyncapi') return emit(JSON.stringify(await callHub(target, 'GET', '/catalog/asyncapi.json'), null, 2), o.out);
      const items = await allTypes(target);
      return emit(format === 'json' ? JSON.stringify(items, null, 2) : catalogMarkdown(items, undefined, { observed: o.observed }), o.out);
    });
  // Commander hands --hub-url and --token to `catalog` wherever they stand: a subcommand reads them there too.
  const hub = (o: HubFlags) => {
    const parent = catalog.opts<HubFlags>();
    return hubOf({ hubUrl: o.hubUrl ?? parent.hubUrl, token: o.token ?? parent.token });
  };

  catalog
    .command('put')
    .description('describe an event type: its JSON Schema (a new version when it changed), description, example, validation at ingest')
    .argument('<sender>', 'the sender')
    .argument('<type>', 'the event type, e.g. invoice.paid')
    .requiredOption('--schema <file>', 'a JSON Schema (draft-07) file')
    .option('--description <text>', 'what the event means')
    .option('--example <file>', 'an example payload (JSON file); it must match the schema')
    .option(
      '--validate',
      'the hub refuses (REST, gRPC) or dead-letters (AMQP) events of this type whose data does not match (SCHEMA_VIOLATION)',
    )
    .option('--schema-version <n>', 'the version number of a changed schema (default: the latest + 1)')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald catalog put --help)')
    .action(
      async (
        sender: string,
        type: string,
        o: HubFlags & {
          schema: string;
          description?: string;
          example?: string;
          validate?: boolean;
          schemaVersion?: string;
          json?: boolean;
        },
      ) => {
        const body: Record<string, unknown> = { schema: await jsonFile(o.schema, '--schema') };
        if (o.description !== undefined) body.description = o.description;
        if (o.example !== undefined) body.example = await jsonFile(o.example, '--example');
        if (o.validate) body.validate = true;
        if (o.schemaVersion !== undefined) {
          const n = Number(o.schemaVersion);
          if (!Number.isSafeInteger(n) || n < 1)
            throw new UsageError(`invalid --schema-version ${JSON.stringify(o.schemaVersion)}: expected an integer ≥ 1`);
          body.version = n;
        }
        const t = await callHub<CatalogTypeDoc>(hub(o), 'PUT', path(sender, type), body);
        process.stdout.write(o.json ? `${JSON.stringify(t, null, 2)}\n` : `${catalogLine(t)}\n`);
      },
    );

  catalog
    .command('list')
    .description('every event type: latest schema version, validation, producers and consumers')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald catalog list --help)')
    .action(async (o: HubFlags & { json?: boolean }) => {
      const items = await allTypes(hub(o));
      if (o.json) process.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
      else if (items.length === 0) process.stdout.write('no event types\n');
      else for (const t of items) process.stdout.write(`${catalogLine(t)}\n`);
    });

  catalog
    .command('show')
    .description('one event type with every version of its schema (Markdown, or --json)')
    .argument('<sender>', 'the sender')
    .argument('<type>', 'the event type')
    .option('--json', 'print the JSON the hub returned')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald catalog show --help)')
    .action(async (sender: string, type: string, o: HubFlags & { json?: boolean }) => {
      const t = await callHub<CatalogTypeDoc>(hub(o), 'GET', path(sender, type));
      if (o.json) return emit(JSON.stringify(t, null, 2), undefined);
      const versions = (t.versions ?? []).map((v) => `- version ${v.version}, ${v.createdAt}`).join('\n');
      return emit(`${catalogMarkdown([t], `${sender}:${type}`)}\n### Versions\n\n${versions || '_None._'}\n`, undefined);
    });

  catalog
    .command('remove')
    .description('delete an event type from the catalog: its schema versions and what was observed')
    .argument('<sender>', 'the sender')
    .argument('<type>', 'the event type')
    .addOption(hubUrlOption())
    .addOption(tokenOption())
    .showHelpAfterError('(see herald catalog remove --help)')
    .action(async (sender: string, type: string, o: HubFlags) => {
      await callHub(hub(o), 'DELETE', path(sender, type));
      process.stdout.write(`removed ${sender}:${type} from the catalog\n`);
    });
};
