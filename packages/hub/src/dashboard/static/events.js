// The event browser (query the log by selector, offset and time; open one event with its headers
// and body) and the dead letters with their reasons. Bodies are shown as text, never as markup.
import { api, query } from './api.js';
import { html, useState } from './lib.js';
import { ErrorLine, Field, useAction } from './ui.js';

function bodyText(e) {
  if (e.data !== undefined) return JSON.stringify(e.data, null, 2);
  return e.dataBase64 !== undefined ? `(base64) ${e.dataBase64}` : '';
}

function EventDetail({ event }) {
  return html`<section class="card" data-testid="event-detail">
    <h3>Event ${event.offset}</h3>
    <dl>
      <dt>id</dt><dd><code>${event.id}</code></dd>
      <dt>sender · type</dt><dd>${event.sender} · ${event.type}</dd>
      <dt>time</dt><dd>${event.time}</dd>
      <dt>content type</dt><dd>${event.contentType}</dd>
    </dl>
    <h4>Headers</h4>
    <table><tbody>${Object.entries(event.headers).map(([k, v]) => html`<tr key=${k}><td><code>${k}</code></td><td><code>${v}</code></td></tr>`)}</tbody></table>
    <h4>Body</h4>
    <pre data-testid="event-body">${bodyText(event)}</pre>
  </section>`;
}

export function Events() {
  const [form, setForm] = useState({ selector: '', after: '', since: '', until: '', limit: '50' });
  const [page, setPage] = useState(undefined);
  const [open, setOpen] = useState(undefined);
  const [run, busy, error] = useAction();
  const set = (k) => (v) => setForm({ ...form, [k]: v });
  const search = (after) => run(async () => setPage(await api('GET', `/api/v1/events${query({ ...form, after })}`)));
  const submit = (e) => {
    e.preventDefault();
    search(form.after);
  };
  const show = (offset) => run(async () => setOpen(await api('GET', `/api/v1/events/${encodeURIComponent(offset)}`)));
  return html`<form class="card inline" onSubmit=${submit} data-testid="events-form">
      <h3>Query the log</h3>
      <${Field} label="selector" name="selector" value=${form.selector} onInput=${set('selector')} placeholder="billing:*" />
      <${Field} label="after offset" name="after" value=${form.after} onInput=${set('after')} size="10" />
      <${Field} label="since" name="since" value=${form.since} onInput=${set('since')} placeholder="2026-12-07T10:00:00Z" />
      <${Field} label="until" name="until" value=${form.until} onInput=${set('until')} />
      <${Field} label="limit" name="limit" value=${form.limit} onInput=${set('limit')} size="5" />
      <button type="submit" class="primary" disabled=${busy}>Query</button>
      <${ErrorLine} error=${error} />
    </form>
    ${
      page
        ? html`<section class="card">
            <table data-testid="events">
              <thead><tr><th class="num">offset</th><th>time</th><th>sender</th><th>type</th><th>content type</th></tr></thead>
              <tbody>
                ${page.events.length === 0 ? html`<tr><td colspan="5" class="muted">No events.</td></tr>` : null}
                ${page.events.map(
                  (e) => html`<tr key=${e.offset} class="clickable" data-offset=${e.offset} onClick=${() => show(e.offset)}>
                    <td class="num">${e.offset}</td><td>${e.time}</td><td>${e.sender}</td><td>${e.type}</td><td>${e.contentType}</td>
                  </tr>`,
                )}
              </tbody>
            </table>
            ${page.next ? html`<button onClick=${() => search(page.next)}>Next page</button>` : null}
          </section>`
        : null
    }
    ${open ? html`<${EventDetail} event=${open} />` : null}`;
}

export function DeadLetters({ stats }) {
  const [page, setPage] = useState(undefined);
  const [open, setOpen] = useState(undefined);
  const [selector, setSelector] = useState('');
  const [missing, setMissing] = useState(false);
  const [run, busy, error] = useAction();
  const load = (e) => {
    e?.preventDefault();
    run(async () => {
      try {
        setPage(await api('GET', `/api/v1/dead-letters${query({ selector, limit: 100 })}`));
      } catch (err) {
        // A hub without the dead-letters API answers 404 for the route.
        if (err.status === 404) setMissing(true);
        else throw err;
      }
    });
  };
  if (missing)
    return html`<section class="card"><h2>Dead letters</h2><p>Not available yet on this hub. Counted: ${stats?.totals.dead ?? '–'}.</p></section>`;
  const show = (id) => run(async () => setOpen(await api('GET', `/api/v1/dead-letters/${encodeURIComponent(id)}`)));
  return html`<form class="card inline" onSubmit=${load}>
      <h3>Dead letters</h3>
      <${Field} label="selector" name="selector" value=${selector} onInput=${setSelector} placeholder="billing:*" />
      <button type="submit" class="primary" disabled=${busy}>List</button>
      <span class="muted">${stats ? `${stats.totals.dead} since the hub started` : ''}</span>
      <${ErrorLine} error=${error} />
    </form>
    ${
      page
        ? html`<section class="card"><table data-testid="dead-letters">
            <thead><tr><th>id</th><th>last failure</th><th>source</th><th>attempts</th><th>code</th><th>reason</th><th>routing key</th></tr></thead>
            <tbody>
              ${page.items.length === 0 ? html`<tr><td colspan="7" class="muted">No dead letters.</td></tr>` : null}
              ${page.items.map(
                (d) => html`<tr key=${d.id} class="clickable" onClick=${() => show(d.id)}>
                  <td>${d.id}</td><td title=${`first failure ${d.firstFailedAt}`}>${d.lastFailedAt}</td>
                  <td>${d.source}${d.queue === null ? '' : html` <code>${d.queue}</code>`}</td><td>${d.attempts ?? '–'}</td>
                  <td>${d.code}</td><td>${d.reason}</td><td><code>${d.routingKey}</code></td>
                </tr>`,
              )}
            </tbody>
          </table></section>`
        : null
    }
    ${open ? html`<section class="card"><h3>Dead letter ${open.id}: ${open.code}</h3><p>${open.reason}</p><p class="muted">${open.source}${open.queue === null ? '' : ` on ${open.queue}`}, ${open.attempts ?? 'unknown'} attempt(s), first failed ${open.firstFailedAt}, last ${open.lastFailedAt}</p><pre>${JSON.stringify(open.properties, null, 2)}</pre><pre>${open.bodyText ?? `(base64) ${open.bodyBase64}`}</pre></section>` : null}`;
}
