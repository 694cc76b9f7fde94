// The control page of `ladder client --ui`: talks only to the port it came from, with the access
// token from the URL's #fragment (never sent to a server by the browser, kept out of history).
const token = new URLSearchParams(location.hash.slice(1)).get('token') ?? '';
if (token) history.replaceState(null, '', location.pathname);

const $ = (id) => document.getElementById(id);
let last = null;

async function call(path, body) {
  const res = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message ?? `HTTP ${res.status}`);
  return data;
}

function showError(err) {
  const e = $('error');
  if (!err) {
    e.hidden = true;
    return;
  }
  e.textContent = err.message ?? String(err);
  e.hidden = false;
}

function rate(bytesPerS) {
  if (bytesPerS < 1024) return `${bytesPerS.toFixed(0)} B/s`;
  if (bytesPerS < 1024 * 1024) return `${(bytesPerS / 1024).toFixed(1)} KB/s`;
  return `${(bytesPerS / 1024 / 1024).toFixed(1)} MB/s`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function fillSelect(sel, values, chosen) {
  const want = values.join('\n');
  if (sel.dataset.values !== want) {
    sel.replaceChildren(
      ...values.map((v) => {
        const o = document.createElement('option');
        o.value = v;
        o.textContent = v;
        return o;
      }),
    );
    sel.dataset.values = want;
  }
  if (chosen !== undefined && document.activeElement !== sel) sel.value = chosen;
}

function render(s) {
  const now = performance.now();
  $('status').textContent = s.connected ? `connected: ${s.key}` : 'disconnected';
  $('status').className = s.connected ? 'on' : 'off';
  $('server').textContent = s.what ?? '–';
  fillSelect($('keys'), s.keys, s.key);
  fillSelect(
    $('transport'),
    s.connected ? ['auto', ...s.transports.map((t) => t.name)] : [],
    s.selected,
  );
  $('current').textContent = s.current && s.selected === 'auto' ? `now ${s.current}` : '';
  if (last) {
    const dt = Math.max((now - last.at) / 1000, 0.001);
    $('up').textContent = rate((s.totals.upload - last.totals.upload) / dt);
    $('down').textContent = rate((s.totals.download - last.totals.download) / dt);
  }
  last = { at: now, totals: s.totals };
  $('connections').replaceChildren(
    ...s.connections.map((c) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'connection';
      for (const v of [c.destination, c.rule, c.chain, bytes(c.upload), bytes(c.download)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  $('log').textContent = s.logs.map((l) => `${l.time.slice(11, 19)} ${l.text}`).join('\n');
}

async function refresh() {
  try {
    render(await call('/ladder/state'));
  } catch (err) {
    showError(err);
  }
}

function action(fn) {
  return async () => {
    try {
      showError(null);
      await fn();
    } catch (err) {
      showError(err);
    }
    await refresh();
  };
}

$('import').addEventListener(
  'click',
  action(async () => {
    await call('/ladder/keys', { uri: $('key-uri').value });
    $('key-uri').value = '';
  }),
);
$('connect').addEventListener(
  'click',
  action(() => call('/ladder/connect', { name: $('keys').value })),
);
$('disconnect').addEventListener(
  'click',
  action(() => call('/ladder/disconnect', {})),
);
$('transport').addEventListener(
  'change',
  action(() => call('/ladder/select', { name: $('transport').value })),
);

if (!token)
  showError(new Error('open the URL that `ladder client --ui` printed: it holds the access token'));
await refresh();
setInterval(refresh, 1000);
