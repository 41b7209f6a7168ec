import { ErrorCodes, HeraldError } from '@herald/core';
import { connect } from 'amqplib';

/** One line for an error: its message, with its code when the message does not name it. */
export function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code !== undefined && !err.message.includes(String(code)) ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}

/**
 * Connects once to RabbitMQ and closes again, so a hub that will wait as a standby still reports a
 * wrong or unreachable broker at start. Rejects with the same one-line UNAVAILABLE error as start().
 */
export async function probeAmqp(url: string): Promise<void> {
  try {
    const conn = await connect(url, { noDelay: true, timeout: 10_000 });
    await conn.close();
  } catch (err) {
    throw unreachable(url, err);
  }
}

/** The one line a user reads when RabbitMQ cannot be reached at start (exported for its unit test). */
export function unreachable(url: string, err: unknown): HeraldError {
  const u = new URL(url);
  const where = `${u.protocol}//${u.hostname}:${u.port || (u.protocol === 'amqps:' ? 5671 : 5672)}${u.pathname.length > 1 ? u.pathname : ''}`;
  const text = errText(err);
  // By the AMQP reply code (amqplib's numeric `code`) or its name, never by digits anywhere in the
  // text: "connect ECONNREFUSED 127.0.0.1:40649" holds a 406 too.
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 404 || code === 406 || /\b(PRECONDITION_FAILED|NOT_FOUND)\b/.test(text)) {
    return new HeraldError(ErrorCodes.UNAVAILABLE, `RabbitMQ at ${where} refused Herald's topology: ${text}`, { cause: err });
  }
  let hint = 'start it with `rabbitmq-server -detached` or set HERALD_AMQP_URL';
  if (code === 403 || /\bACCESS_REFUSED\b|auth/i.test(text)) hint = 'check the user and password in HERALD_AMQP_URL';
  else if (code === 530 || /\bNOT_ALLOWED\b|vhost/i.test(text)) hint = 'check that the vhost exists and the user may use it';
  const reason = code ?? text;
  return new HeraldError(ErrorCodes.UNAVAILABLE, `cannot reach RabbitMQ at ${where} (${String(reason)}): ${hint}`, { cause: err });
}
