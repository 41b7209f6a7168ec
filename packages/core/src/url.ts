/**
 * Credentials inside a URL (`scheme://user:password@`) or a `password=` parameter. The user part
 * stops at what cannot be in it unencoded; the password runs to the last `@` before the host, so a
 * password holding a raw `@` or `:` is still covered.
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:)[^\s/?#]*@/gi;
const PASSWORD_PARAM = /((?:^|[?&;\s])(?:password|passwd|pwd)=)[^&;\s]*/gi;

/**
 * Text with every password it holds replaced by `***`: the password of any URL in it
 * (`amqp://u:***@host`) and `password=` parameters. For log lines, error messages and
 * configuration errors, which quote what they were given.
 */
export function redactSecrets(text: string): string {
  return text.replace(URL_PASSWORD, '$1***@').replace(PASSWORD_PARAM, '$1***');
}

/** A URL with its password replaced by `***`, for logs and error lines; text that is not a URL redacted all the same. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return redactSecrets(u.href);
  } catch {
    return redactSecrets(url);
  }
}
