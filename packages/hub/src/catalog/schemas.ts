import { deeperThan, ErrorCodes, ValidationError } from '@herald/core';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';
import { RE2JS } from 're2js';
import { FIXED_CAPS } from '../caps/index.ts';

/** ajv-formats is CommonJS: from built ESM its default import is `module.exports`, whose `default` is the plugin too. */
const addFormats = ((addFormatsModule as { default?: FormatsPlugin }).default ?? addFormatsModule) as FormatsPlugin;

/**
 * What the catalog accepts of a schema and an example (docs/catalog.md lists them): a schema is
 * compiled into code and run for every event of a validated type, so its size, its nesting and its
 * regular expressions are bounded before ajv sees it.
 */
export const CATALOG_LIMITS = {
  /** A schema as JSON, in bytes of UTF-8. */
  schemaBytes: 65_536,
  /** Nesting of objects and arrays in a schema. */
  schemaDepth: 32,
  /** An example payload as JSON, in bytes. */
  exampleBytes: 65_536,
  /** A description, in characters. */
  descriptionChars: 1000,
  /** One `pattern` (or `patternProperties` name), in characters. */
  patternChars: 500,
  /** The longest string a `pattern` is tried on; a longer one fails it (a regular expression's work grows with its input). */
  patternInputChars: 10_000,
  /** The largest `maxItems` beside `uniqueItems` when the items are not of a scalar type. */
  uniqueItems: 1000,
  /** The reason of a violation, in characters (a dead letter's reason is bounded too). */
  reasonChars: 900,
  /** Types one page of GET /api/v1/catalog lists by default, and at most. */
  pageTypes: 1000,
  maxPageTypes: 10_000,
  /** Schemas and examples one page brings into memory; past it the page ends early (`next` goes on). */
  pageBytes: 16 * 1024 * 1024,
  /** Types and bytes of schemas the AsyncAPI document takes; past them it is cut, and says so. */
  asyncApiTypes: 10_000,
  asyncApiBytes: 32 * 1024 * 1024,
  /** Schema versions one type keeps: a PUT of one more is LIMIT_EXCEEDED (delete the type to start over). A fixed cap (FIXED_CAPS). */
  maxVersions: FIXED_CAPS.catalogVersions.max,
  /** Entries (types with a PUT) the catalog holds: a PUT of a new type past it is LIMIT_EXCEEDED. A fixed cap. */
  maxEntries: FIXED_CAPS.catalogEntries.max,
  /** Types that validate at ingest, each compiled into this hub's memory: turning on one more is LIMIT_EXCEEDED. A fixed cap. */
  maxValidated: FIXED_CAPS.catalogValidated.max,
  /** Types only observed that the catalog records; new ones past it are not recorded (logged). A fixed cap. */
  maxObservedTypes: FIXED_CAPS.catalogObservedTypes.max,
  /** Producers and consumers not seen for this long are deleted (at a flush, at most once an hour). */
  observedKeepMs: 30 * 24 * 3600 * 1000,
  /**
   * Names of types one page of GET /api/v1/catalog reads at most to find the caller's: more than
   * the caps above let the catalog hold, so a page always reaches the next type the caller may see.
   */
  listScanTypes: 200_000,
  /** An AsyncAPI document is built again once the catalog changed, or after maxAge; never more often than minAge. */
  asyncApiMaxAgeMs: 30_000,
  asyncApiMinAgeMs: 1000,
  /** AsyncAPI documents kept (one per set of roles that asked). */
  asyncApiCached: 100,
} as const;

/** Checks one event's data; undefined when it conforms, else the reason (ajv's errors, bounded). */
export type PayloadCheck = (data: unknown) => string | undefined;

function refuse(field: string, message: string): never {
  throw new ValidationError(ErrorCodes.INVALID_REQUEST, message, { details: { parameter: field } });
}

/**
 * A regular expression ajv may compile into a validator: bounded, and free of the shapes that take
 * exponential time on a crafted string (a quantified group that holds a quantifier, `(a+)+`;
 * backreferences; lookarounds). The reason it is not, else undefined.
 */
