// Sluice's web console: plain JavaScript over the HTTP API (docs/openapi.yaml), no build step and
// nothing fetched from elsewhere. Pages are hash routes; counts and lag are polled every 2 s.
'use strict';

const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let timer = null;

function token() { return sessionStorage.getItem('sluice-token') || ''; }

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = 'Bearer ' + token();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (r.status === 401) document.getElementById('token-form').hidden = false;
  return { status: r.status, json, text };
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function show(...nodes) { main.replaceChildren(...nodes); }
function say(msg) { statusEl.textContent = msg; }
function short(h) { return h ? h.slice(0, 12) + '…' : '—'; }
function when(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) : '—'; }
function table(head, rows) {
  return el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, head.map(h => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows)));
}
function poll(fn) { clearInterval(timer); fn(); timer = setInterval(fn, 2000); }
function failed(r) { return el('p', { class: 'error', role: 'alert' }, (r.json && r.json.error) || ('HTTP ' + r.status)); }

// ---- strands

async function strands() {
  const box = el('div');
  show(el('h2', {}, 'Strands'), box);
  poll(async () => {
    const r = await api('GET', '/v1/strands');
    if (r.status !== 200) return box.replaceChildren(failed(r));
    box.replaceChildren(table(['strand', 'records', 'head', 'last write', 'bytes'],
      r.json.strands.map(s => el('tr', {},
        el('td', {}, el('a', { href: '#/strand/' + encodeURIComponent(s.name) }, s.name)),
        el('td', { class: 'mono', 'data-count': s.name }, s.count),
        el('td', { class: 'mono' }, short(s.head_hash)),
        el('td', {}, when(s.last_timestamp_ms)),
        el('td', {}, s.bytes)))));
    say('strands updated ' + new Date().toLocaleTimeString());
  });
}

async function strand(name) {
  clearInterval(timer);
  const where = el('input', { id: 'where', name: 'where', placeholder: 'value.amount > 100' });
  const from = el('input', { id: 'from', name: 'from', type: 'number', min: '0', value: '0' });
  const out = el('div');
  const check = el('pre', { id: 'checkpoint', hidden: true });
  const load = async (ev) => {
    if (ev) ev.preventDefault();
    const q = new URLSearchParams({ from_seq: from.value || '0', limit: '50' });
    if (where.value.trim()) q.set('where', where.value.trim());
    const r = await api('GET', '/v1/strands/' + encodeURIComponent(name) + '/records?' + q);
    if (r.status !== 200) return out.replaceChildren(failed(r));
    out.replaceChildren(table(['seq', 'time', 'hash', 'payload', 'proof'], r.json.records.map(x => {
      const res = el('span', { class: 'verify-result', 'aria-live': 'polite' });
      return el('tr', {},
        el('td', { class: 'mono' }, x.seq), el('td', {}, when(x.timestamp_ms)), el('td', { class: 'mono' }, short(x.record_hash)),
        el('td', {}, el('pre', { class: 'payload' }, JSON.stringify(x.payload))),
        el('td', {}, el('button', { type: 'button', class: 'verify', onclick: async () => { res.textContent = await verifyRecord(name, x); } },
          'Verify'), ' ', res));
    })),
      el('p', {}, 'next page from seq ' + r.json.next_seq + (r.json.truncated ? ' (scan stopped at max_scan)' : '')));
  };
  const verify = async () => {
    const r = await api('GET', '/v1/strands/' + encodeURIComponent(name) + '/checkpoint');
    check.hidden = false;
    check.textContent = r.status === 200 ? r.text : ((r.json && r.json.error) || 'HTTP ' + r.status);
  };
  show(el('h2', {}, 'Strand ', el('code', {}, name)),
    el('form', { class: 'stack', onsubmit: load },
      el('div', {}, el('label', { for: 'where' }, 'Filter (where)'), where,
        el('span', { class: 'hint' }, 'An expression over the payload, as in the API (docs/expressions.md).')),
      el('div', {}, el('label', { for: 'from' }, 'From seq'), from),
      el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Show'),
        el('button', { type: 'button', onclick: verify }, 'Signed checkpoint'))),
    check, out);
  load();
}

