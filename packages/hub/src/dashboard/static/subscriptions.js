// Durable subscriptions: state (active, sleeping, standbys), lag in events and seconds from the
// live stats; selector, acknowledged offset and queue from the API; create and delete.
import { api, duration } from './api.js';
import { html, useState } from './lib.js';
import { ConfirmButton, ErrorLine, Field, list, useAction, usePoll } from './ui.js';

/**
 * The consumer each subscription last had, so a subscription that went to sleep while this page
 * watched says which consumer's connection broke (the hub only knows it has none now).
 */
const lastConsumer = new Map();

function stateOf(live) {
  if (!live) return { text: 'unknown', cls: 'muted' };
  if (live.state === 'active') {
    lastConsumer.set(live.name, live.consumer);
    const standby = live.standbys > 0 ? `, ${live.standbys} standby` : '';
    return { text: `active${standby}`, cls: 'ok', detail: live.consumer ?? '' };
  }
  const gone = lastConsumer.get(live.name);
  return {
    text: 'sleeping',
    cls: 'sleeping',
    detail: gone ? `consumer ${gone} disconnected` : live.standbys > 0 ? `${live.standbys} standby` : 'no consumer',
  };
}

function CreateForm({ onDone }) {
  const [name, setName] = useState('');
  const [selector, setSelector] = useState('');
  const [start, setStart] = useState('new');
  const [run, busy, error] = useAction(onDone);
  const submit = (e) => {
    e.preventDefault();
    run(() => api('POST', '/api/v1/subscriptions', { name: name.trim(), selector: list(selector), start }));
  };
  return html`<form class="card inline" onSubmit=${submit} data-testid="subscription-form">
    <h3>New subscription</h3>
    <${Field} label="name" name="name" value=${name} onInput=${setName} placeholder="invoice-mailer" />
    <${Field} label="selector" name="selector" value=${selector} onInput=${setSelector} placeholder="billing:invoice.*" />
    <label class="field"
      >start
      <select name="start" value=${start} onChange=${(e) => setStart(e.currentTarget.value)}>
        <option value="new">new</option>
        <option value="earliest">earliest</option>
      </select></label
    >
    <button type="submit" class="primary" disabled=${busy}>Create</button>
    <${ErrorLine} error=${error} />
  </form>`;
}

export function Subscriptions({ stats }) {
  const subs = usePoll('/api/v1/subscriptions', 3000);
  const [run, , actionError] = useAction(() => subs.reload());
  const live = new Map((stats?.subscriptions ?? []).map((s) => [s.name, s]));
  const items = subs.data?.items ?? [];
  return html`<${CreateForm} onDone=${() => subs.reload()} />
    <section class="card">
      <h2>Subscriptions</h2>
      <${ErrorLine} error=${subs.error ?? actionError} />
      <table data-testid="subscriptions">
        <thead>
          <tr><th>name</th><th>selector</th><th>state</th><th class="num">lag (events)</th><th class="num">lag</th><th class="num">acked offset</th><th class="num">delivered</th><th></th></tr>
        </thead>
        <tbody>
          ${items.length === 0 ? html`<tr><td colspan="8" class="muted">No subscriptions.</td></tr>` : null}
          ${items.map((s) => {
            const l = live.get(s.name);
            const st = stateOf(l);
            return html`<tr key=${s.name} data-subscription=${s.name}>
              <td>${s.name}</td>
              <td><code>${s.selector.join(', ')}</code></td>
              <td>
                <span class=${`badge ${st.cls}`} data-testid="state">${st.text}</span>
                <div class="muted small">${st.detail}</div>
              </td>
              <td class="num">${l?.lagEvents ?? s.lagEvents}</td>
              <td class="num">${duration(l?.lagSeconds ?? s.lagSeconds)}</td>
              <td class="num">${s.ackedOffset}</td>
              <td class="num">${l?.delivered ?? '–'}</td>
              <td>
                <${ConfirmButton}
                  label="Delete"
                  testid="delete"
                  onConfirm=${() => run(() => api('DELETE', `/api/v1/subscriptions/${encodeURIComponent(s.name)}`))}
                />
              </td>
            </tr>`;
          })}
        </tbody>
      </table>
      <p class="muted">State and lag live from the stats stream; a consumer whose connection broke leaves its subscription sleeping until it comes back.</p>
    </section>`;
}
