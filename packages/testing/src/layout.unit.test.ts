// The layout rules of docs/architecture.md, enforced: what each package may import, no import
// cycles, SQL only in the store, source files short. Read from the sources themselves (every
// `import … from` and `export … from` of packages/*/src), so a change that breaks a rule fails here.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const PACKAGES = ['core', 'client', 'hub', 'cli', 'testing'] as const;
type Pkg = (typeof PACKAGES)[number];

/** What each package may import of Herald's (outside its tests). */
const ALLOWED: Record<Pkg, readonly Pkg[]> = {
  core: [],
  client: ['core'],
  hub: ['core'],
  cli: ['core', 'client', 'hub'],
  testing: ['core', 'client', 'hub', 'cli'],
};

/**
 * Files outside `store/` that still hold SQL, and source files over 500 lines, as they are now:
 * the architecture step moves the SQL into the store and splits the long files. Nothing may be
 * added here; a file that no longer breaks the rule must be taken off (the test says so).
 */
const SQL_OUTSIDE_STORE = new Set<string>([]);
/** The SDK's outbox and inbox: SQL of the service's own tables, in the service's database, not the hub's store. */
const SERVICE_TABLES = 'client/src/outbox/';
const LONG_FILES: Record<string, number> = {};
const MAX_LINES = 500;

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Test code: test files and the kits, suites and fuzzers only tests use. */
function isTestCode(file: string): boolean {
  return /\.test\.ts$|\.suite\.ts$|test-kit\.ts$|e2e-kit\.ts$|\/fuzz\//.test(file);
}

interface Source {
  readonly pkg: Pkg;
  readonly file: string;
  readonly text: string;
  /** Imports that exist at run time (not `import type`), as written. */
  readonly imports: readonly string[];
}

/** The imports of a module that exist at run time (not `import type`), as written. */
function runtimeImports(text: string): string[] {
  const imports: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'/gms)) if (!m[1]) imports.push(m[2] as string);
  for (const m of text.matchAll(/^import\s+'([^']+)'/gm)) imports.push(m[1] as string);
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) imports.push(m[1] as string);
  return imports;
}

function sources(): Source[] {
  const out: Source[] = [];
  for (const pkg of PACKAGES) {
    for (const file of walk(join(ROOT, 'packages', pkg, 'src'))) {
      if (pkg !== 'testing' && isTestCode(file)) continue;
      if (pkg === 'testing' && file.endsWith('.test.ts')) continue;
      const text = readFileSync(file, 'utf8');
      out.push({ pkg, file, text, imports: runtimeImports(text) });
    }
  }
  return out;
}

const all = sources();
const short = (file: string) => relative(join(ROOT, 'packages'), file);

test('each package imports only the Herald packages it may: core none, client core, hub core (never cli or testing outside tests)', () => {
  const broken: string[] = [];
  for (const s of all) {
    for (const spec of s.imports) {
      const m = /^@herald\/([a-z]+)/.exec(spec);
      if (m && m[1] !== s.pkg && !ALLOWED[s.pkg].includes(m[1] as Pkg)) broken.push(`${short(s.file)} imports ${spec}`);
      if (spec.startsWith('.')) {
        const target = relative(join(ROOT, 'packages'), resolve(dirname(s.file), spec)).split('/')[0];
        if (target !== s.pkg) broken.push(`${short(s.file)} reaches into another package: ${spec}`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('no import cycles between the modules of a package', () => {
  const byFile = new Map(all.map((s) => [s.file, s]));
  const edges = new Map<string, string[]>();
  for (const s of all) {
    const to: string[] = [];
    for (const spec of s.imports) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(s.file), spec);
      if (byFile.has(target)) to.push(target);
    }
    edges.set(s.file, to);
  }
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    const st = state.get(file);
    if (st === 'done') return;
    if (st === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].map(short).join(' → '));
      return;
    }
    state.set(file, 'open');
    for (const next of edges.get(file) ?? []) visit(next, [...path, file]);
    state.set(file, 'done');
  };
  for (const file of edges.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});

test('SQL lives in the store (the files that still hold it are listed, and the list only shrinks)', () => {
  const sql = /['`"]\s*(?:SELECT\s|INSERT INTO\s|UPDATE\s+\w+\s+SET\s|DELETE FROM\s|WITH\s+\w+\s+AS\s*\()/;
  const holding = all
    .filter((s) => s.pkg === 'hub' && !short(s.file).startsWith('hub/src/store/') && sql.test(s.text))
    .map((s) => short(s.file));
  assert.deepEqual(
    holding.filter((f) => !SQL_OUTSIDE_STORE.has(f)),
    [],
    'new SQL outside packages/hub/src/store/',
  );
  assert.deepEqual(
    [...SQL_OUTSIDE_STORE].filter((f) => !holding.includes(f)),
    [],
    'these hold no SQL any more: take them off the list',
  );
  assert.deepEqual(
    all
      .filter((s) => s.pkg !== 'hub' && sql.test(s.text) && s.pkg !== 'testing' && !short(s.file).startsWith(SERVICE_TABLES))
      .map((s) => short(s.file)),
    [],
  );
});

test(`source files have at most ${MAX_LINES} lines (the long ones listed may not grow)`, () => {
  const over: string[] = [];
  for (const s of all) {
    if (isTestCode(s.file)) continue;
    const lines = s.text.split('\n').length;
    const bound = LONG_FILES[short(s.file)] ?? MAX_LINES;
    if (lines > bound) over.push(`${short(s.file)}: ${lines} lines (at most ${bound})`);
  }
  assert.deepEqual(over, []);
  for (const [file, bound] of Object.entries(LONG_FILES)) {
    const s = all.find((x) => short(x.file) === file);
    assert.ok(
      s && s.text.split('\n').length > MAX_LINES,
      `${file} is ${MAX_LINES} lines or fewer now: take it off LONG_FILES (bound ${bound})`,
    );
  }
});

test('examples import only the SDK, by its public entry points, as a user would (their tests aside)', () => {
  const PUBLIC = new Set(['@herald/client', '@herald/client/grpc', '@herald/client/outbox']);
  const broken: string[] = [];
  for (const file of walk(join(ROOT, 'examples'))) {
    if (isTestCode(file)) continue;
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('@herald/') && !PUBLIC.has(spec)) broken.push(`${relative(ROOT, file)} imports ${spec}`);
      if (spec.startsWith('.') && relative(dirname(file), resolve(dirname(file), spec)).startsWith('..'))
        broken.push(`${relative(ROOT, file)} reaches out of its example: ${spec}`);
    }
  }
  assert.deepEqual(broken, []);
});
