import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressLine } from './progress.ts';

function sink(isTTY: boolean) {
  const written: string[] = [];
  return { out: { isTTY, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream, written };
}

test('a terminal gets one line rewritten in place and cleared at the end', () => {
  const { out, written } = sink(true);
  const p = progressLine(out);
  p.update('1 sent');
  p.update('2 sent');
  p.done();
  assert.deepEqual(written, ['\r\x1b[2K1 sent', '\r\x1b[2K2 sent', '\r\x1b[2K']);
});

test('anything else gets a plain line every 5 s, nothing to clear', () => {
  const { out, written } = sink(false);
  let t = 0;
  const p = progressLine(out, () => t);
  p.update('a');
  t = 4999;
  p.update('b');
  t = 5000;
  p.update('c');
  p.done();
  assert.deepEqual(written, ['c\n']);
});
