#!/usr/bin/env node
// Builds every package to packages/<name>/dist (JavaScript, declarations, source maps) with one
// TypeScript build over the references in tsconfig.build.json, then copies what tsc does not emit:
// the hub's SQL migrations and the dashboard's static files. `npm run build`; `npm ci` runs it too (prepare).
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const clean = process.argv.includes('--clean');
if (clean) for (const p of ['core', 'client', 'hub', 'cli']) rmSync(`packages/${p}/dist`, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const result = spawnSync(process.execPath, [tsc, '-b', 'tsconfig.build.json'], { stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
cpSync('packages/hub/src/store/migrations', 'packages/hub/dist/store/migrations', {
  recursive: true,
  filter: (src) => !src.includes('.') || src.endsWith('.sql'),
});
cpSync('packages/hub/src/dashboard/static', 'packages/hub/dist/dashboard/static', { recursive: true });