export function unsafePattern(pattern: string): string | undefined {
  if (pattern.length > CATALOG_LIMITS.patternChars) return `longer than ${CATALOG_LIMITS.patternChars} characters`;
  // For each open group: whether a quantifier occurs inside it.
  const groups: boolean[] = [];
  let quantifiedInside = false;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '\\') {
      const next = pattern[i + 1] ?? '';
      if (/[1-9k]/.test(next) && !inClass) return 'it holds a backreference';
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') {
      if (pattern.startsWith('(?=', i) || pattern.startsWith('(?!', i) || pattern.startsWith('(?<=', i) || pattern.startsWith('(?<!', i))
        return 'it holds a lookaround';
      groups.push(quantifiedInside);
      quantifiedInside = false;
    } else if (c === ')') {
      const inner: boolean = quantifiedInside;
      quantifiedInside = groups.pop() ?? false;
      const after = pattern[i + 1];
      if (after === '*' || after === '+' || after === '?' || after === '{') {
        if (inner && after !== '?') return 'a quantified group holds a quantifier (such as (a+)+), which can take exponential time';
        quantifiedInside = true;
      }
      quantifiedInside ||= inner;
    } else if (c === '*' || c === '+' || c === '{') quantifiedInside = true;
  }
  return undefined;
}

/**
 * Keywords whose value is one schema, an array of schemas, or a map of names to schemas (draft-07
 * and the later keywords ajv knows). Only these are walked: every other keyword's value is data
 * (`enum`, `const`, `default`, `examples`, a `required` list, …), never read as a schema, and ajv's
 * strict mode refuses a keyword it does not know, so nothing unwalked is compiled.
 */
const SCHEMA_KEYWORDS = new Set([
  'additionalItems',
  'additionalProperties',
  'contains',
  'propertyNames',
  'not',
  'if',
  'then',
  'else',
  'unevaluatedItems',
  'unevaluatedProperties',
  'contentSchema',
]);
const SCHEMA_ARRAY_KEYWORDS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
const SCHEMA_MAP_KEYWORDS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependentSchemas']);

/** The schemas directly inside `schema`, with their paths: by keyword kind, never into data. */
function subschemas(schema: Record<string, unknown>, path: string): [string, unknown][] {
  const at = (k: string) => (path === '' ? k : `${path}.${k}`);
  const out: [string, unknown][] = [];
  const map = (k: string, value: unknown, only: (v: unknown) => boolean = () => true) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
    for (const [name, sub] of Object.entries(value)) if (only(sub)) out.push([`${at(k)}.${name}`, sub]);
  };
  for (const [k, value] of Object.entries(schema)) {
    if (SCHEMA_KEYWORDS.has(k)) out.push([at(k), value]);
    else if (SCHEMA_ARRAY_KEYWORDS.has(k) || (k === 'items' && Array.isArray(value))) {
      if (Array.isArray(value)) for (const [i, sub] of value.entries()) out.push([`${at(k)}[${i}]`, sub]);
    } else if (k === 'items') out.push([at(k), value]);
    else if (SCHEMA_MAP_KEYWORDS.has(k)) map(k, value);
    // draft-07 `dependencies`: a schema per property, or a list of property names (data).
    else if (k === 'dependencies') map(k, value, (sub) => !Array.isArray(sub));
  }
  return out;
}

/** Walks the schema without recursion: `$ref`s stay inside it, patterns are safe. Throws a 400 naming the path. */
function checkKeywords(schema: unknown, field: string): void {
  const stack: [string, unknown][] = [['', schema]];
  while (stack.length > 0) {
    const [path, v] = stack.pop() as [string, unknown];
    // A boolean schema (or a value ajv will refuse) holds nothing to check.
    if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
    const s = v as Record<string, unknown>;
    const at = (k: string) => `${field}${path === '' ? '' : `.${path}`}.${k}`;
    for (const k of ['$ref', '$dynamicRef', '$recursiveRef']) {
      const ref = s[k];
      if (typeof ref === 'string' && !ref.startsWith('#'))
        refuse(
          field,
          `${at(k)}: only references inside the schema (starting with #) are allowed, not ${JSON.stringify(ref.slice(0, 100))}`,
        );
    }
    if (typeof s.pattern === 'string') {
      const why = unsafePattern(s.pattern);
      if (why !== undefined) refuse(field, `${at('pattern')}: the pattern is refused: ${why}`);
    }
    if (typeof s.patternProperties === 'object' && s.patternProperties !== null) {
      for (const name of Object.keys(s.patternProperties)) {
        const why = unsafePattern(name);
        if (why !== undefined)
          refuse(field, `${at('patternProperties')}: the pattern ${JSON.stringify(name.slice(0, 100))} is refused: ${why}`);
      }
    }
    if (s.uniqueItems === true && !uniqueItemsBounded(s))
      refuse(
        field,
        `${at('uniqueItems')}: uniqueItems needs maxItems of at most ${CATALOG_LIMITS.uniqueItems} beside it, or items of a scalar type (comparing every pair of a long array takes quadratic time)`,
      );
    for (const sub of subschemas(s, path)) stack.push(sub);
  }
}

