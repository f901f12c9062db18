// hookrelay console: recent events, one event with its deliveries, sinks and their health,
// dead letters and replays, over the admin JSON API (described at /api/openapi.json).
//
// Invariants:
// - API data reaches the DOM only as text (text nodes, textContent) or as attributes this
//   file names: webhook payloads, headers and even sink errors are hostile.
// - The token lives in this tab's sessionStorage and travels only in the Authorization
//   header of same-origin API calls: never in a URL, a cookie or a log.
// - Nothing is fetched but /api/... on this origin.
'use strict';

(() => {
  const TOKEN_KEY = 'hookrelay.admin-token';
  const PAGE = 50;
  const MAX_PAGE = 500;
  const REFRESH_MS = 3000;
  // Most API pages one filtered list asks for at a time (each looks at up to 10,000 events).
  const SCAN_PAGES = 5;
  const STATUS = {
    dead: ['dead-lettered', 'bad'],
    pending: ['pending', 'warn'],
    delivered: ['delivered', 'ok'],
    unrouted: ['unrouted', ''],
  };
  const SINK_STATE = { healthy: 'ok', failing: 'bad', paused: 'warn', disabled: '' };
  const DELIVERY_STATE = { delivered: 'ok', queued: 'warn', dead: 'bad' };
  const OUTCOME = { delivered: 'ok', retrying: 'warn', dead_lettered: 'bad', skipped: '' };

  const byId = (id) => document.getElementById(id);
  const view = byId('view');
  const notice = byId('notice');
  const login = byId('login');

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let current = null; // the mounted view: { refresh() }
  let generation = 0; // bumped on each mount, so a late answer for an old view is dropped
  let timer = null;
  let inFlight = false;
  let again = false;

  class Unauthorized extends Error {}

  // ---- DOM, text only ----

  // createElement with attributes and children; strings become text nodes, never markup.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') el.className = value;
      else if (name === 'data') Object.assign(el.dataset, value);
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function badge(text, tone) {
    return h('span', { class: tone ? `badge ${tone}` : 'badge' }, text);
  }

  function table(headings, rows, className) {
    return h('table', { class: className },
      h('thead', null, h('tr', null, headings.map((t) => h('th', null, t)))),
      h('tbody', null, rows));
  }

  // A hash link inside the console; parts are URI-encoded, so data cannot leave the hash.
  function link(text, ...parts) {
    return h('a', { href: route(...parts) }, text);
  }

  function route(...parts) {
    return '#/' + parts.map(encodeURIComponent).join('/');
  }

  // "2024-05-01T12:00:00.123Z" as "2024-05-01 12:00:00Z" (UTC, like the logs).
  function when(stamp) {
    if (!stamp) return '';
    return h('time', { datetime: stamp, title: stamp },
      String(stamp).replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
  }

  function size(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : '';
  }

  function say(text, isError) {
    notice.textContent = text;
    notice.className = isError ? 'error' : '';
    notice.hidden = false;
  }

  // ---- API ----

  async function api(method, path) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, {
      method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error',
    });
    if (response.status === 401) throw new Unauthorized();
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.error) || `${method} ${path.split('?')[0]}: HTTP ${response.status}`);
    }
    return body;
  }

  // Runs an action (a replay, a test) from a button, then refreshes the view.
  async function act(button, method, path, describe) {
    button.disabled = true;
    try {
      const answer = await api(method, path);
      say(describe(answer), false);
      await refresh();
    } catch (err) {
      failed(err);
    } finally {
      button.disabled = false;
    }
  }

  function failed(err) {
    if (err instanceof Unauthorized) {
      askToken(token ? 'The token was refused: enter the current one.' : '');
    } else {
      say(err.message || String(err), true);
    }
  }

  // ---- token ----

  function askToken(message) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    byId('forget').hidden = true;
    view.hidden = true;
    notice.hidden = true;
    login.hidden = false;
    const error = byId('login-error');
    error.textContent = message;
    error.hidden = !message;
    byId('token').value = '';
    byId('token').focus();
  }

  login.addEventListener('submit', (event) => {
    event.preventDefault();
    token = byId('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    login.hidden = true;
    view.hidden = false;
    byId('forget').hidden = false;
    mount();
  });

  byId('forget').addEventListener('click', () => askToken(''));

  // ---- views ----

  function eventRow(e) {
    const [label, tone] = STATUS[e.status] || [e.status, ''];
    const open = () => { location.hash = route('events', e.id); };
    return h('tr', { class: 'link', data: { id: e.id, status: e.status }, onclick: open },
      h('td', null, when(e.received_at)),
      h('td', null, e.source),
      h('td', { class: 'wrap' }, link(e.event_type || '(none)', 'events', e.id)),
      h('td', { class: 'status' }, badge(label, tone)),
      h('td', { class: 'num' }, size(e.size)),
      h('td', { class: 'mono' }, e.id));
  }

  function eventsView(params) {
    const filters = {
      source: params.get('source') || '',
      event_type: params.get('event_type') || '',
      status: params.get('status') || '',
    };
    const field = (label, input) => h('label', null, label, input);
    const source = h('input', { name: 'source', value: filters.source, placeholder: 'any' });
    const type = h('input', { name: 'event_type', value: filters.event_type, placeholder: 'any' });
    const status = h('select', { name: 'status' },
      h('option', { value: '' }, 'any'),
      Object.entries(STATUS).map(([value, [label]]) =>
        h('option', { value, selected: value === filters.status }, label)));
    const form = h('form', {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        location.hash = `#/events${query({ source: source.value.trim(), event_type: type.value.trim(), status: status.value })}`;
      },
    },
    field('Source', source), field('Event type', type), field('Status', status),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
    link('Clear', 'events'));

    const body = h('tbody', { id: 'events' });
    const empty = h('p', { class: 'empty', hidden: true }, 'No event matches.');
    const older = h('button', { type: 'button', id: 'older', class: 'more', hidden: true }, 'Older events');
    let rows = [];
    let next = null;
    let last = '';

    // The API looks at a bounded number of events per page, so a filtered page can come back
    // short, even empty, with more to look at: ask on, a few pages at most, until it is full.
    const matching = async (before, want) => {
      let events = [];
      let cursor = before;
      for (let pages = 0; pages < SCAN_PAGES; pages++) {
        const page = await api('GET', `/api/events${query({ ...filters, before: cursor, limit: want - events.length })}`);
        events = events.concat(page.events);
        cursor = page.next;
        if (!cursor || events.length >= want) break;
      }
      return { events, next: cursor };
    };
    const draw = () => {
      body.replaceChildren(...rows.map(eventRow));
      empty.hidden = rows.length > 0;
      empty.textContent = next
        ? 'No match among the newest events looked at; Older events looks further.'
        : 'No event matches.';
      older.hidden = !next;
    };
    older.addEventListener('click', async () => {
      older.disabled = true;
      try {
        const page = await matching(next, PAGE);
        rows = rows.concat(page.events);
        next = page.next;
        draw();
      } catch (err) { failed(err); } finally { older.disabled = false; }
    });

    const node = h('section', null, h('h1', null, 'Recent events'), form,
      h('table', null, h('thead', null, h('tr', null,
        ['Received', 'Source', 'Event type', 'Status', 'Size', 'Id'].map((t) => h('th', null, t)))), body),
      empty, older);
    return {
      node,
      // The newest events again, as many as are shown, so paging back survives a refresh.
      async refresh() {
        const limit = Math.min(MAX_PAGE, Math.max(PAGE, rows.length));
        const page = await matching(null, limit);
        const text = JSON.stringify(page);
        if (text === last) return;
        last = text;
        rows = page.events;
        next = page.next;
        draw();
      },
    };
  }

  function prettyBody(event) {
    if (event.body_encoding !== 'utf-8') return event.body;
    try { return JSON.stringify(JSON.parse(event.body), null, 2); } catch (_) { return event.body; }
  }

  function eventView(id) {
    const node = h('section', { id: 'event' });
    let last = '';
    const path = `/api/events/${encodeURIComponent(id)}`;

    const replayed = (answer) => {
      const queued = answer.sinks.filter((s) => s.result === 'queued').map((s) => s.sink);
      const waiting = answer.sinks.filter((s) => s.result === 'already_queued').map((s) => s.sink);
      if (!answer.sinks.length) return 'No enabled sink to replay this event to.';
      return [queued.length ? `Replay queued for ${queued.join(', ')}.` : '',
        waiting.length ? `Already queued for ${waiting.join(', ')}.` : ''].join(' ').trim();
    };

    const draw = (e) => {
      const replayAll = h('button', { type: 'button', id: 'replay-event', class: 'primary' }, 'Replay to all its sinks');
      replayAll.addEventListener('click', () => act(replayAll, 'POST', `${path}/replay`, replayed));
      const deliveries = e.deliveries.map((d) => {
        let detail = '';
        if (d.state === 'queued') detail = ['due ', when(d.due_at)];
        if (d.state === 'dead') detail = [d.dead_at ? when(d.dead_at) : '', d.reason ? ` · ${d.reason}` : ''];
        const replay = d.state === 'queued' ? '' : h('button', { type: 'button', class: 'replay' }, 'Replay');
        if (replay) {
          replay.addEventListener('click', () =>
            act(replay, 'POST', `${path}/replay${query({ sink: d.sink })}`, replayed));
        }
        return h('tr', { data: { sink: d.sink, state: d.state } },
          h('td', null, link(d.sink, 'dead-letters', d.sink)),
          h('td', { class: 'state' }, badge(d.state, DELIVERY_STATE[d.state])),
          h('td', { class: 'wrap' }, detail),
          h('td', null, replay));
      });
      const attempts = e.attempts.map((a) => h('tr', { data: { sink: a.sink, outcome: a.outcome } },
        h('td', { class: 'num' }, a.number),
        h('td', null, a.sink, a.replay ? ' ' : '', a.replay ? badge('replay', '') : ''),
        h('td', null, when(a.started_at)),
        h('td', { class: 'num' }, `${a.duration_ms} ms`),
        h('td', { class: 'num' }, a.status === null ? '' : a.status),
        h('td', null, badge(a.outcome.replace('_', ' '), OUTCOME[a.outcome])),
        h('td', { class: 'mono wrap' }, a.message_id || ''),
        h('td', { class: 'wrap' }, a.error || '')));
      node.replaceChildren(
        h('p', null, link('← Events', 'events')),
        h('h1', null, e.event_type || '(no event type)'),
        h('div', { class: 'sub' },
          h('span', null, 'source ', h('strong', null, e.source)),
          h('span', null, 'received ', when(e.received_at)),
          h('span', { class: 'mono' }, e.id),
          e.delivery_id ? h('span', null, 'delivery ', h('span', { class: 'mono' }, e.delivery_id)) : '',
          e.content_type ? h('span', null, e.content_type) : ''),
        h('div', { class: 'actions' }, e.deliveries.length ? replayAll : h('span', { class: 'muted' }, 'No route sends this event to a sink.')),
        h('h2', null, 'Deliveries'),
        e.deliveries.length ? table(['Sink', 'State', 'Detail', ''], deliveries) : h('p', { class: 'empty' }, 'None.'),
        h('h2', null, 'Attempts'),
        e.attempts.length
          ? table(['#', 'Sink', 'Started', 'Took', 'HTTP', 'Outcome', 'Message id', 'Error'], attempts)
          : h('p', { class: 'empty' }, 'No attempt yet.'),
        h('h2', null, 'Headers'),
        table(['Name', 'Value'], e.headers.map((x) =>
          h('tr', null, h('td', { class: 'mono' }, x.name), h('td', { class: 'mono wrap' }, x.value))), 'pairs'),
        h('h2', null, 'Body', e.body_encoding === 'base64' ? h('span', { class: 'muted' }, ' (binary, shown as base64)') : ''),
        h('pre', { class: 'body', id: 'event-body' }, prettyBody(e)));
    };

    let settled = false;
    return {
      node,
      // Every delivery has ended: the event changes only on a replay, and may be large, so
      // auto-refresh stops fetching it (a replay from here, or Refresh, fetches it again).
      settled: () => settled,
      async refresh() {
        const e = await api('GET', path);
        settled = e.deliveries.every((d) => d.state !== 'queued');
        const text = JSON.stringify(e);
        // Redrawing an unchanged event would drop the operator's text selection.
        if (text === last) return;
        last = text;
        draw(e);
      },
    };
  }

  function sinksView() {
    const body = h('tbody', { id: 'sinks' });
    let last = '';
    const tested = (sink) => (t) => `Test message to ${sink}: ${t.outcome.replace('_', ' ')}`
      + (t.status ? ` (HTTP ${t.status})` : '') + (t.error ? `: ${t.error}` : '') + ` in ${t.duration_ms} ms.`;
    const row = (s) => {
      const test = h('button', { type: 'button' }, 'Send test');
      test.addEventListener('click', () =>
        act(test, 'POST', `/api/sinks/${encodeURIComponent(s.name)}/test`, tested(s.name)));
      let state = badge(s.state, SINK_STATE[s.state]);
      if (s.state === 'failing') {
        state = [state, h('div', { class: 'muted' }, 'since ', when(s.failing_since),
          ` · ${s.consecutive_failures} failed in a row`)];
      }
      if (s.held_until) {
        state = [state, h('div', { class: 'muted' }, 'held until ', when(s.held_until))];
      }
      return h('tr', { data: { sink: s.name, state: s.state } },
        h('td', null, h('strong', null, s.name), h('div', { class: 'muted' }, s.kind)),
        h('td', null, state),
        h('td', { class: 'num' }, s.queue_depth,
          s.oldest_queued_at ? h('div', { class: 'muted' }, 'oldest ', when(s.oldest_queued_at)) : ''),
        h('td', { class: 'num' }, s.dead_letters ? link(String(s.dead_letters), 'dead-letters', s.name) : '0'),
        h('td', { class: 'wrap' }, s.last_error || '', s.last_error_at ? h('div', { class: 'muted' }, when(s.last_error_at)) : ''),
        h('td', null, when(s.last_delivered_at)),
        h('td', null, test));
    };
    return {
      node: h('section', null, h('h1', null, 'Sinks'),
        h('table', null, h('thead', null, h('tr', null,
          ['Sink', 'State', 'Queued', 'Dead letters', 'Last error', 'Last delivered', ''].map((t) => h('th', null, t)))), body)),
      async refresh() {
        const answer = await api('GET', '/api/sinks');
        const text = JSON.stringify(answer);
        if (text === last) return;
        last = text;
        body.replaceChildren(...answer.sinks.map(row));
      },
    };
  }

  function deadLettersView(chosen) {
    let sink = chosen || '';
    let rows = [];
    let next = null;
    let last = '';
    const picker = h('select', { id: 'dead-sink', 'aria-label': 'Sink' });
    picker.addEventListener('change', () => { location.hash = route('dead-letters', picker.value); });
    const replayAll = h('button', { type: 'button', id: 'replay-sink', class: 'primary' }, "Replay this sink's dead letters");
    replayAll.addEventListener('click', () => act(replayAll, 'POST',
      `/api/sinks/${encodeURIComponent(sink)}/dead-letters/replay`,
      (a) => `${a.replayed} dead letter${a.replayed === 1 ? '' : 's'} of ${a.sink} queued again.`));
    const body = h('tbody', { id: 'dead-letters' });
    const empty = h('p', { class: 'empty', hidden: true }, 'No dead letters.');
    const older = h('button', { type: 'button', class: 'more', hidden: true }, 'Older dead letters');

    const row = (d) => {
      const replay = h('button', { type: 'button', class: 'replay' }, 'Replay');
      replay.addEventListener('click', () => act(replay, 'POST',
        `/api/events/${encodeURIComponent(d.event_id)}/replay${query({ sink })}`,
        () => `Replay of ${d.event_id} queued for ${sink}.`));
      return h('tr', { data: { eventId: d.event_id } },
        h('td', null, when(d.dead_at)),
        h('td', { class: 'mono' }, link(d.event_id, 'events', d.event_id)),
        h('td', { class: 'num' }, d.attempts),
        h('td', { class: 'wrap' }, d.reason),
        h('td', null, replay));
    };
    const draw = () => {
      body.replaceChildren(...rows.map(row));
      empty.hidden = rows.length > 0;
      older.hidden = !next;
      replayAll.disabled = rows.length === 0;
    };
    const page = (before, limit) => api('GET',
      `/api/sinks/${encodeURIComponent(sink)}/dead-letters${query({ before, limit })}`);
    older.addEventListener('click', async () => {
      older.disabled = true;
      try {
        const answer = await page(next, PAGE);
        rows = rows.concat(answer.dead_letters);
        next = answer.next;
        draw();
      } catch (err) { failed(err); } finally { older.disabled = false; }
    });

    return {
      node: h('section', null, h('h1', null, 'Dead letters'),
        h('div', { class: 'actions' }, picker, replayAll),
        h('table', null, h('thead', null, h('tr', null,
          ['Dead since', 'Event', 'Attempts', 'Reason', ''].map((t) => h('th', null, t)))), body),
        empty, older),
      async refresh() {
        const sinks = (await api('GET', '/api/sinks')).sinks;
        if (!sink) {
          // No sink named: the first one holding dead letters, else the first one.
          sink = (sinks.find((s) => s.dead_letters > 0) || sinks[0] || { name: '' }).name;
        }
        picker.replaceChildren(...sinks.map((s) =>
          h('option', { value: s.name, selected: s.name === sink }, `${s.name} (${s.dead_letters})`)));
        if (!sink) { rows = []; next = null; draw(); return; }
        const answer = await page(null, Math.min(MAX_PAGE, Math.max(PAGE, rows.length)));
        const text = JSON.stringify(answer);
        if (text === last) return;
        last = text;
        rows = answer.dead_letters;
        next = answer.next;
        draw();
      },
    };
  }

  // ---- routing and refresh ----

  // "#/events?status=dead", "#/events/ID", "#/sinks", "#/dead-letters/SINK".
  function parse() {
    const [path, search] = location.hash.replace(/^#\/?/, '').split('?');
    const decode = (part) => { try { return decodeURIComponent(part); } catch (_) { return part; } };
    const parts = path.split('/').filter(Boolean).map(decode);
    return { name: parts[0] || 'events', arg: parts[1], params: new URLSearchParams(search || '') };
  }

  function mount() {
    const { name, arg, params } = parse();
    generation += 1;
    notice.hidden = true;
    for (const a of document.querySelectorAll('.bar nav a')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (name === 'events' && arg) current = eventView(arg);
    else if (name === 'sinks') current = sinksView();
    else if (name === 'dead-letters') current = deadLettersView(arg);
    else current = eventsView(params);
    view.replaceChildren(current.node);
    refresh();
  }

  // Refreshes the mounted view. One refresh runs at a time: a request made meanwhile runs
  // once after it. An answer for a view that is no longer shown is dropped.
  async function refresh() {
    if (!login.hidden) return;
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      do {
        again = false;
        const mine = generation;
        try {
          await current.refresh();
          if (mine === generation) {
            byId('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
            if (notice.className === 'error') notice.hidden = true;
          }
        } catch (err) {
          if (mine === generation) failed(err);
        }
      } while (again && login.hidden);
    } finally {
      inFlight = false;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    const idle = current && current.settled && current.settled();
    if (byId('auto').checked && !idle) timer = setTimeout(() => { if (!document.hidden) refresh(); else schedule(); }, REFRESH_MS);
  }

  byId('refresh').addEventListener('click', () => refresh());
  byId('auto').addEventListener('change', schedule);
  window.addEventListener('hashchange', mount);

  byId('forget').hidden = !token;
  view.hidden = false;
  mount();
})();