// ---- verifying a record in the browser: its RFC 9162 inclusion proof against the root of the
// strand's signed checkpoint (C2SP signed note), the signature checked with the verifier key.

const hex = (b) => [...new Uint8Array(b)].map(x => x.toString(16).padStart(2, '0')).join('');
const unhex = (h) => new Uint8Array(h.match(/../g).map(x => parseInt(x, 16)));
const unb64 = (t) => Uint8Array.from(atob(t), c => c.charCodeAt(0));
async function sha256(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0), all = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { all.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', all));
}

async function rootFromProof(leaf, index, size, proof) { // RFC 9162 2.1.3.2
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn & 1 || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      while (!(fn & 1) && fn !== 0) { fn >>= 1; sn >>= 1; }
    } else r = await sha256(Uint8Array.of(1), r, p);
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 ? r : null;
}

async function verifyRecord(strand, rec) {
  if (!window.crypto || !crypto.subtle) return 'cannot verify here: the browser allows WebCrypto only over HTTPS or on localhost';
  const seg = encodeURIComponent(strand);
  const cp = await api('GET', '/v1/strands/' + seg + '/checkpoint');
  const key = await api('GET', '/v1/checkpoint-key');
  if (cp.status !== 200 || key.status !== 200) return 'no checkpoint: ' + ((cp.json && cp.json.error) || cp.status);
  const i = cp.text.lastIndexOf('\n\n'), body = cp.text.slice(0, i + 1);
  const [, size, root] = body.split('\n');
  const kt = key.text.trim(), p1 = kt.indexOf('+'), p2 = kt.indexOf('+', p1 + 1); // base64 may hold '+'
  const kname = kt.slice(0, p1), kid = kt.slice(p1 + 1, p2), kb64 = kt.slice(p2 + 1);
  const raw = unb64(kb64);
  const sig = cp.text.slice(i + 2).split('\n').map(l => l.split(' ')).find(w => w[0] === '\u2014' && w[1] === kname);
  let signed = false;
  try {
    const pub = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
    const sb = unb64(sig[2]);
    signed = hex(sb.slice(0, 4)) === kid && await crypto.subtle.verify({ name: 'Ed25519' }, pub, sb.slice(4), new TextEncoder().encode(body));
  } catch (e) { return 'checkpoint signature not checked (' + e.message + ')'; }
  if (!signed) return 'NOT verified: the checkpoint signature does not match the key';
  if (rec.seq >= Number(size)) return 'not in a signed checkpoint yet (size ' + size + '): try again shortly';
  const pr = await api('GET', '/v1/strands/' + seg + '/proof/inclusion?seq=' + rec.seq + '&tree_size=' + size);
  if (pr.status !== 200) return 'no proof: ' + ((pr.json && pr.json.error) || pr.status);
  const got = await rootFromProof(unhex(rec.record_hash), pr.json.leaf_index, pr.json.tree_size, pr.json.hashes.map(unhex));
  return got && hex(got) === hex(unb64(root))
    ? 'verified: in the signed tree of ' + size + ' records'
    : 'NOT verified: the proof does not lead to the signed root';
}

// ---- connectors

function progressOf(c) {
  const s = c.stats || {};
  if (s.lag === null || s.lag === undefined) return '—';
  const done = s.delivered || 0, total = done + s.lag;
  return el('span', {}, el('progress', { max: String(total || 1), value: String(total ? done : 1),
    'aria-label': 'delivered of ' + total }), ' ', s.lag + ' behind');
}

