import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prettyLine } from './log-format.ts';
import { createLogger } from './logger.ts';

test('pretty lines: time, level, part, message, then the other fields; errors in one line; no forged lines', () => {
  const lines: string[] = [];
  const log = createLogger('info', { write: (l: string) => lines.push(prettyLine(l, false)) });
  log.child({ part: 'ingest' }).warn({ side: 'store', batch: 3 }, 'ingest paused');
  log.error({ err: new Error('boom\nsecond line') }, 'failed\nINFO  forged');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[ingest\] ingest paused side=store batch=3\n$/);
  assert.match(lines[1]!, /^\d\d:\d\d:\d\d\.\d{3} ERROR failed\\nINFO {2}forged err="boom\\nsecond line"\n$/);
  assert.equal(lines.join('').split('\n').length, 3, 'two lines, whatever the fields hold');
  assert.equal(prettyLine('not json', true), 'not json\n');
  assert.ok(prettyLine(JSON.stringify({ level: 30, time: 0, msg: 'x' }), true).includes('\x1b[32mINFO '));
});
