/** One problem the AsyncAPI parser reported, severity 0 being an error (1 warning, 2 information, 3 hint). */
export interface AsyncApiDiagnostic {
  readonly severity: number;
  readonly code: string | number;
  readonly message: string;
  readonly path: string;
}

/**
 * Validates an AsyncAPI document with @asyncapi/parser; resolves with every diagnostic it reported.
 * The parser is imported here, on first use: it takes seconds to load, and most tests never need it.
 */
export async function asyncApiDiagnostics(doc: unknown): Promise<AsyncApiDiagnostic[]> {
  const { Parser } = await import('@asyncapi/parser');
  const diagnostics = await new Parser().validate(typeof doc === 'string' ? doc : JSON.stringify(doc));
  return diagnostics.map((d) => ({ severity: Number(d.severity), code: d.code, message: d.message, path: d.path.join('.') }));
}