// A source's own progress: a snapshot's rows (where the kind reports them), else what it wrote.
function sourceProgress(c) {
  const s = c.stats || {};
  if (s.snapshot_rows_estimate) {
    return el('span', {}, el('progress', { max: String(s.snapshot_rows_estimate), value: String(s.snapshot_rows_done || 0),
      'aria-label': 'snapshot rows' }), ' snapshot ' + (s.snapshot_rows_done || 0) + ' / ' + s.snapshot_rows_estimate);
  }
  return c.event_count + ' written';
}

async function act(method, path, body) {
  const r = await api(method, path, body);
  say(r.status < 300 ? method + ' ' + path + ': done' : (r.json && r.json.error) || 'HTTP ' + r.status);
  return r;
}

function actions(c) {
  const id = encodeURIComponent(c.id);
  const b = (label, fn) => el('button', { type: 'button', onclick: async () => { await fn(); route(); } }, label);
  return el('div', { class: 'actions' },
    c.enabled ? b('Disable', () => act('PATCH', '/v1/connectors/' + id, { enabled: false }))
      : b('Enable', () => act('PATCH', '/v1/connectors/' + id, { enabled: true })),
    c.state === 'paused' ? b('Resume', () => act('POST', '/v1/connectors/' + id + '/resume'))
      : b('Pause', () => act('POST', '/v1/connectors/' + id + '/pause')),
    b('Restart', () => act('POST', '/v1/connectors/' + id + '/restart')));
}

async function connectors() {
  const box = el('div');
  show(el('h2', {}, 'Connectors'), box);
  poll(async () => {
    const r = await api('GET', '/v1/connectors');
    if (r.status !== 200) return box.replaceChildren(failed(r));
    box.replaceChildren(table(['name', 'kind', 'state', 'progress', 'dead letters', ''],
      r.json.connectors.map(c => el('tr', {},
        el('td', {}, el('a', { href: '#/connector/' + encodeURIComponent(c.id) }, c.name)),
        el('td', {}, c.kind),
        el('td', { class: 'state-' + c.state, title: c.last_error || '' }, c.state),
        el('td', {}, c.direction === 'outbound' ? progressOf(c) : sourceProgress(c)),
        el('td', {}, c.stats ? c.stats.dead_lettered : '—'),
        el('td', {}, actions(c))))));
  });
}

async function connector(id) {
  clearInterval(timer);
  const r = await api('GET', '/v1/connectors/' + encodeURIComponent(id));
  if (r.status !== 200) return show(failed(r));
  const c = r.json;
  const dl = c.direction === 'outbound' ? await api('GET', '/v1/connectors/' + encodeURIComponent(id) + '/dead-letters?limit=50') : null;
  show(el('h2', {}, c.name, ' ', el('span', { class: 'state-' + c.state }, '(' + c.state + ')')),
    c.last_error ? el('p', { class: 'error' }, c.last_error) : null,
    actions(c),
    el('h2', {}, 'Config'), el('pre', {}, JSON.stringify(c.config, null, 2)),
    c.stats ? el('pre', {}, JSON.stringify(c.stats, null, 2)) : null,
    dl && dl.status === 200 ? el('div', {}, el('h2', {}, 'Dead letters (' + dl.json.count + ')'),
      el('button', { type: 'button', onclick: async () => { await act('POST', '/v1/connectors/' + encodeURIComponent(id) + '/dead-letters/replay'); route(); } }, 'Replay all'),
      table(['strand', 'seq', 'attempts', 'status', 'error'], dl.json.dead_letters.map(d => el('tr', {},
        el('td', {}, d.strand), el('td', {}, d.seq), el('td', {}, d.attempts), el('td', {}, d.last_status), el('td', {}, d.last_error || ''))))) : null);
}

// ---- new connector, from the catalog's field tables

