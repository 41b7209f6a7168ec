/** How often a progress line is written when stderr is not a terminal (a log file, CI). */
const PLAIN_EVERY_MS = 5000;

/**
 * A progress line for long CLI work, on stderr so stdout stays the result: on a terminal one line
 * rewritten in place (`\r`, cleared at the end); elsewhere a line every 5 s, so a log shows the
 * work goes on without flooding it.
 */
export function progressLine(out: NodeJS.WriteStream, now: () => number = Date.now): { update(text: string): void; done(): void } {
  const tty = out.isTTY === true;
  let last = now();
  let shown = false;
  return {
    update(text) {
      if (tty) {
        out.write(`\r\x1b[2K${text}`);
        shown = true;
      } else if (now() - last >= PLAIN_EVERY_MS) {
        last = now();
        out.write(`${text}\n`);
      }
    },
    done() {
      if (tty && shown) out.write('\r\x1b[2K');
    },
  };
}
