// supabase_standin.cjs - a STAND-IN for Supabase's REST API (PostgREST), for tests only.
//
// Nothing real can be installed here (no PostgREST in Debian, no server on npm), so this small
// server implements PostgREST's insert contract on top of a REAL PostgreSQL (tests/peers/pg.sh):
//
//   POST /rest/v1/<table>[?on_conflict=<col>]   body: one JSON object or an array of objects
//     - apikey: <key> and Authorization: Bearer <key> are required; else 401
//       {"code":"PGRST301","message":"Invalid API key",...}
//     - an array's objects must all have the same keys; else 400 PGRST102 "All object keys must
//       match"; a key that is not a column: 400 PGRST204; unknown table: 404 PGRST205
//     - INSERT INTO <table> (<keys>) SELECT <keys> FROM json_populate_recordset(NULL::<table>, $1)
//       with ON CONFLICT (<col>) DO NOTHING for Prefer: resolution=ignore-duplicates and
//       DO UPDATE for resolution=merge-duplicates; one transaction per request
//     - Prefer: return=minimal -> 201 and no body; return=representation -> 201 and the rows
//     - PostgreSQL errors: unique violation 23505 -> 409, other data errors -> 400, with
//       PostgREST's body {"code","message","details","hint"}
//
// Test controls (not part of PostgREST):
//   POST /_control {"mode":"ok"|"fail"|"hang", "status":503, "hang_ms":5000}
//     fail: every insert answers <status> with a JSON error and inserts nothing
//     hang: every insert waits hang_ms, then is carried out and answered as usual (a slow
//           Supabase that commits after the client gave up: the ambiguous case)
//   POST /_control {"reload_schema": true}: forgets the cached table columns (PostgREST keeps a
//     schema cache too, reloaded by NOTIFY pgrst, 'reload schema')
//   GET /_control -> {"mode","requests","inserted_rows","rejected"}
//
// Usage: NODE_PATH=<node_modules> node supabase_standin.cjs --key KEY [--port 0]
//        (PostgreSQL from PGHOST/PGPORT/PGUSER/PGDATABASE). Prints "LISTENING <port>" when
//        ready. Exits on SIGTERM/SIGINT, and when its parent process is gone.
'use strict';
const http = require('http');
const { Pool } = require('pg');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const KEY = opt('key', 'test-service-role-key');
const PORT = parseInt(opt('port', '0'), 10);
const pool = new Pool({ max: 16 });

const control = { mode: 'ok', status: 503, hang_ms: 5000 };
const stats = { requests: 0, inserted_rows: 0, rejected: 0 };
const columns = new Map(); // table -> Set of columns