function fieldInput(f, prefix) {
  const id = 'f-' + prefix + f.name;
  let input;
  const structured = f.type === 'object' || f.type === 'object of strings' || f.type === 'array of strings';
  if (f.type === 'boolean') input = el('input', { id, type: 'checkbox', 'data-field': prefix + f.name, 'data-type': f.type });
  else if (f.choices) input = el('select', { id, 'data-field': prefix + f.name, 'data-type': f.type },
    el('option', { value: '' }, f.default !== undefined && f.default !== null ? '(default ' + f.default + ')' : '—'),
    f.choices.map(x => el('option', { value: x }, x)));
  else if (structured)
    input = el('textarea', { id, rows: '2', 'data-field': prefix + f.name, 'data-type': f.type, placeholder: f.type.startsWith('array') ? '[ ]' : '{ }' });
  else input = el('input', { id, type: f.secret ? 'password' : (f.type === 'integer' || f.type === 'number' ? 'number' : 'text'),
    'data-field': prefix + f.name, 'data-type': f.type, placeholder: f.default !== undefined && f.default !== null ? String(f.default) : '' });
  return el('div', { class: 'field' }, el('label', { for: id }, f.name + (f.required ? ' *' : '')), input,
    f.description ? el('span', { class: 'hint' }, f.description) : null,
    el('div', { class: 'field-error', id: id + '-error', role: 'alert' }));
}

