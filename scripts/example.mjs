#!/usr/bin/env node
// `npm run example -- <name> [args]`: runs examples/<name>/main.ts from the TypeScript sources
// (tsx, and the `herald-source` condition so @herald/* resolve to their src/), passing the rest of
// the arguments on, and exits with its exit code.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const examples = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'examples', d.name, 'main.ts')))
  .map((d) => d.name)
  .sort();
const [name, ...args] = process.argv.slice(2);
if (!name || !examples.includes(name)) {
  console.error(`${name ? `unknown example ${JSON.stringify(name)}` : 'which example?'}: expected one of ${examples.join(', ')}`);
  process.exit(2);
}
const child = spawn(process.execPath, ['--conditions=herald-source', '--import', 'tsx', join('examples', name, 'main.ts'), ...args], {
  cwd: root,
  stdio: 'inherit',
});
// Ctrl-C reaches the example directly (same process group), which shuts down cleanly; a SIGTERM
// sent to this launcher alone is passed on. The example's exit code is ours.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
