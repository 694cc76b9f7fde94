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
  renderProbe(s.probe);
  renderUpdate(s.update, s.version);
  $('log').textContent = s.logs.map((l) => `${l.time.slice(11, 19)} ${l.text}`).join('\n');
}

function renderUpdate(u, version) {
  $('version').textContent = version ? `Version ${version}` : '';
  const a = u.available;
  $('update').hidden = !a || u.applying;
  $('update-status').textContent = u.applying
    ? `Updating to version ${a?.version ?? ''}…`
    : u.error
      ? `The update failed: ${u.error}`
      : u.done
        ? u.done
        : a
          ? `Version ${a.version} is available (${bytes(a.size)}, from ${a.from}, signed by the operator)`
          : '';
  $('client-urls-intro').hidden = u.clientUrls.length === 0;
  $('client-urls').replaceChildren(
    ...u.clientUrls.map((url) => {
      const li = document.createElement('li');
      li.dataset.testid = 'client-url';
      const code = document.createElement('code');
      code.textContent = url;
      li.append(code);
      return li;
    }),
  );
}

function renderProbe(p) {
  $('probe').disabled = p.running;
  $('probe-status').textContent = p.running
    ? `probing ${p.key}…`
    : p.error
      ? `the probe of ${p.key} failed: ${p.error}`
      : p.summary
        ? `probe of ${p.key}`
        : '';
  const sum = p.summary;
  $('probe-recommended').textContent = sum
    ? sum.recommended
      ? `Recommended transport: ${sum.recommended} (${sum.reason})`
      : sum.reason
    : '';
  $('probe-transports').replaceChildren(
    ...(sum?.transports ?? []).map((t) => {
      const tr = document.createElement('tr');
      tr.dataset.testid = 'probe-transport';
      for (const v of [
        t.name,
        `${t.status} (${t.okAttempts}/${t.attempts})`,
        t.technique,
        t.explanation,
      ]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  $('probe-findings').replaceChildren(
    ...(sum?.findings ?? []).map((f) => {
      const li = document.createElement('li');
      li.textContent = `${f.technique} on ${f.transports.join(', ')}: ${f.evidence}. ${
        f.useInstead.length ? `Use ${f.useInstead.join(' or ')} instead.` : f.advice
      }`;
      return li;
    }),
  );
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

$('update').addEventListener(
  'click',
  action(async () => {
    await call('/ladder/update', {});
  }),
);
$('import').addEventListener(
  'click',
  action(async () => {
    await call('/ladder/keys', { uri: $('key-uri').value });
    $('key-uri').value = '';
  }),
);
/** Largest image file read, and largest side decoded (a QR code needs far less). */
const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const MAX_IMAGE_SIDE = 2048;
const KEY_SCHEMES = /^(ss|trojan|ladder|ssconf|https):\/\//i;

/** The text of the QR code in an image file, checked to be a key; a clear message otherwise. */
async function keyFromImage(file) {
  if (typeof globalThis.jsQR !== 'function')
    throw new Error('the QR decoder did not load (npm package jsqr): reinstall ladder');
  if (file.size > MAX_IMAGE_BYTES)
    throw new Error(`${file.name} is larger than 20 MB: crop the picture to the QR code`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name} is not an image this browser can read: use a PNG or JPEG`);
  }
  const scale = Math.min(1, MAX_IMAGE_SIDE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, w, h);
  bitmap.close();
  const code = globalThis.jsQR(ctx.getImageData(0, 0, w, h).data, w, h, {
    inversionAttempts: 'attemptBoth',
  });
  if (!code)
    throw new Error(
      `no QR code could be read in ${file.name}: take a sharper picture with the whole code in it`,
    );
  const text = code.data.trim();
  if (!KEY_SCHEMES.test(text))
    throw new Error(
      `the QR code in ${file.name} holds no key (a key starts with ss://, trojan://, ladder://, ssconf:// or https://)`,
    );
  return text;
}

$('qr-file').addEventListener(
  'change',
  action(async () => {
    const input = $('qr-file');
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    await call('/ladder/keys', { uri: await keyFromImage(file) });
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
$('probe').addEventListener(
  'click',
  action(() => call('/ladder/probe', { name: $('keys').value })),
);
$('transport').addEventListener(
  'change',
  action(() => call('/ladder/select', { name: $('transport').value })),
);

if (!token)
  showError(new Error('open the URL that `ladder client --ui` printed: it holds the access token'));
await refresh();
setInterval(refresh, 1000);
