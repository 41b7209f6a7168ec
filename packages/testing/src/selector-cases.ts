/**
 * The one table of selector cases. The in-memory matcher, the SQL predicate (real PostgreSQL) and
 * the AMQP binding keys (real RabbitMQ) are each run against every row: the three must agree.
 */
export interface SelectorCase {
  readonly name: string;
  readonly selector: string | readonly string[];
  /** Routing keys `<sender>.<type>` the selector must match. */
  readonly match: readonly string[];
  /** Routing keys it must not match. */
  readonly miss: readonly string[];
}

export const selectorCases: readonly SelectorCase[] = [
  {
    name: 'all events of one sender',
    selector: 'billing:*',
    match: ['billing.invoice.paid', 'billing.x', 'billing.a.b.c.d'],
    miss: ['shipping.invoice.paid', 'billing2.x', 'bill.x'],
  },
  {
    name: 'some types from any sender',
    selector: '*:invoice.paid, *:invoice.voided',
    match: ['billing.invoice.paid', 'shipping.invoice.voided', 'x.invoice.paid'],
    miss: ['billing.invoice', 'billing.invoice.paid.late', 'billing.invoice.created', 'invoice.paid'],
  },
  {
    name: 'chosen sender×type pairs',
    selector: ['billing:invoice.paid', 'shipping:parcel.sent'],
    match: ['billing.invoice.paid', 'shipping.parcel.sent'],
    miss: ['billing.parcel.sent', 'shipping.invoice.paid', 'billing.invoice.paid.x'],
  },
  {
    name: 'all events of several senders',
    selector: 'billing:*, shipping:*',
    match: ['billing.a', 'shipping.b.c'],
    miss: ['crm.a', 'billingshipping.a'],
  },
  {
    name: 'everything',
    selector: '*:*',
    match: ['billing.a', 'x.y.z', 'a-b_c.D-1'],
    miss: [],
  },
  {
    name: 'one-segment wildcard inside a type',
    selector: 'billing:invoice.*',
    match: ['billing.invoice.paid', 'billing.invoice.voided'],
    miss: ['billing.invoice', 'billing.invoice.paid.late', 'shipping.invoice.paid', 'billing.order.paid'],
  },
  {
    name: '# inside a type matches zero or more segments',
    selector: '*:invoice.#',
    match: ['billing.invoice', 'billing.invoice.paid', 'crm.invoice.a.b.c'],
    miss: ['billing.invoices', 'billing.order.invoice'],
  },
  {
    name: '# at the front of a type',
    selector: 'crm:#.deleted',
    match: ['crm.deleted', 'crm.user.deleted', 'crm.a.b.deleted'],
    miss: ['crm.deleted.user', 'billing.user.deleted', 'crm.undeleted'],
  },
  {
    name: '# between segments',
    selector: '*:a.#.z',
    match: ['s.a.z', 's.a.b.z', 's.a.b.c.z'],
    miss: ['s.a', 's.z', 's.a.b', 's.b.a.z'],
  },
  {
    name: '* and # together',
    selector: 'svc:*.#.end',
    match: ['svc.x.end', 'svc.x.y.end', 'svc.x.y.z.end'],
    miss: ['svc.end', 'svc.x.end.y'],
  },
  {
    name: 'whole type # is the same as *',
    selector: 'billing:#',
    match: ['billing.a', 'billing.a.b'],
    miss: ['shipping.a'],
  },
  {
    name: 'names that look like wildcards or parts of others',
    selector: 'hash:star, all:*.any',
    match: ['hash.star', 'all.x.any', 'all.any.any'],
    miss: ['hash.stars', 'star.hash', 'all.any', 'all.x.y.any', 'hash.star.x'],
  },
  {
    name: 'dashes, underscores and digits',
    selector: 'svc-1_a:type_2-b.v1',
    match: ['svc-1_a.type_2-b.v1'],
    miss: ['svc-1_a.type_2-b.v2', 'svc-1.type_2-b.v1', 'svc-1_a.type_2-b'],
  },
  {
    name: 'types are case-sensitive',
    selector: 'Billing:Invoice.Paid',
    match: ['Billing.Invoice.Paid'],
    miss: ['billing.invoice.paid', 'Billing.invoice.Paid'],
  },
  {
    name: 'overlapping patterns',
    selector: 'billing:*, billing:invoice.paid, *:invoice.paid',
    match: ['billing.invoice.paid', 'billing.other', 'crm.invoice.paid'],
    miss: ['crm.other'],
  },
];

/** Selectors that must be rejected, each with a word the error message must contain. */
export const invalidSelectorCases: readonly { selector: string | readonly string[]; mentions: string }[] = [
  { selector: '', mentions: 'no pattern' },
  { selector: 'billing', mentions: '<sender>:<type>' },
  { selector: 'bill ing:*', mentions: 'sender' },
  { selector: 'billing:invoice..paid', mentions: 'segment' },
  { selector: 'billing:invoice.pa$d', mentions: 'pa$d' },
  { selector: 'billing:', mentions: 'type is empty' },
  { selector: ':invoice', mentions: 'sender' },
  { selector: '#:invoice', mentions: 'sender' },
  { selector: ['billing:*', 'x:y.**'], mentions: '**' },
  { selector: `${'a'.repeat(65)}:*`, mentions: 'sender' },
];
