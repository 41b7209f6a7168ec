import type { EventPlan } from './plan.ts';

/** The five receiver kinds of the seeds (DESIGN.md §1). */
export const RECEIVER_KINDS = ['one-sender', 'types', 'pairs', 'senders', 'all'] as const;
export type ReceiverKind = (typeof RECEIVER_KINDS)[number];

/** One receiver of the bench: its kind and its selector patterns. */
export interface ReceiverSpec {
  readonly kind: ReceiverKind;
  readonly selector: readonly string[];
}

/**
 * The five receivers for a plan. Names beyond the plan (s2 when there is one sender) are kept: the
 * selector is still valid and simply matches nothing more, which the expected count reflects.
 */
export function receiverSpecs(plan: EventPlan): ReceiverSpec[] {
  const s = (i: number) => plan.senders[i] ?? `s${i + 1}`;
  const t = (i: number) => plan.types[i] ?? `t${i + 1}`;
  return [
    { kind: 'one-sender', selector: [`${s(0)}:*`] },
    { kind: 'types', selector: [`*:${t(0)}`, `*:${t(1)}`] },
    { kind: 'pairs', selector: [`${s(0)}:${t(0)}`, `${s(1)}:${t(1)}`] },
    { kind: 'senders', selector: [`${s(0)}:*`, `${s(1)}:*`] },
    { kind: 'all', selector: ['*:*'] },
  ];
}
