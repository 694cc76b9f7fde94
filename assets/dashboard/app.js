// Ladder's dashboard: a page served under the management API's secret prefix, talking only to that
// API (same origin, relative URLs), with no outside resource of any kind. Plain ES modules, no build.
// @ts-check

const API = new URL('..', location.href).pathname.replace(/\/$/, '');
const REFRESH_MS = 2000;
const GB = 1e9;
const MB = 1e6;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 */
async function api(method, path, body) {
  const res = await fetch(API + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new Error(data?.message ?? `HTTP ${res.status}`);
  return data;
}

/** @param {string} text @param {boolean} [error] */
function status(text, error = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

/** @param {number} n */
function bytes(n) {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** @param {number} s */
function duration(s) {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/**
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {(Node | string)[]} [children]
 */
function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** Bar chart of daily bytes as SVG (no library). @param {HTMLElement} into @param {{day: string, bytes: number}[]} days */
function chart(into, days) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  // Drawn at the container's own width, so that text keeps its proportions.
  const W = Math.max(300, into.clientWidth - 16);
  const H = 140;
  const pad = 18;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  const max = Math.max(1, ...days.map((d) => d.bytes));
  svg.setAttribute('aria-label', `daily data, highest ${bytes(max)}`);
  const bw = (W - 2 * pad) / days.length;
  days.forEach((d, i) => {
    const h = ((H - 2 * pad) * d.bytes) / max;
    const r = document.createElementNS(NS, 'rect');
    r.setAttribute('x', String(pad + i * bw + 1));
    r.setAttribute('y', String(H - pad - h));
    r.setAttribute('width', String(Math.max(1, bw - 2)));
    r.setAttribute('height', String(h));
    const t = document.createElementNS(NS, 'title');
    t.textContent = `${d.day}: ${bytes(d.bytes)}`;
    r.append(t);
    svg.append(r);
  });
  for (const [i, anchor] of [
    [0, 'start'],
    [days.length - 1, 'end'],
  ]) {
    const t = document.createElementNS(NS, 'text');
    t.setAttribute('x', String(anchor === 'start' ? pad : W - pad));
    t.setAttribute('y', String(H - 4));
    t.setAttribute('text-anchor', String(anchor));
    t.textContent = days[Number(i)]?.day ?? '';
    svg.append(t);
  }
  const top = document.createElementNS(NS, 'text');
  top.setAttribute('x', String(pad));
  top.setAttribute('y', '12');
  top.textContent = bytes(max);
  svg.append(top);
  into.replaceChildren(svg);
}

/** The form's limits as the API takes them. @param {HTMLFormElement} form */
function limitsFrom(form) {
  const f = new FormData(form);
  const num = (/** @type {string} */ name) => {
    const v = String(f.get(name) ?? '').trim();
    return v === '' ? null : Number(v);
  };
  const limit = num('limit');
  const speed = num('speed');
  const devices = num('devices');
  const expires = String(f.get('expires') ?? '');
  return {
    name: String(f.get('name') ?? ''),
    dataLimit:
      limit === null ? null : { bytes: Math.round(limit * GB), period: String(f.get('period')) },
    expiresMs: expires ? Date.parse(`${expires}T23:59:59Z`) : null,
    speedLimitBps: speed === null || speed === 0 ? null : Math.round(speed * MB),
    deviceLimit: devices,
  };
}

/** @type {Map<string, any>} */
let keys = new Map();
/** @type {string | null} */
let openKey = null;

async function refresh() {
  try {
    const [server, health, list, usage, fleet] = await Promise.all([
      api('GET', '/server'),
      api('GET', '/ladder/v1/server/health'),
      api('GET', '/access-keys'),
      api('GET', '/ladder/v1/usage?days=30'),
      api('GET', '/ladder/v1/fleet'),
    ]);
    $('server-name').textContent = server.name;
    $('server-version').textContent = `Ladder ${server.version}`;
    document.title = `${server.name} · Ladder`;
    /** @type {HTMLElement} */ (document.querySelector('[data-testid=uptime]')).textContent =
      duration(health.uptimeSeconds);
    /** @type {HTMLElement} */ (document.querySelector('[data-testid=active]')).textContent =
      String(health.activeConnections);
    /** @type {HTMLElement} */ (document.querySelector('[data-testid=connections]')).textContent =
      String(health.connectionsTotal);
    /** @type {HTMLElement} */ (document.querySelector('[data-testid=probes]')).textContent =
      String(health.probesTotal);
    /** @type {HTMLElement} */ (document.querySelector('[data-testid=key-states]')).textContent =
      Object.entries(health.keys)
        .map(([s, n]) => `${n} ${s}`)
        .join(', ') || '0';
    chart($('server-chart'), usage.days);
    keys = new Map(list.accessKeys.map((/** @type {any} */ k) => [k.id, k]));
    renderFleet(fleet);
    renderKeys();
    if (openKey && keys.has(openKey)) await refreshDialogChart(openKey);
    if ($('status').textContent?.startsWith('Cannot reach')) status('');
  } catch (err) {
    status(`Cannot reach the server: ${/** @type {Error} */ (err).message}`, true);
  }
}

/**
 * The fleet's servers (shown only when this server shares a PostgreSQL store with others).
 * @param {any} fleet
 */
function renderFleet(fleet) {
  $('fleet').hidden = !fleet.fleet;
  if (!fleet.fleet) return;
  const healthy = fleet.servers.filter((/** @type {any} */ s) => s.healthy).length;
  $('fleet-servers').replaceChildren(
    ...fleet.servers.map((/** @type {any} */ s) => {
      const used = Object.values(s.bytesByKey).filter((b) => Number(b) > 0).length;
      const ago = Math.max(0, Math.round((Date.now() - s.lastSeenMs) / 1000));
      return el('tr', { 'data-server-id': s.id, 'data-testid': 'fleet-server' }, [
        el('td', {}, [s.self ? `${s.name} (this server)` : s.name]),
        el('td', {}, [`${s.host}:${s.port}`]),
        el('td', {}, [
          el(
            'span',
            { class: `state ${s.healthy ? 'active' : 'disabled'}`, 'data-testid': 'fleet-health' },
            [s.healthy ? 'up' : `down (last seen ${duration(ago)} ago)`],
          ),
        ]),
        el('td', {}, [String(s.activeConnections)]),
        el('td', { 'data-testid': 'fleet-bytes' }, [bytes(s.bytes)]),
        el('td', {}, [String(used)]),
      ]);
    }),
  );
  $('fleet-summary').textContent =
    `${healthy} of ${fleet.servers.length} servers up · ${fleet.keys} keys shared by all · `;
  const store = $('fleet-store');
  store.textContent = fleet.storeReachable ? 'database reachable' : 'database unreachable';
  store.className = `state ${fleet.storeReachable ? 'active' : 'over-limit'}`;
}

function renderKeys() {
  const body = $('keys');
  // Keys without a limit get a bar relative to the busiest key.
  const busiest = Math.max(1, ...[...keys.values()].map((k) => k.ladder.totalBytes));
  const rows = [...keys.values()].map((k) => {
    const l = k.ladder;
    const limit = l.effectiveLimit;
    const used = limit ? l.usedBytes : l.totalBytes;
    const bar = el(
      'div',
      { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' },
      [el('span')],
    );
    const pct = Math.min(100, (100 * used) / (limit ? Math.max(1, limit.bytes) : busiest));
    /** @type {HTMLElement} */ (bar.firstChild).style.width = `${pct}%`;
    bar.setAttribute('aria-valuenow', String(Math.round(pct)));
    if (limit && used >= limit.bytes) bar.classList.add('full');
    const usageText = el('div', { class: 'usage-text', 'data-testid': 'usage' }, [
      limit ? `${bytes(used)} of ${bytes(limit.bytes)} (${limit.period})` : `${bytes(used)}`,
    ]);
    const toggle = el(
      'button',
      { type: 'button', class: 'secondary', 'data-testid': l.disabled ? 'enable' : 'disable' },
      [l.disabled ? 'Enable' : 'Disable'],
    );
    toggle.addEventListener('click', () =>
      act(`${l.disabled ? 'Enabled' : 'Disabled'} “${k.name || k.id}”`, () =>
        api('PATCH', `/ladder/v1/access-keys/${encodeURIComponent(k.id)}`, {
          disabled: !l.disabled,
        }),
      ),
    );
    const share = el('button', { type: 'button', 'data-testid': 'share' }, ['Share & edit']);
    share.addEventListener('click', () => void openDialog(k.id));
    const del = el('button', { type: 'button', class: 'danger', 'data-testid': 'delete' }, [
      'Delete',
    ]);
    del.addEventListener('click', () => {
      if (confirm(`Delete the key “${k.name || k.id}”? Whoever uses it is cut off at once.`))
        void act(`Deleted “${k.name || k.id}”`, () =>
          api('DELETE', `/access-keys/${encodeURIComponent(k.id)}`),
        );
    });
    const limits = [
      l.speedLimitBps ? `${bytes(l.speedLimitBps)}/s` : null,
      l.deviceLimit
        ? `${l.devices}/${l.deviceLimit} devices`
        : `${l.devices} device${l.devices === 1 ? '' : 's'}`,
    ]
      .filter(Boolean)
      .join(' · ');
    return el('tr', { 'data-key-id': k.id, 'data-testid': 'key-row' }, [
      el('td', { 'data-testid': 'key-name' }, [k.name || `key ${k.id}`]),
      el('td', {}, [el('span', { class: `state ${l.state}`, 'data-testid': 'state' }, [l.state])]),
      el('td', {}, [bar, usageText]),
      el('td', {}, [l.expiresMs ? new Date(l.expiresMs).toISOString().slice(0, 10) : 'never']),
      el('td', { class: 'usage-text' }, [limits]),
      el('td', { class: 'actions' }, [share, toggle, del]),
    ]);
  });
  body.replaceChildren(...rows);
  $('no-keys').hidden = rows.length > 0;
}

/** @param {string} done @param {() => Promise<unknown>} fn */
async function act(done, fn) {
  try {
    await fn();
    status(done);
    await refresh();
  } catch (err) {
    status(/** @type {Error} */ (err).message, true);
  }
}

/** @param {string} id */
async function refreshDialogChart(id) {
  const u = await api('GET', `/ladder/v1/access-keys/${encodeURIComponent(id)}/usage?days=30`);
  chart($('key-chart'), u.days);
}

/** @param {string} id */
async function openDialog(id) {
  const k = keys.get(id);
  if (!k) return;
  openKey = id;
  $('dialog-title').textContent = k.name || `key ${k.id}`;
  const img = el('img', {
    alt: `QR code of the access key for ${k.name || k.id}`,
    src: `${API}/ladder/v1/access-keys/${encodeURIComponent(id)}/qr.svg`,
  });
  $('qr').replaceChildren(img);
  /** @type {HTMLTextAreaElement} */ ($('uri')).value = k.accessUrl;
  /** @type {HTMLTextAreaElement} */ ($('bundle-uri')).value = k.ladder.bundleUrl;
  $('trojan-block').hidden = !k.ladder.trojanUrl;
  /** @type {HTMLTextAreaElement} */ ($('trojan-uri')).value = k.ladder.trojanUrl ?? '';
  const form = /** @type {HTMLFormElement} */ ($('edit-form'));
  const l = k.ladder;
  /** @type {HTMLInputElement} */ (form.elements.namedItem('name')).value = k.name;
  /** @type {HTMLInputElement} */ (form.elements.namedItem('limit')).value = l.dataLimit
    ? String(l.dataLimit.bytes / GB)
    : '';
  /** @type {HTMLSelectElement} */ (form.elements.namedItem('period')).value =
    l.dataLimit?.period ?? '30d';
  /** @type {HTMLInputElement} */ (form.elements.namedItem('expires')).value = l.expiresMs
    ? new Date(l.expiresMs).toISOString().slice(0, 10)
    : '';
  /** @type {HTMLInputElement} */ (form.elements.namedItem('speed')).value = l.speedLimitBps
    ? String(l.speedLimitBps / MB)
    : '';
  /** @type {HTMLInputElement} */ (form.elements.namedItem('devices')).value = l.deviceLimit
    ? String(l.deviceLimit)
    : '';
  /** @type {HTMLDialogElement} */ ($('key-dialog')).showModal();
  await refreshDialogChart(id);
}

/** @param {string} from */
function copy(from) {
  const t = /** @type {HTMLTextAreaElement} */ ($(from));
  t.select();
  navigator.clipboard?.writeText(t.value).then(
    () => status('Copied to the clipboard'),
    () => status('Selected: press Ctrl+C (or ⌘C) to copy'),
  );
}

$('copy-uri').addEventListener('click', () => copy('uri'));
$('copy-trojan').addEventListener('click', () => copy('trojan-uri'));
$('copy-bundle').addEventListener('click', () => copy('bundle-uri'));
$('key-dialog').addEventListener('close', () => {
  openKey = null;
});

$('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const form = /** @type {HTMLFormElement} */ (ev.target);
  const v = limitsFrom(form);
  /** @type {Record<string, unknown>} */
  const body = { name: v.name };
  if (v.dataLimit) body.dataLimit = v.dataLimit;
  if (v.expiresMs) body.expiresMs = v.expiresMs;
  if (v.speedLimitBps) body.speedLimitBps = v.speedLimitBps;
  if (v.deviceLimit) body.deviceLimit = v.deviceLimit;
  void act(`Created “${v.name}”`, async () => {
    const k = await api('POST', '/ladder/v1/access-keys', body);
    form.reset();
    await refresh();
    await openDialog(k.id);
  });
});

$('edit-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!openKey) return;
  const id = openKey;
  const v = limitsFrom(/** @type {HTMLFormElement} */ (ev.target));
  void act('Saved', async () => {
    await api('PATCH', `/ladder/v1/access-keys/${encodeURIComponent(id)}`, v);
    /** @type {HTMLDialogElement} */ ($('key-dialog')).close();
  });
});

void refresh();
setInterval(() => void refresh(), REFRESH_MS);
