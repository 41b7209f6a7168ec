import type { DestinationStream } from 'pino';

/** `HERALD_LOG_FORMAT`: `auto` (pretty on a terminal, JSON otherwise), `pretty`, `json`. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO ', color: '\x1b[32m' },
  40: { name: 'WARN ', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields every line has, or that the line shows in its own place. */
const SHOWN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'service', 'part']);

/** A field's value as it reads in one line: bare when it is a plain word, else JSON. */
function valueText(v: unknown): string {
  if (typeof v === 'string') return /^[\w.:/@+-]{1,200}$/.test(v) ? v : JSON.stringify(v);
  // An error: its message (the stack is in the JSON format).
  if (typeof v === 'object' && v !== null && 'message' in v && 'stack' in v) return JSON.stringify(String(v.message));
  return JSON.stringify(v) ?? String(v);
}

/**
 * One pino JSON line as people read it: `09:15:02.123 INFO  [ingest] ingest paused side=store`,
 * the level coloured when `color`. A line that is not JSON goes through as it is. Control
 * characters in messages are escaped (JSON.stringify), so a field cannot forge another line.
 */
export function prettyLine(json: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = LEVELS[Number(o.level)] ?? { name: String(o.level).toUpperCase().padEnd(5), color: '' };
  const time = typeof o.time === 'number' ? new Date(o.time).toISOString().slice(11, 23) : '';
  const part = typeof o.part === 'string' ? `[${o.part}] ` : '';
  const msg = typeof o.msg === 'string' ? o.msg.replace(/\p{Cc}/gu, (c) => JSON.stringify(c).slice(1, -1)) : '';
  const fields = Object.entries(o)
    .filter(([k]) => !SHOWN.has(k))
    .map(([k, v]) => `${k}=${valueText(v)}`)
    .join(' ');
  const lvl = color ? `${level.color}${level.name}${RESET}` : level.name;
  const rest = fields === '' ? '' : color ? ` ${DIM}${fields}${RESET}` : ` ${fields}`;
  return `${time} ${lvl} ${part}${msg}${rest}\n`;
}

/** A pino destination that writes pretty lines to `out` (synchronously, like pino's default). */
export function prettyDestination(out: NodeJS.WriteStream = process.stdout): DestinationStream {
  const color = out.isTTY === true && process.env.NO_COLOR === undefined;
  return { write: (line: string) => void out.write(prettyLine(line, color)) };
}

/** Whether `format` means pretty output on `out`. */
export function isPretty(format: LogFormat, out: NodeJS.WriteStream = process.stdout): boolean {
  return format === 'pretty' || (format === 'auto' && out.isTTY === true);
}
