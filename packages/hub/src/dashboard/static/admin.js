// Exchanges (create, delete) and users with their tokens (add, remove; create, revoke). Admins only.
import { api } from './api.js';
import { html, useState } from './lib.js';
import { ConfirmButton, ErrorLine, Field, list, useAction, usePoll } from './ui.js';

function Exchanges() {
  const ex = usePoll('/api/v1/exchanges', 5000);
  const [name, setName] = useState('');
  const [selector, setSelector] = useState('');
  const [run, busy, error] = useAction(() => ex.reload());
  const submit = (e) => {
    e.preventDefault();
    run(() => api('POST', '/api/v1/exchanges', { name: name.trim(), selector: list(selector) }));
  };
  const items = ex.data?.items ?? [];
  return html`<form class="card inline" onSubmit=${submit} data-testid="exchange-form">
      <h3>New exchange</h3>
      <${Field} label="name" name="name" value=${name} onInput=${setName} placeholder="crm.feed" />
      <${Field} label="selector" name="selector" value=${selector} onInput=${setSelector} placeholder="billing:invoice.*" />
      <button type="submit" class="primary" disabled=${busy}>Create</button>
      <${ErrorLine} error=${error} />
    </form>
    <section class="card">
      <h2>Exchanges</h2>
      <p class="muted">Topic exchanges bound to herald.events by a selector: bind your own queues to them with any AMQP client.</p>
      <${ErrorLine} error=${ex.error} />
      <table data-testid="exchanges">
        <thead><tr><th>name</th><th>selector</th><th>binding keys</th><th>created</th><th></th></tr></thead>
        <tbody>
          ${items.length === 0 ? html`<tr><td colspan="5" class="muted">No exchanges.</td></tr>` : null}
          ${items.map(
            (x) => html`<tr key=${x.name} data-exchange=${x.name}>
              <td>${x.name}</td>
              <td><code>${x.selector.join(', ')}</code></td>
              <td><code>${x.bindingKeys.join(' ')}</code></td>
              <td>${new Date(x.createdAt).toLocaleString()}</td>
              <td><${ConfirmButton} label="Delete" testid="delete" onConfirm=${() => run(() => api('DELETE', `/api/v1/exchanges/${encodeURIComponent(x.name)}`))} /></td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>`;
}

function roleText(r) {
  if (r.role === 'publisher') return `publisher of ${r.senders.join(', ')}`;
  if (r.role === 'subscriber') return `subscriber of ${r.selector.join(', ')}`;
  return r.role;
}

function Tokens({ user }) {
  const path = `/api/v1/users/${encodeURIComponent(user)}/tokens`;
  const tokens = usePoll(path, 0);
  const [name, setName] = useState('');
  const [secret, setSecret] = useState(undefined);
  const [run, busy, error] = useAction(() => tokens.reload());
  const create = (e) => {
    e.preventDefault();
    run(async () => setSecret((await api('POST', path, { name: name.trim() })).token));
  };
  return html`<section class="card">
    <h3>Tokens of ${user}</h3>
    ${secret ? html`<p class="secret">New token (shown once): <code data-testid="token-secret">${secret}</code></p>` : null}
    <form class="inline" onSubmit=${create}>
      <${Field} label="token name" name="tokenName" value=${name} onInput=${setName} placeholder="ci" />
      <button type="submit" class="primary" disabled=${busy}>Create token</button>
    </form>
    <${ErrorLine} error=${error ?? tokens.error} />
    <table data-testid="tokens">
      <thead><tr><th>name</th><th>created</th><th>last used</th><th></th></tr></thead>
      <tbody>
        ${(tokens.data?.items ?? []).map(
          (t) => html`<tr key=${t.id}>
            <td>${t.name}</td>
            <td>${new Date(t.createdAt).toLocaleString()}</td>
            <td>${t.lastUsedAt ? new Date(t.lastUsedAt).toLocaleString() : 'never'}</td>
            <td><${ConfirmButton} label="Revoke" testid="revoke" onConfirm=${() => run(() => api('DELETE', `${path}/${t.id}`))} /></td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

function Users() {
  const users = usePoll('/api/v1/users', 5000);
  const [selected, setSelected] = useState(undefined);
  const [name, setName] = useState('');
  const [admin, setAdmin] = useState(false);
  const [senders, setSenders] = useState('');
  const [selector, setSelector] = useState('');
  const [run, busy, error] = useAction(() => users.reload());
  const submit = (e) => {
    e.preventDefault();
    const roles = [];
    if (admin) roles.push({ role: 'admin' });
    if (list(senders).length > 0) roles.push({ role: 'publisher', senders: list(senders) });
    if (list(selector).length > 0) roles.push({ role: 'subscriber', selector: list(selector) });
    run(() => api('POST', '/api/v1/users', { name: name.trim(), roles }));
  };
  const items = users.data?.items ?? [];
  return html`<form class="card inline" onSubmit=${submit} data-testid="user-form">
      <h3>New user</h3>
      <${Field} label="name" name="name" value=${name} onInput=${setName} placeholder="billing-svc" />
      <label class="field check"><input type="checkbox" name="admin" checked=${admin} onChange=${(e) => setAdmin(e.currentTarget.checked)} /> admin</label>
      <${Field} label="publisher of senders" name="senders" value=${senders} onInput=${setSenders} placeholder="billing" />
      <${Field} label="subscriber of selector" name="subscriber" value=${selector} onInput=${setSelector} placeholder="billing:*" />
      <button type="submit" class="primary" disabled=${busy}>Add</button>
      <${ErrorLine} error=${error} />
    </form>
    <section class="card">
      <h2>Users</h2>
      <${ErrorLine} error=${users.error} />
      <table data-testid="users">
        <thead><tr><th>name</th><th>roles</th><th>RabbitMQ user</th><th></th></tr></thead>
        <tbody>
          ${items.length === 0 ? html`<tr><td colspan="4" class="muted">No users.</td></tr>` : null}
          ${items.map(
            (u) => html`<tr key=${u.name} data-user=${u.name}>
              <td>${u.name}</td>
              <td>${u.roles.map(roleText).join('; ')}</td>
              <td>${u.amqpUsername ?? ''}</td>
              <td>
                <button onClick=${() => setSelected(u.name)}>Tokens</button>
                <${ConfirmButton} label="Remove" testid="remove" onConfirm=${() => run(() => api('DELETE', `/api/v1/users/${encodeURIComponent(u.name)}`))} />
              </td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
    ${selected ? html`<${Tokens} key=${selected} user=${selected} />` : null}`;
}

export function AdminPages({ page }) {
  return page === 'exchanges' ? html`<${Exchanges} />` : html`<${Users} />`;
}
