// The landing page: live rate charts (uPlot) and the flows table; and the receivers with how full
// their queues are. Both read the stats snapshot the shell gets once a second.
import { ago, rate, selectorMatches } from './api.js';
import { html, useEffect, useRef } from './lib.js';
import { usePoll, useTick } from './ui.js';
import uPlot from './vendor/uplot.mjs';

/** A live line chart of one series (events per second against time). */
function RateChart({ title, t, values, color, testid }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    const opts = {
      width: Math.max(200, el.clientWidth),
      height: 180,
      legend: { show: false },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ stroke: '#8a94a6' }, { stroke: '#8a94a6', size: 50 }],
      series: [{}, { label: title, stroke: color, width: 2, fill: `${color}22` }],
    };
    plot.current = new uPlot(opts, [[], []], el);
    const resize = () => plot.current?.setSize({ width: Math.max(200, el.clientWidth), height: 180 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [title, color]);
  useEffect(() => {
    plot.current?.setData([t, values]);
  }, [t, values]);
  const last = values.length > 0 ? values[values.length - 1] : undefined;
  return html`<section class="card chart">
    <h3>${title} <span class="big" data-testid=${testid}>${rate(last)}</span> <small>events/s</small></h3>
    <div ref=${box} class="plot"></div>
  </section>`;
}

/** The selectors of the pauses that hold now; [] when they cannot be read (a non-admin token, archive mode). */
function usePausedPatterns() {
  const { data } = usePoll('/api/v1/pauses', 2000);
  return (data?.items ?? []).filter((p) => p.endedAt === null).map((p) => p.selector);
}

export function Overview({ stats, history }) {
  const now = useTick(1000);
  const paused = usePausedPatterns();
  if (!stats) return html`<p class="muted">Waiting for the stats stream…</p>`;
  const t = stats.totals;
  const flows = [...stats.flows].sort((a, b) => a.sender.localeCompare(b.sender) || a.type.localeCompare(b.type));
  return html`<div class="summary">
      <div class="card stat"><span>events in</span><b data-testid="total-in">${t.in}</b></div>
      <div class="card stat"><span>events out</span><b data-testid="total-out">${t.out}</b></div>
      <div class="card stat"><span>dead letters</span><b>${t.dead}</b></div>
      <div class="card stat"><span>log head</span><b>${stats.headOffset ?? '–'}</b></div>
      <div class="card stat"><span>pauses · held</span><b data-testid="held-total">${stats.pauses.active} · ${stats.pauses.held}</b></div>
      <div class="card stat"><span>replays</span><b>${stats.replays.active}</b></div>
      <div class="card stat"><span>RabbitMQ · store</span><b>${stats.amqpConnected ? 'up' : 'DOWN'} · ${stats.storeConnected ? 'up' : 'DOWN'}</b></div>
    </div>
    <div class="charts">
      <${RateChart} title="In" t=${history.t} values=${history.in} color="#2f7de1" testid="rate-in" />
      <${RateChart} title="Out" t=${history.t} values=${history.out} color="#20a464" testid="rate-out" />
    </div>
    <section class="card">
      <h2>Flows</h2>
      <table data-testid="flows">
        <thead>
          <tr><th>sender</th><th>type</th><th class="num">in/s</th><th class="num">out/s</th><th class="num">in</th><th class="num">out</th><th>last seen</th><th>state</th></tr>
        </thead>
        <tbody>
          ${flows.length === 0 ? html`<tr><td colspan="8" class="muted">No events since the hub started.</td></tr>` : null}
          ${flows.map((f) => {
            const isPaused = paused.some((sel) => selectorMatches(sel, f.sender, f.type));
            return html`<tr key=${`${f.sender}:${f.type}`} data-flow=${`${f.sender}:${f.type}`}>
              <td>${f.sender}</td>
              <td>${f.type}</td>
              <td class="num">${rate(f.rateIn['10s'])}</td>
              <td class="num">${rate(f.rateOut['10s'])}</td>
              <td class="num">${f.in}</td>
              <td class="num">${f.out}</td>
              <td>${ago(f.lastSeen, now)}</td>
              <td>${isPaused ? html`<span class="badge paused">paused</span>` : html`<span class="badge ok">flowing</span>`}</td>
            </tr>`;
          })}
        </tbody>
      </table>
      <p class="muted">Rates over the last 10 seconds; counts since the hub started.</p>
    </section>`;
}

export function Receivers({ stats }) {
  if (!stats) return html`<p class="muted">Waiting for the stats stream…</p>`;
  return html`<section class="card">
    <h2>Receivers</h2>
    <p class="muted">The hub's in-memory receivers (one per selector of the durable subscriptions): live events buffered by the fullest consumer against the bound; beyond it the consumer reads the log.</p>
    <table data-testid="receivers">
      <thead><tr><th>queue</th><th class="num">messages</th><th class="num">limit</th><th>fill</th></tr></thead>
      <tbody>
        ${stats.receivers.length === 0 ? html`<tr><td colspan="4" class="muted">No receivers.</td></tr>` : null}
        ${stats.receivers.map((r) => {
          const pct = Math.min(100, Math.max(0, r.fill));
          return html`<tr key=${r.queue}>
            <td><code>${r.queue}</code></td>
            <td class="num">${r.messages}</td>
            <td class="num">${r.limit}</td>
            <td class="fill">
              <progress max="100" value=${pct} class=${pct >= 80 ? 'high' : ''}></progress>
              <span>${pct.toFixed(1)} %</span>
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}
