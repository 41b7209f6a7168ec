// Pauses (create with selector and ttl, countdown, held count, resume) and replays (create,
// progress, cancel). The API lists pauses; it has no list of replays, so this tab remembers the
// ids of the replays it started (sessionStorage) and follows each.
import { api, duration } from './api.js';
import { html, useState } from './lib.js';
import { ErrorLine, Field, list, useAction, usePoll, useTick } from './ui.js';

export function Pauses() {
  const pauses = usePoll('/api/v1/pauses', 1000);
  const now = useTick(1000);
  const [selector, setSelector] = useState('');
  const [ttl, setTtl] = useState('300');
  const [reason, setReason] = useState('');
  const [run, busy, error] = useAction(() => pauses.reload());
  const submit = (e) => {
    e.preventDefault();
    const body = { selector: list(selector), ttl: Number(ttl) };
    if (reason.trim() !== '') body.reason = reason.trim();
    run(() => api('POST', '/api/v1/pauses', body));
  };
  const items = pauses.data?.items ?? [];
  return html`<form class="card inline" onSubmit=${submit} data-testid="pause-form">
      <h3>Pause a flow</h3>
      <${Field} label="selector" name="selector" value=${selector} onInput=${setSelector} placeholder="billing:*" />
      <${Field} label="ttl (s)" name="ttl" type="number" size="6" value=${ttl} onInput=${setTtl} />
      <${Field} label="reason" name="reason" value=${reason} onInput=${setReason} placeholder="deploying billing" />
      <button type="submit" class="primary" disabled=${busy}>Pause</button>
      <${ErrorLine} error=${error} />
    </form>
    <section class="card">
      <h2>Pauses</h2>
      <${ErrorLine} error=${pauses.error} />
      <table data-testid="pauses">
        <thead><tr><th>selector</th><th>reason</th><th class="num">held</th><th>ends in</th><th></th></tr></thead>
        <tbody>
          ${items.length === 0 ? html`<tr><td colspan="5" class="muted">Nothing is paused.</td></tr>` : null}
          ${items.map(
            (p) => html`<tr key=${p.id} data-pause=${p.selector.join(',')}>
              <td><code>${p.selector.join(', ')}</code></td>
              <td>${p.reason ?? ''}</td>
              <td class="num" data-testid="held">${p.held}</td>
              <td>${p.endedAt ? 'releasing…' : duration((Date.parse(p.expiresAt) - now) / 1000)}</td>
              <td>${p.endedAt ? null : html`<button data-testid="resume" onClick=${() => run(() => api('DELETE', `/api/v1/pauses/${p.id}`))}>Resume</button>`}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      <p class="muted">Held events are stored and released in offset order when the pause ends (resume or expiry).</p>
    </section>`;
}

const REPLAYS_KEY = 'herald.replays';
const known = () => JSON.parse(sessionStorage.getItem(REPLAYS_KEY) ?? '[]');
const remember = (id) => sessionStorage.setItem(REPLAYS_KEY, JSON.stringify([id, ...known().filter((x) => x !== id)].slice(0, 50)));

function ReplayRow({ id }) {
  const r = usePoll(`/api/v1/replays/${encodeURIComponent(id)}`, 1000);
  const [run, , error] = useAction(() => r.reload());
  const v = r.data;
  if (!v) return html`<tr><td colspan="6"><code>${id}</code> <${ErrorLine} error=${r.error} /></td></tr>`;
  const open = v.status === 'pending' || v.status === 'running';
  const target = typeof v.target === 'string' ? v.target : `subscription ${v.target.subscription}`;
  return html`<tr data-replay=${v.id}>
    <td><code>${v.selector.join(', ')}</code></td>
    <td>${target}</td>
    <td><span class=${`badge ${v.status}`} data-testid="replay-status">${v.status}</span> ${v.error ?? ''}</td>
    <td class="num" data-testid="replay-count">${v.count}</td>
    <td>${new Date(v.createdAt).toLocaleTimeString()}</td>
    <td>${open ? html`<button data-testid="cancel" onClick=${() => run(() => api('DELETE', `/api/v1/replays/${v.id}`))}>Cancel</button>` : null}<${ErrorLine} error=${error} /></td>
  </tr>`;
}

export function Replays() {
  const [ids, setIds] = useState(known());
  const [selector, setSelector] = useState('');
  const [fromKind, setFromKind] = useState('last');
  const [from, setFrom] = useState('10');
  const [target, setTarget] = useState('');
  const [run, busy, error] = useAction((r) => {
    remember(r.id);
    setIds(known());
  });
  const submit = (e) => {
    e.preventDefault();
    const value = fromKind === 'last' ? Number(from) : from.trim();
    const body = { selector: list(selector), from: { [fromKind]: value } };
    if (target.trim() !== '') body.target = { subscription: target.trim() };
    run(() => api('POST', '/api/v1/replays', body));
  };
  return html`<form class="card inline" onSubmit=${submit} data-testid="replay-form">
      <h3>Replay</h3>
      <${Field} label="selector" name="selector" value=${selector} onInput=${setSelector} placeholder="billing:invoice.paid" />
      <label class="field"
        >from
        <select name="fromKind" value=${fromKind} onChange=${(e) => setFromKind(e.currentTarget.value)}>
          <option value="last">last N</option>
          <option value="offset">offset</option>
          <option value="time">time (ISO)</option>
        </select></label
      >
      <${Field} label="value" name="from" value=${from} onInput=${setFrom} size="24" />
      <${Field} label="into subscription (empty: the flow)" name="target" value=${target} onInput=${setTarget} />
      <button type="submit" class="primary" disabled=${busy}>Start</button>
      <${ErrorLine} error=${error} />
    </form>
    <section class="card">
      <h2>Replays started here</h2>
      <table data-testid="replays">
        <thead><tr><th>selector</th><th>target</th><th>status</th><th class="num">sent</th><th>created</th><th></th></tr></thead>
        <tbody>
          ${ids.length === 0 ? html`<tr><td colspan="6" class="muted">No replays started from this tab.</td></tr>` : null}
          ${ids.map((id) => html`<${ReplayRow} key=${id} id=${id} />`)}
        </tbody>
      </table>
    </section>`;
}
