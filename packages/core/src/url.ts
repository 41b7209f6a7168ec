/** A URL with its password replaced by `***`, for logs and error lines; text that is not a URL as is. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.href;
  } catch {
    return url;
  }
}
