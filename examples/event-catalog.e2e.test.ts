// docs/event_catalog.md is what `npm run docs:catalog` makes of the examples' catalog files now: a
// catalog.json changed without running it fails here, with the command that brings the document
// up to date.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot } from '@herald/testing';
import { EVENT_CATALOG_DOC, renderEventCatalog } from '../scripts/event-catalog.ts';

describe('docs/event_catalog.md (e2e: a hub process, the CLI)', { timeout: 120_000 }, () => {
  // The committed document came from another run, on another hub: equal means the same files give the same text.
  test('matches what the examples’ catalog files give now', async () => {
    const rendered = await renderEventCatalog();
    const committed = await readFile(join(repoRoot, EVENT_CATALOG_DOC), 'utf8').catch(() => '');
    assert.ok(
      rendered === committed,
      `${EVENT_CATALOG_DOC} is not what examples/*/catalog.json give: run \`npm run docs:catalog\` and commit the result`,
    );
    for (const type of ['app:log.debug', 'app:log.error', 'orders:order.placed', 'orders:order.shipped'])
      assert.ok(rendered.includes(`## ${type}\n`), `${type} is in the document`);
    assert.doesNotMatch(rendered, /### Producers|### Consumers|\*\*Seen:\*\*/, 'nothing that depends on traffic');
  });
});
