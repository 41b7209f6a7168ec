// Herald's dashboard: one page served by the hub at `/`, plain ES modules, no build. The shell
// keeps the live stats (the SSE stream), the history for the rate charts and the token prompt; the
// pages are in their own modules. Navigation is by the URL's hash (#/pauses), so the hub serves
// only `/` and `/dashboard/*`.

import { AdminPages } from './admin.js';
import { auth, onAuth, setToken, streamStats } from './api.js';
import { DeadLetters, Events } from './events.js';
import { html, render, useEffect, useState } from './lib.js';
import { Overview, Receivers } from './overview.js';
import { Pauses, Replays } from './pauses.js';
import { Subscriptions } from './subscriptions.js';

/** Points kept for the rate charts: one a second, five minutes. */
const HISTORY = 300;

const PAGES = [
  ['overview', 'Overview'],
  ['receivers', 'Receivers'],
  ['subscriptions', 'Subscriptions'],
  ['pauses', 'Pauses'],
  ['replays', 'Replays'],
  ['exchanges', 'Exchanges'],
  ['users', 'Users'],
  ['events', 'Events'],
  ['dead-letters', 'Dead letters'],
];

function currentPage() {
  const name = location.hash.replace(/^#\/?/, '');
  return PAGES.some(([p]) => p === name) ? name : 'overview';
}

/** The token prompt: shown when an API call answered 401. */
function TokenPrompt({ hadToken }) {
  const [value, setValue] = useState('');
  const submit = (e) => {
    e.preventDefault();
    setToken(value);
  };
  return html`<div class="modal" role="dialog" aria-labelledby="token-title">
    <form class="card" onSubmit=${submit} data-testid="token-form">
      <h2 id="token-title">API token</h2>
      <p>${hadToken ? 'The hub refused this token.' : 'This hub requires authentication.'} Enter an admin token (an API token, or HERALD_ADMIN_TOKEN). It is kept in this tab only.</p>
      <input name="token" type="password" autocomplete="off" value=${value} onInput=${(e) => setValue(e.currentTarget.value)} />
      <button type="submit" class="primary">Use token</button>
    </form>
  </div>`;
}

function App() {
  const [page, setPage] = useState(currentPage());
  const [authState, setAuthState] = useState(auth());
  const [stats, setStats] = useState(undefined);
  const [history, setHistory] = useState({ t: [], in: [], out: [] });
  const [status, setStatus] = useState('connecting');

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => onAuth(setAuthState), []);
  // The stream starts again whenever the token changes.
  useEffect(() => {
    if (authState.needed) return undefined;
    return streamStats((s) => {
      setStats(s);
      setHistory((h) => {
        const keep = (a, v) => [...a.slice(-(HISTORY - 1)), v];
        return { t: keep(h.t, Date.parse(s.at) / 1000), in: keep(h.in, s.totals.rateIn['1s']), out: keep(h.out, s.totals.rateOut['1s']) };
      });
    }, setStatus);
  }, [authState.token, authState.needed]);

  const body = () => {
    switch (page) {
      case 'receivers':
        return html`<${Receivers} stats=${stats} />`;
      case 'subscriptions':
        return html`<${Subscriptions} stats=${stats} />`;
      case 'pauses':
        return html`<${Pauses} />`;
      case 'replays':
        return html`<${Replays} />`;
      case 'exchanges':
      case 'users':
        return html`<${AdminPages} page=${page} />`;
      case 'events':
        return html`<${Events} />`;
      case 'dead-letters':
        return html`<${DeadLetters} stats=${stats} />`;
      default:
        return html`<${Overview} stats=${stats} history=${history} />`;
    }
  };
  const link = ([name, title]) =>
    html`<a href=${`#/${name}`} class=${name === page ? 'current' : ''} data-testid=${`nav-${name}`}>${title}</a>`;
  return html`<header>
      <h1>Herald</h1>
      <nav>${PAGES.map(link)}</nav>
      <span class=${`status ${status}`} data-testid="stream-status" title="the stats stream">${status}</span>
      ${authState.token !== '' ? html`<button class="link" onClick=${() => setToken('')}>forget token</button>` : null}
    </header>
    <main data-page=${page}>${body()}</main>
    ${authState.needed ? html`<${TokenPrompt} hadToken=${authState.token !== ''} />` : null}`;
}

// The placeholder goes first: preact adds to what a container holds rather than replacing it.
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
