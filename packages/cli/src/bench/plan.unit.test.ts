import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPlan, decodePayload, encodePayload, eventAt, typeIndexOf } from './plan.ts';

describe('bench plan', () => {
  it('names senders s1…sN and types t1…tM', () => {
    const plan = createPlan(3, 4, 7);
    assert.deepEqual(plan.senders, ['s1', 's2', 's3']);
    assert.deepEqual(plan.types, ['t1', 't2', 't3', 't4']);
  });

  it('takes senders in turn with dense per-sender sequence numbers', () => {
    const plan = createPlan(3, 4);
    const seqs = [0, 0, 0];
    for (let i = 0; i < 300; i++) {
      const ev = eventAt(plan, i);
      assert.equal(ev.sender, i % 3);
      assert.equal(ev.seq, seqs[ev.sender]);
      seqs[ev.sender]! += 1;
    }
  });

  it('chooses types deterministically per seed, spread over all types', () => {
    const a = createPlan(2, 4, 1);
    const b = createPlan(2, 4, 2);
    const counts = [0, 0, 0, 0];
    let differ = 0;
    for (let seq = 0; seq < 4000; seq++) {
      const t = typeIndexOf(a, 0, seq);
      assert.equal(t, typeIndexOf(a, 0, seq));
      counts[t]! += 1;
      if (t !== typeIndexOf(b, 0, seq)) differ += 1;
    }
    for (const c of counts) assert.ok(c > 800 && c < 1200, `uneven spread ${counts}`);
    assert.ok(differ > 2000, 'another seed gives another sequence');
  });

  it('pads the payload to the asked size and reads it back', () => {
    const p = { run: 'abc-123', seq: 42, ts: 1731000000123.456 };
    const body = encodePayload(p, 1024);
    assert.equal(body.length, 1024);
    assert.deepEqual(decodePayload(body), p);
    assert.ok(JSON.parse(body.toString()).pad.length > 900, 'valid JSON throughout');
    const small = encodePayload(p, 0);
    assert.deepEqual(decodePayload(small), p);
  });

  it('ignores bodies it did not write', () => {
    assert.equal(decodePayload(Buffer.from('not json')), undefined);
    assert.equal(decodePayload(Buffer.from('{"run":1}')), undefined);
    assert.equal(decodePayload(Buffer.from('{"hello":"world"}')), undefined);
  });
});
