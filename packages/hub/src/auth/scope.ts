import type { Pattern, Selector } from '@herald/core';

/*
 * Scope checks: does a granted selector cover a selector asked for? Pattern by pattern: an asked
 * pattern is covered when one granted pattern matches every event it matches (decided exactly,
 * typeCovers). Patterns that cover one only together (`billing:a` and `billing:a.*.#` granted,
 * `billing:a.#` asked) are refused: grant the wider pattern instead. Refusing is the safe side.
 */

type Token = { readonly kind: 'name'; readonly name: string } | { readonly kind: 'one' } | { readonly kind: 'any' };

/** A type pattern as tokens; a whole type of `*` is any type, one segment or more. */
function tokens(type: string): Token[] {
  if (type === '*') return [{ kind: 'one' }, { kind: 'any' }];
  return type.split('.').map((s): Token => (s === '*' ? { kind: 'one' } : s === '#' ? { kind: 'any' } : { kind: 'name', name: s }));
}

/** The states of the granted pattern's automaton after its epsilon moves (a `#` may match nothing). */
function closure(g: readonly Token[], states: Iterable<number>): Set<number> {
  const out = new Set<number>();
  for (let s of states) {
    out.add(s);
    while (s < g.length && g[s]!.kind === 'any') out.add(++s);
  }
  return out;
}

/** The granted automaton's states after one segment; `segment` undefined stands for a name the granted pattern never mentions. */
function step(g: readonly Token[], states: ReadonlySet<number>, segment: string | undefined): Set<number> {
  const next: number[] = [];
  for (const s of states) {
    const t = g[s];
    if (t === undefined) continue;
    if (t.kind === 'any') next.push(s);
    else if (t.kind === 'one' || (segment !== undefined && t.name === segment)) next.push(s + 1);
  }
  return closure(g, next);
}

/**
 * True when every type the `asked` type pattern matches is matched by `granted`. Walks the asked
 * pattern's automaton against sets of the granted one's states (a subset construction); a `*` or
 * `#` of the asked pattern tries each name the granted pattern mentions and one it does not.
 */
export function typeCovers(granted: string, asked: string): boolean {
  const g = tokens(granted);
  const a = tokens(asked);
  const names = [...new Set(g.flatMap((t) => (t.kind === 'name' ? [t.name] : [])))];
  const choices: (string | undefined)[] = [...names, undefined];
  const seen = new Set<string>();
  const todo: { i: number; states: Set<number> }[] = [{ i: 0, states: closure(g, [0]) }];
  while (todo.length > 0) {
    const { i, states } = todo.pop()!;
    const key = `${i}|${[...states].sort((x, y) => x - y).join(',')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (states.size === 0) return false; // the asked pattern matches something here the granted one cannot
    if (i === a.length) {
      if (!states.has(g.length)) return false; // a type ends here that the granted pattern does not accept
      continue;
    }
    const t = a[i]!;
    if (t.kind === 'name') todo.push({ i: i + 1, states: step(g, states, t.name) });
    else if (t.kind === 'one') for (const c of choices) todo.push({ i: i + 1, states: step(g, states, c) });
    else {
      todo.push({ i: i + 1, states }); // `#` matching nothing more
      for (const c of choices) todo.push({ i, states: step(g, states, c) }); // … or one more segment
    }
  }
  return true;
}

/** True when `granted` matches every event `asked` matches. */
export function patternCovers(granted: Pattern, asked: Pattern): boolean {
  if (granted.sender !== '*' && granted.sender !== asked.sender) return false;
  return typeCovers(granted.type, asked.type);
}

/** The patterns of `asked` that no pattern of the `granted` selectors covers (empty: covered). */
export function uncovered(granted: readonly Selector[], asked: Selector): Pattern[] {
  return asked.patterns.filter((a) => !granted.some((s) => s.patterns.some((g) => patternCovers(g, a))));
}