async function create() {
  clearInterval(timer);
  const r = await api('GET', '/v1/connector-kinds');
  if (r.status !== 200) return show(failed(r));
  const kinds = r.json.kinds.filter(k => k.available !== false);
  const kind = el('select', { id: 'kind', name: 'kind' }, kinds.map(k => el('option', { value: k.kind }, k.kind + ' (' + k.direction + ')')));
  const name = el('input', { id: 'name', name: 'name', required: true });
  const strands = el('input', { id: 'strands', name: 'strands', placeholder: 'orders, payments (sinks; empty: every strand)' });
  const fields = el('div', { class: 'stack' });
  const top = el('div', { class: 'field-error', id: 'form-error', role: 'alert' });
  const render = () => {
    const k = kinds.find(x => x.kind === kind.value);
    fields.replaceChildren(...(k ? k.fields.filter(f => !f.common).map(f => fieldInput(f, '')) : []));
  };
  kind.addEventListener('change', render);
  const submit = async (ev) => {
    ev.preventDefault();
    for (const e of document.querySelectorAll('.field-error')) e.textContent = '';
    for (const e of document.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
    const config = {};
    for (const inp of fields.querySelectorAll('[data-field]')) {
      const t = inp.dataset.type;
      if (t === 'boolean') { if (inp.checked) config[inp.dataset.field] = true; continue; }
      const v = inp.value.trim();
      if (!v) continue;
      if (t === 'integer' || t === 'number') config[inp.dataset.field] = Number(v);
      else if (t === 'object' || t === 'object of strings' || t === 'array of strings') {
        try { config[inp.dataset.field] = JSON.parse(v); } catch (e) {
          inp.setAttribute('aria-invalid', 'true');
          document.getElementById(inp.id + '-error').textContent = 'config.' + inp.dataset.field + ': not JSON';
          return;
        }
      } else config[inp.dataset.field] = v;
    }
    const body = { name: name.value.trim(), kind: kind.value, config };
    const list = strands.value.split(',').map(s => s.trim()).filter(Boolean);
    if (list.length) body.strands = list;
    const res = await api('POST', '/v1/connectors', body);
    if (res.status === 201) { say('created ' + res.json.name); location.hash = '#/connector/' + encodeURIComponent(res.json.id); return; }
    const msg = (res.json && res.json.error) || 'HTTP ' + res.status;
    const m = /^config\.([A-Za-z0-9_.]+?)(\[\d+\])?:/.exec(msg);
    const field = m && (fields.querySelector('[data-field="' + m[1] + '"]') || fields.querySelector('[data-field="' + m[1].split('.')[0] + '"]'));
    const target = field ? document.getElementById(field.id + '-error') : (/^name:/.test(msg) ? document.getElementById('name-error') : top);
    if (field) field.setAttribute('aria-invalid', 'true');
    target.textContent = msg;
    (field || name).focus();
  };
  show(el('h2', {}, 'New connector'),
    el('form', { class: 'stack', id: 'create', onsubmit: submit, novalidate: true },
      el('div', {}, el('label', { for: 'kind' }, 'Kind'), kind),
      el('div', {}, el('label', { for: 'name' }, 'Name *'), name, el('div', { class: 'field-error', id: 'name-error', role: 'alert' })),
      el('div', {}, el('label', { for: 'strands' }, 'Strands'), strands),
      fields, top,
      el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Create'))));
  render();
}

// ---- Boboyka and the test-ingest panel

async function boboyka() {
  const box = el('pre', { id: 'boboyka-status' });
  show(el('h2', {}, 'Boboyka'), box);
  poll(async () => {
    const r = await api('GET', '/v1/boboyka/status');
    box.textContent = r.status === 200 ? JSON.stringify(r.json, null, 2) : ((r.json && r.json.error) || 'HTTP ' + r.status);
  });
}

function ingest() {
  clearInterval(timer);
  const strandIn = el('input', { id: 'ingest-strand', value: 'default' });
  const payload = el('textarea', { id: 'ingest-payload', rows: '4' }, '{"hello": "world"}');
  const answer = el('pre', { id: 'ingest-answer', 'aria-live': 'polite' });
  const rtype = el('select', { id: 'bbk-type' }, ['audit_log', 'agent_health', 'project_build', 'build_queue_item'].map(x => el('option', { value: x }, x)));
  const data = el('textarea', { id: 'bbk-data', rows: '4' }, '{"event": "console test"}');
  const bAnswer = el('pre', { id: 'bbk-answer', 'aria-live': 'polite' });
  const send = async (ev) => {
    ev.preventDefault();
    let p;
    try { p = JSON.parse(payload.value); } catch (e) { answer.textContent = 'payload: not JSON (' + e.message + ')'; return; }
    const r = await api('POST', '/v1/records', { strand: strandIn.value.trim() || 'default', payload: p });
    answer.textContent = r.status + ' ' + JSON.stringify(r.json, null, 2);
  };
  const sendB = async (ev) => {
    ev.preventDefault();
    let d;
    try { d = JSON.parse(data.value); } catch (e) { bAnswer.textContent = 'data: not JSON (' + e.message + ')'; return; }
    const r = await api('POST', '/v1/boboyka/ingest', { record_type: rtype.value, data: d });
    bAnswer.textContent = r.status + ' ' + JSON.stringify(r.json, null, 2);
  };
  show(el('h2', {}, 'Test ingest'),
    el('form', { class: 'stack', id: 'ingest', onsubmit: send },
      el('div', {}, el('label', { for: 'ingest-strand' }, 'Strand'), strandIn),
      el('div', {}, el('label', { for: 'ingest-payload' }, 'Payload (JSON)'), payload),
      el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Write record')), answer),
    el('h2', {}, 'Boboyka event'),
    el('form', { class: 'stack', id: 'bbk', onsubmit: sendB },
      el('div', {}, el('label', { for: 'bbk-type' }, 'record_type'), rtype),
      el('div', {}, el('label', { for: 'bbk-data' }, 'data (JSON)'), data),
      el('div', {}, el('button', { type: 'submit', class: 'primary' }, 'Ingest event')), bAnswer));
}

// ---- routing

function route() {
  const h = location.hash || '#/strands';
  for (const a of document.querySelectorAll('nav a')) {
    if (h.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const [, page, arg] = /^#\/([^/]*)\/?(.*)$/.exec(h) || [];
  const a = arg ? decodeURIComponent(arg) : '';
  ({ strands, strand: () => strand(a), connectors, connector: () => connector(a), new: create, boboyka, ingest }[page] || strands)();
}

document.getElementById('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('sluice-token', document.getElementById('token').value);
  document.getElementById('token-form').hidden = true;
  route();
});
window.addEventListener('hashchange', route);
route();
