import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CatalogTypeDoc, catalogLine, catalogMarkdown } from './catalog-format.ts';

const base: CatalogTypeDoc = {
  sender: 'billing',
  type: 'invoice.paid',
  description: 'An invoice was paid',
  version: 2,
  schema: { type: 'object', required: ['id'] },
  example: { id: 'inv-1' },
  validate: true,
  updatedAt: '2026-01-01T00:00:00.000Z',
  producers: [
    {
      sender: 'billing',
      userId: 'herald-billing',
      events: 12,
      firstSeen: '2026-01-01T00:00:00.000Z',
      lastSeen: '2026-01-02T00:00:00.000Z',
    },
  ],
  consumers: [{ kind: 'subscription', name: 'ledger', firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-02T00:00:00.000Z' }],
  firstSeen: '2026-01-01T00:00:00.000Z',
  lastSeen: '2026-01-02T00:00:00.000Z',
};

test('Markdown: per event its name, description, guarantee, schema, example, producers, consumers', () => {
  const md = catalogMarkdown([
    base,
    {
      ...base,
      sender: 'shipping',
      type: 'parcel.sent',
      description: null,
      schema: null,
      example: null,
      validate: false,
      producers: [],
      consumers: [],
      firstSeen: null,
      lastSeen: null,
      version: null,
    },
  ]);
  assert.match(
    md,
    /^# Event catalog\n\n- \[billing:invoice\.paid\]\(#billing-invoice-paid\) — An invoice was paid\n- \[shipping:parcel\.sent\]/,
  );
  assert.match(md, /## billing:invoice\.paid\n\nAn invoice was paid\n/);
  assert.match(md, /- \*\*Routing key:\*\* `billing\.invoice\.paid`/);
  assert.match(md, /- \*\*Schema version:\*\* 2/);
  assert.match(md, /- \*\*Delivery guarantee:\*\* At least once.* Validated at ingest/);
  assert.ok(md.includes('### Schema\n\n```json\n{\n  "type": "object",\n  "required": [\n    "id"\n  ]\n}\n```'));
  assert.ok(md.includes('### Example\n\n```json\n{\n  "id": "inv-1"\n}\n```'));
  assert.match(
    md,
    /### Producers\n\n- billing \(RabbitMQ user herald-billing\): 12 events, first 2026-01-01T00:00:00.000Z, last 2026-01-02/,
  );
  assert.match(md, /### Consumers\n\n- subscription ledger: first/);
  assert.match(md, /## shipping:parcel\.sent\n\n_No description\._\n/);
  assert.match(md, /### Schema\n\n_None in the catalog\._/);
  assert.doesNotMatch(md.split('## shipping')[1] ?? '', /### Example|Validated at ingest/);
  assert.equal(catalogMarkdown([]), '# Event catalog\n\nNo event types yet.\n');
});

test('Markdown: text from the hub cannot open markup; a schema holding backticks gets a longer fence', () => {
  const md = catalogMarkdown([
    {
      ...base,
      description: 'line one\n## injected <script>alert(1)</script> [x](javascript:1) `code`',
      schema: { description: 'has ``` inside' },
    },
  ]);
  assert.doesNotMatch(md, /\n## injected/);
  assert.ok(md.includes('line one \\#\\# injected \\<script\\>alert(1)\\</script\\> \\[x\\](javascript:1) \\`code\\`'));
  assert.ok(md.includes('````json\n{\n  "description": "has ``` inside"\n}\n````'));
});

test('one line per type for list', () => {
  assert.equal(
    catalogLine(base),
    'billing:invoice.paid  v2  validated  1 producer(s), 1 consumer(s)  last seen 2026-01-02T00:00:00.000Z  An invoice was paid',
  );
  assert.equal(
    catalogLine({ ...base, version: null, validate: false, lastSeen: null, description: null }),
    'billing:invoice.paid  no schema  1 producer(s), 1 consumer(s)',
  );
});

test('Markdown with observed: false leaves out seen, producers and consumers, and keeps the rest', () => {
  const md = catalogMarkdown([base], 'Event catalog', { observed: false });
  assert.doesNotMatch(md, /Seen:|### Producers|### Consumers|2026-01-02/);
  assert.match(md, /- \*\*Schema version:\*\* 2/);
  assert.ok(md.includes('### Example\n\n```json\n{\n  "id": "inv-1"\n}\n```'));
  assert.equal(
    md,
    catalogMarkdown([{ ...base, producers: [], consumers: [], firstSeen: null, lastSeen: null }], 'Event catalog', { observed: false }),
  );
});

test('a type read without an admin token (no producers or consumers): Markdown and the line leave them out', () => {
  const { producers: _p, consumers: _c, ...reader } = base;
  const md = catalogMarkdown([reader]);
  assert.doesNotMatch(md, /### Producers|### Consumers|herald-billing|ledger/);
  assert.match(md, /- \*\*Seen:\*\* first 2026-01-01/);
  assert.equal(catalogLine(reader), 'billing:invoice.paid  v2  validated  last seen 2026-01-02T00:00:00.000Z  An invoice was paid');
});