function send(res, status, body) {
  if (body === undefined) {
    res.writeHead(status);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(text);
}

function pgrstError(res, status, code, message, details = null, hint = null) {
  stats.rejected++;
  send(res, status, { code, message, details, hint });
}

async function tableColumns(table) {
  if (columns.has(table)) return columns.get(table);
  const r = await pool.query(
    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1",
    [table]);
  if (r.rows.length === 0) return null;
  const set = new Set(r.rows.map((x) => x.column_name));
  columns.set(table, set);
  return set;
}

const ident = (s) => '"' + s.replace(/"/g, '""') + '"';

function parsePrefer(h) {
  const out = {};
  for (const part of (h || '').split(',')) {
    const [k, v] = part.trim().split('=');
    if (k) out[k] = v;
  }
  return out;
}

async function insert(req, res, table, query, body) {
  const apikey = req.headers['apikey'];
  const auth = req.headers['authorization'];
  if (apikey !== KEY || auth !== 'Bearer ' + KEY)
    return pgrstError(res, 401, 'PGRST301', 'Invalid API key', null,
      'Double check your Supabase `anon` or `service_role` API key.');
  if (!/^application\/json/.test(req.headers['content-type'] || ''))
    return pgrstError(res, 415, 'PGRST107', 'Content-Type not acceptable');
  let payload;
  try {
    payload = JSON.parse(body);
  } catch (e) {
    return pgrstError(res, 400, 'PGRST102', 'Empty or invalid json', e.message);
  }
  const rows = Array.isArray(payload) ? payload : [payload];
  if (rows.length === 0 || rows.some((r) => r === null || typeof r !== 'object' || Array.isArray(r)))
    return pgrstError(res, 400, 'PGRST102', 'Empty or invalid json');
  const keys = Object.keys(rows[0]);
  const sig = keys.slice().sort().join(',');
  if (rows.some((r) => Object.keys(r).sort().join(',') !== sig))
    return pgrstError(res, 400, 'PGRST102', 'All object keys must match');
  const cols = await tableColumns(table);
  if (!cols)
    return pgrstError(res, 404, 'PGRST205',
      `Could not find the table 'public.${table}' in the schema cache`);
  for (const k of keys)
    if (!cols.has(k))
      return pgrstError(res, 400, 'PGRST204',
        `Could not find the '${k}' column of '${table}' in the schema cache`);
  if (control.mode === 'fail')
    return pgrstError(res, control.status, 'PGRST000', 'stand-in told to fail',
      `status ${control.status}`);
  if (control.mode === 'hang')
    await new Promise((r) => setTimeout(r, control.hang_ms));
  const prefer = parsePrefer(req.headers['prefer']);
  const list = keys.map(ident).join(', ');
  let sql = `INSERT INTO ${ident(table)} (${list}) SELECT ${list} FROM ` +
    `json_populate_recordset(NULL::${ident(table)}, $1::json)`;
  const onConflict = query.get('on_conflict');
  if (onConflict) {
    if (!cols.has(onConflict))
      return pgrstError(res, 400, 'PGRST204',
        `Could not find the '${onConflict}' column of '${table}' in the schema cache`);
    if (prefer.resolution === 'ignore-duplicates')
      sql += ` ON CONFLICT (${ident(onConflict)}) DO NOTHING`;
    else if (prefer.resolution === 'merge-duplicates')
      sql += ` ON CONFLICT (${ident(onConflict)}) DO UPDATE SET ` +
        keys.map((k) => `${ident(k)} = EXCLUDED.${ident(k)}`).join(', ');
  }
  const representation = prefer.return === 'representation';
  if (representation) sql += ' RETURNING *';
  try {
    const r = await pool.query(sql, [JSON.stringify(rows)]);
    stats.inserted_rows += r.rowCount;
    if (representation) return send(res, 201, r.rows);
    return send(res, 201);
  } catch (e) {
    const status = e.code === '23505' ? 409 : e.code === '42501' ? 403 : 400;
    return pgrstError(res, status, e.code || 'PGRST000', e.message, e.detail || null,
      e.hint || null);
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/_control') {
      if (req.method === 'POST') {
        const c = JSON.parse(body || '{}');
        if (c.reload_schema) columns.clear();
        delete c.reload_schema;
        Object.assign(control, c);
      }
      return send(res, 200, Object.assign({ mode: control.mode }, stats));
    }
    const m = /^\/rest\/v1\/([A-Za-z_][A-Za-z0-9_]*)$/.exec(url.pathname);
    if (!m) return pgrstError(res, 404, 'PGRST125', 'Invalid path specified in request URL');
    if (req.method !== 'POST')
      return pgrstError(res, 405, 'PGRST117', `Unsupported HTTP method: ${req.method}`);
    stats.requests++;
    insert(req, res, m[1], url.searchParams, body).catch((e) => {
      pgrstError(res, 500, 'PGRST000', String(e && e.message));
    });
  });
});
server.keepAliveTimeout = 60000;
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
const stop = () => {
  server.close();
  pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// never outlive the test or benchmark that started it (its parent died without stopping it);
// process.ppid is fixed at start in node, /proc is not
const ppid = () => require('fs').readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ')[1];
const parent = ppid();
setInterval(() => {
  if (ppid() !== parent) stop();
}, 1000).unref();
