#!/usr/bin/env node
// Runs the test tiers named on the command line (unit, int, e2e, fuzz) in one node:test run, so the
// closing summary covers all of them. Test files are `packages/*/src/**/*.<tier>.test.ts` and
// `examples/<name>/*.<tier>.test.ts`. The fuzz tier is sized by HERALD_FUZZ_RUNS, HERALD_FUZZ_SEED
// and the other variables in packages/hub/src/fuzz/fuzz-kit.ts.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const tiers = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const passthrough = process.argv.slice(2).filter((a) => a.startsWith('-'));
const known = new Set(['unit', 'int', 'e2e', 'fuzz']);
for (const t of tiers) {
  if (!known.has(t)) {
    console.error(`unknown test tier ${JSON.stringify(t)}: expected unit, int, e2e or fuzz`);
    process.exit(2);
  }
}

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.tmp')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else out.push(path);
  }
  return out;
}

const files = ['packages', 'examples']
  .flatMap((dir) => walk(dir, []))
  .filter((f) => tiers.some((t) => f.endsWith(`.${t}.test.ts`)))
  .sort();
if (files.length === 0) {
  console.error(`no test files for tiers ${tiers.join(', ')}`);
  process.exit(1);
}
const concurrency = process.env.HERALD_TEST_CONCURRENCY ?? String(Math.max(2, availableParallelism()));
const result = spawnSync(
  process.execPath,
  [
    '--conditions=herald-source',
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=180000',
    ...passthrough,
    ...files,
  ],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
