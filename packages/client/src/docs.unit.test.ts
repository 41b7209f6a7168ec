import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '@herald/testing';

// Every ```ts block of the SDK's documentation is compiled against the SDK's types, each block as a
// module of its own. A line marked `// does not compile` is also compiled uncommented, in a copy of
// its block, and must then fail: the page's claims about compile-time checks are checked too.

const DOCS = ['docs/sdk.md', 'docs/outbox.md', 'README.md'];
const MARK = '// does not compile';

interface Block {
  file: string;
  /** Where it came from, for messages: docs/sdk.md:123. */
  origin: string;
  mustFail: boolean;
}

function blocksOf(doc: string): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const lines = readFileSync(join(repoRoot, doc), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```ts') continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]?.trim() !== '```') end++;
    out.push({ line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return out;
}

test('every ts code block of docs/sdk.md, docs/outbox.md and the README compiles; lines marked "does not compile" do not', () => {
  const dir = join(repoRoot, 'packages/client/.tmp-docs');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const blocks: Block[] = [];
  for (const doc of DOCS) {
    const name = doc.replace(/[^A-Za-z0-9]+/g, '-');
    for (const { line, code } of blocksOf(doc)) {
      const file = `${name}-${line}.ts`;
      writeFileSync(join(dir, file), `${code}\nexport {};\n`);
      blocks.push({ file, origin: `${doc}:${line}`, mustFail: false });
      code.split('\n').forEach((text, n) => {
        if (!text.includes(MARK)) return;
        const broken = code.split('\n');
        broken[n] = text.replace(/^(\s*)\/\/\s?/, '$1').replace(MARK, '');
        const variant = `${name}-${line}-fails-${n}.ts`;
        writeFileSync(join(dir, variant), `${broken.join('\n')}\nexport {};\n`);
        blocks.push({ file: variant, origin: `${doc}:${line + n}`, mustFail: true });
      });
    }
  }
  assert.ok(blocks.filter((b) => b.origin.startsWith('docs/sdk.md')).length >= 10, 'docs/sdk.md lost its examples');
  assert.ok(
    blocks.some((b) => b.mustFail),
    'no compile-time refusal is shown any more',
  );
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: '../../../tsconfig.json', compilerOptions: { noUnusedLocals: false }, include: ['*.ts'] }),
  );
  const tsc = spawnSync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], {
    encoding: 'utf8',
  });
  const output = tsc.stdout + tsc.stderr;
  const failing = new Set([...output.matchAll(/^(\S+?\.ts)\(\d+,\d+\): error/gm)].map((m) => (m[1] ?? '').split('/').pop()));
  for (const b of blocks) {
    if (b.mustFail) assert.ok(failing.has(b.file), `${b.origin}: marked "${MARK}", yet it compiles`);
    else
      assert.ok(
        !failing.has(b.file),
        `${b.origin} does not compile:\n${output
          .split('\n')
          .filter((l) => l.includes(b.file))
          .join('\n')}`,
      );
  }
  rmSync(dir, { recursive: true, force: true });
});