/** True when ajv's uniqueItems check stays linear or small: items of a scalar type, or maxItems bounded. */
function uniqueItemsBounded(schema: Record<string, unknown>): boolean {
  const max = schema.maxItems;
  if (typeof max === 'number' && max <= CATALOG_LIMITS.uniqueItems) return true;
  const items = schema.items as { type?: unknown } | undefined;
  const scalar = ['string', 'number', 'integer', 'boolean', 'null'];
  return (
    typeof items === 'object' && items !== null && !Array.isArray(items) && typeof items.type === 'string' && scalar.includes(items.type)
  );
}

/**
 * ajv's patterns on RE2 (re2js): linear in the input whatever the pattern, so no schema can make a
 * validation backtrack; strings past patternInputChars fail instead of running. A pattern RE2 cannot
 * compile (backreferences, lookaround) refuses the schema. `toString` is the key ajv caches a
 * compiled pattern under: without it every pattern of a schema would share the first one.
 */
const boundedRegExp = Object.assign(
  (pattern: string, flags: string): { test(s: string): boolean; toString(): string } => {
    let re: RE2JS;
    try {
      re = RE2JS.compile(pattern, flags.includes('i') ? RE2JS.CASE_INSENSITIVE : 0);
    } catch (err) {
      throw new Error(`the pattern ${JSON.stringify(pattern.slice(0, 100))} is refused: ${(err as Error).message}`);
    }
    return { test: (s: string) => s.length <= CATALOG_LIMITS.patternInputChars && re.test(s), toString: () => `/${pattern}/${flags}` };
  },
  // Only for ajv's standalone code, which the hub does not generate.
  { code: 'new RegExp' },
);

/** One ajv per schema: nothing of one schema ($id, compiled code) stays behind in another's. */
function newAjv(): Ajv {
  const ajv = new Ajv({
    allErrors: false,
    strictSchema: true,
    strictNumbers: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    logger: false,
    addUsedSchema: false,
    code: { regExp: boundedRegExp },
  });
  addFormats(ajv);
  return ajv;
}

/** ajv's errors as one line, bounded. */
export function errorsText(errors: readonly ErrorObject[] | null | undefined): string {
  const text = (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
    .join('; ');
  return text.length > CATALOG_LIMITS.reasonChars ? `${text.slice(0, CATALOG_LIMITS.reasonChars)}…` : text;
}

/** The byte length of `value` as JSON. */
function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '');
}

/**
 * Checks a JSON Schema (draft-07, as ajv 8 reads it, with ajv-formats' formats) and compiles it.
 * Throws a ValidationError (INVALID_REQUEST, `details.parameter` = `field`) when it is not an
 * object or boolean, is larger or deeper than CATALOG_LIMITS allow, refers outside itself, holds an
 * unsafe pattern, or when ajv cannot compile it (ajv's message).
 */
export function compileSchema(schema: unknown, field = 'schema'): PayloadCheck {
  if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema)))
    refuse(field, `${field} must be a JSON Schema: an object (or true/false)`);
  if (jsonBytes(schema) > CATALOG_LIMITS.schemaBytes) refuse(field, `${field} is larger than ${CATALOG_LIMITS.schemaBytes} bytes as JSON`);
  if (deeperThan(schema, CATALOG_LIMITS.schemaDepth)) refuse(field, `${field} nests deeper than ${CATALOG_LIMITS.schemaDepth} levels`);
  checkKeywords(schema, field);
  let validate: ReturnType<Ajv['compile']>;
  try {
    validate = newAjv().compile(schema as object | boolean);
  } catch (err) {
    refuse(field, `${field} does not compile: ${err instanceof Error ? err.message.slice(0, 500) : String(err)}`);
  }
  return (data) => {
    try {
      return validate(data) ? undefined : errorsText(validate.errors);
    } catch (err) {
      // A recursive schema over deep data can run out of stack: that data does not conform either.
      return `the validator failed on this data: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}`;
    }
  };
}

/** Checks an example payload against a compiled schema: a 400 on `example` when it does not conform or is too large. */
export function checkExample(check: PayloadCheck, example: unknown): void {
  if (jsonBytes(example) > CATALOG_LIMITS.exampleBytes)
    refuse('example', `example is larger than ${CATALOG_LIMITS.exampleBytes} bytes as JSON`);
  const why = check(example);
  if (why !== undefined) refuse('example', `example does not match the schema: ${why}`);
}

/** JSON with object keys sorted, so that two equal schemas compare equal however their keys were ordered. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
