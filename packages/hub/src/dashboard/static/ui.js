// Small parts every page uses: polling an API route, a two-step button for what cannot be undone,
// an error line, a field.
import { api } from './api.js';
import { html, useCallback, useEffect, useRef, useState } from './lib.js';

/**
 * GETs `path` now and every `everyMs` while mounted: `{ data, error, reload }`. `error` is the
 * last failure's message (the data of the last success stays). `path` null means nothing to get.
 */
export function usePoll(path, everyMs = 2000) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  const seq = useRef(0);
  const load = useCallback(async () => {
    if (path === null) return;
    const mine = ++seq.current;
    try {
      const data = await api('GET', path);
      if (mine === seq.current) setState({ data, error: undefined });
    } catch (err) {
      if (mine === seq.current) setState((s) => ({ data: s.data, error: err }));
    }
  }, [path]);
  useEffect(() => {
    load();
    if (everyMs <= 0) return undefined;
    const timer = setInterval(load, everyMs);
    return () => clearInterval(timer);
  }, [load, everyMs]);
  return { ...state, reload: load };
}

/** Re-renders every `ms`, for countdowns and "x s ago". */
export function useTick(ms = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** A button that asks once more ("sure?") before `onConfirm`: no browser dialog to dismiss. */
export function ConfirmButton({ label, onConfirm, testid }) {
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    if (!armed) return undefined;
    const timer = setTimeout(() => setArmed(false), 4000);
    return () => clearTimeout(timer);
  }, [armed]);
  const click = () => {
    if (armed) {
      setArmed(false);
      onConfirm();
    } else setArmed(true);
  };
  return html`<button class=${armed ? 'danger armed' : 'danger'} data-testid=${testid} onClick=${click}>
    ${armed ? `${label}: sure?` : label}
  </button>`;
}

/** The message of an error, or nothing. */
export function ErrorLine({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message ?? String(error)}</p>`;
}

/** A labelled input bound to `value`. */
export function Field({ label, value, onInput, placeholder, name, type = 'text', size }) {
  return html`<label class="field"
    >${label}
    <input
      name=${name}
      type=${type}
      size=${size}
      value=${value}
      placeholder=${placeholder}
      onInput=${(e) => onInput(e.currentTarget.value)}
  /></label>`;
}

/**
 * Runs an API action for a form: `[run, busy, error]`. `run(fn)` awaits fn, keeps its error for
 * the form to show, and calls `after` once it succeeded.
 */
export function useAction(after) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(undefined);
  const run = async (fn) => {
    setBusy(true);
    setError(undefined);
    try {
      const out = await fn();
      after?.(out);
      return out;
    } catch (err) {
      setError(err);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return [run, busy, error];
}

/** A comma-separated list as an array of trimmed, non-empty items. */
export function list(text) {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}
