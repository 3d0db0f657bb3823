// A STAND-IN for Elasticsearch / OpenSearch, NOT Elasticsearch: no Elasticsearch or OpenSearch
// can be installed on this machine, so the tests and bench/sinks.sh run the sinks against this
// small HTTP server, written from the public _bulk documentation (Elasticsearch's "Bulk API"
// reference, OpenSearch's "Bulk" API page). It implements what a bulk client relies on:
//
//   POST /_bulk and POST /<index>/_bulk: NDJSON action/metadata lines (index, create, delete,
//     update), each followed by its source line except delete; every line ends with "\n" (an
//     optional "\r" before it); Content-Type application/x-ndjson (or application/json) else 406;
//     a body over max_body bytes is 413; a malformed action line, an unknown action or parameter,
//     a missing source line or a missing _index refuse the whole request (400, as
//     Elasticsearch's parse and validation errors do). Items run one by one and each has its own
//     status: index 201 created / 200 updated, create 409 when the _id exists, delete 200 / 404
//     not_found (not an error), a source that is not a JSON object or a value that does not fit
//     the field's dynamic mapping (the type its first value gave it) 400 mapper_parsing_exception.
//     The answer is {"took", "errors", "items": [{"<action>": {"_index", "_id", "_version",
//     "result", "_shards", "_seq_no", "_primary_term", "status"[, "error": {"type", "reason"}]}}]}.
//     The filter_path query parameter filters the answer as Elasticsearch's response filtering
//     does (dotted paths, * in names, ** for any levels; what no path reaches is left out).
//   GET / (the banner), GET /<index>/_count, GET /<index>/_doc/<id>.
//   Basic auth when started with a user:password (401 security_exception otherwise).
//
// And, for tests, what Elasticsearch does under load, on request (POST /_standin/control):
//   {"fail_requests": n, "status": 503}   the next n bulk requests answer that status
//   {"fail_items": n, "item_status": 429}  the next n index/create items answer that status
//   {"max_body": bytes}                    the size above which a request is 413
//   {"fast": true}                         benchmarks: documents are counted, not parsed or kept
//                                          (the action lines still are), so that the stand-in's
//                                          own cost stays small next to the sender's
// GET /_standin/stats gives {requests, docs, bytes, last_bulk (its path and query), cpu_s (this
// process's CPU seconds)};
// GET /_standin/bodies the last 50 bulk bodies, as received.
//
// Usage: node es_standin.cjs PORT [user:password]   (PORT 0: any; prints "LISTENING <port>")
'use strict';
const http = require('http');

const port = parseInt(process.argv[2] || '0', 10);
const auth = process.argv[3] ? 'Basic ' + Buffer.from(process.argv[3]).toString('base64') : null;
const indices = new Map(); // name -> {docs: Map(id -> {source, version}), mapping: Map(field -> type)}
let seqNo = 0, autoId = 0;
const ctl = {fail_requests: 0, status: 503, fail_items: 0, item_status: 429, max_body: 100 * 1024 * 1024, fast: false};
const stats = {requests: 0, docs: 0, bytes: 0, last_bulk: null};
const bodies = [];

function send(res, status, obj) {
    const text = obj === undefined ? '' : JSON.stringify(obj);
    res.writeHead(status, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text)});
    res.end(text);
}

function esError(type, reason, status) {
    return {error: {root_cause: [{type, reason}], type, reason}, status};
}

function index(name) {
    let ix = indices.get(name);
    if (!ix) {
        ix = {docs: new Map(), mapping: new Map()};
        indices.set(name, ix);
    }
    return ix;
}

function typeOf(v) {
    if (v === null) return null;
    if (typeof v === 'boolean') return 'boolean';
    if (typeof v === 'number') return Number.isInteger(v) ? 'long' : 'float';
    if (typeof v === 'string') return 'text';
    if (Array.isArray(v)) return 'array';
    return 'object';
}

// Dynamic mapping, as Elasticsearch applies it: a field's first value fixes its type; a later
// value that cannot be read as that type fails the document.
function checkMapping(ix, src, prefix) {
    for (const [k, v] of Object.entries(src)) {
        const field = prefix + k;
        const values = Array.isArray(v) ? v : [v];
        for (const x of values) {
            const t = typeOf(x);
            if (t === null) continue;
            if (t === 'object') {
                const have = ix.mapping.get(field);
                if (have && have !== 'object')
                    return `failed to parse field [${field}] of type [${have}]: an object was given`;
                ix.mapping.set(field, 'object');
                const inner = checkMapping(ix, x, field + '.');
                if (inner) return inner;
                continue;
            }
            const have = ix.mapping.get(field);
            if (!have) {
                ix.mapping.set(field, t);
                continue;
            }
            const numeric = have === 'long' || have === 'float';
            const ok = have === t || (numeric && (t === 'long' || t === 'float' ||
                (t === 'text' && x.trim() !== '' && !isNaN(Number(x))))) ||
                (have === 'text' && t !== 'object') || (have === 'boolean' && (x === 'true' || x === 'false'));
            if (!ok)
                return `failed to parse field [${field}] of type [${have}] in document`;
        }
    }
    return null;
}

// Elasticsearch's response filtering (the filter_path query parameter, "Common options" in its
// REST docs): comma-separated dotted paths; * in a name matches any characters, a ** segment any
// number of levels; arrays are transparent. Only what a path reaches is kept, objects and arrays
// left empty are dropped. Returns the paths as lists of matchers, or null without a filter.
function compileFilter(spec) {
    if (spec === null || spec === undefined) return null;
    const esc = t => t.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    return spec.split(',').map(x => x.trim()).filter(Boolean)
        .map(p => p.split('.').map(seg => seg === '**' ? '**' : new RegExp('^' + seg.split('*').map(esc).join('.*') + '$')));
}

// The paths left after a key k: ** consumes k (and stays) or matches no level.
function stepFilter(p, k) {
    if (p.length === 0) return [];
    if (p[0] === '**') return [p].concat(stepFilter(p.slice(1), k));
    return p[0].test(k) ? [p.slice(1)] : [];
}

function applyFilter(v, paths) {
    if (paths.some(p => p.length === 0 || (p.length === 1 && p[0] === '**'))) return v;
    if (Array.isArray(v)) {
        const out = v.map(x => applyFilter(x, paths)).filter(x => x !== undefined);
        return out.length ? out : undefined;
    }
    if (v === null || typeof v !== 'object') return undefined;
    const out = {};
    let any = false;
    for (const [k, x] of Object.entries(v)) {
        const next = [].concat(...paths.map(p => stepFilter(p, k)));
        if (next.length === 0) continue;
        const y = applyFilter(x, next);
        if (y !== undefined) {
            out[k] = y;
            any = true;
        }
    }
    return any ? out : undefined;
}

// Placeholders in the fast mode's item template.
const INDEX_MARK = JSON.stringify('\u0001I'), ID_MARK = JSON.stringify('\u0001D'), SEQ_MARK = 987654321987654;

// The line of buf starting at pos: [start, end without its "\r\n" or "\n", start of the next].
function lineAt(buf, pos) {
    let nl = buf.indexOf(10, pos);
    if (nl < 0) nl = buf.length;
    const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
    return [pos, end, nl + 1];
}

// An action/metadata line (line index i, 0-based) as {action, index, id, line}, or {error}.
function actionOf(text, i, urlIndex) {
    const bad = (type, reason) => ({error: esError(type, reason, 400)});
    let a;
    try { a = JSON.parse(text); } catch (e) {
        return bad('x_content_parse_exception', `[${i + 1}:1] Malformed action/metadata line [${i + 1}]: ${e.message}`);
    }
    if (typeof a !== 'object' || a === null || Array.isArray(a) || Object.keys(a).length !== 1)
        return bad('illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected a simple value for field [...] but found [START_OBJECT]`);
    const action = Object.keys(a)[0], meta = a[action];
    if (!['index', 'create', 'delete', 'update'].includes(action))
        return bad('illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected field [create], [delete], [index] or [update] but found [${action}]`);
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta))
        return bad('illegal_argument_exception', `Malformed action/metadata line [${i + 1}], expected START_OBJECT`);
    for (const k of Object.keys(meta))
        if (!['_index', '_id', 'routing', 'pipeline', 'if_seq_no', 'if_primary_term', 'require_alias', 'version', 'version_type', 'dynamic_templates', 'retry_on_conflict', '_source'].includes(k))
            return bad('illegal_argument_exception', `Action/metadata line [${i + 1}] contains an unknown parameter [${k}]`);
    const ix = meta._index || urlIndex;
    if (!ix) return {error: esError('action_request_validation_exception', 'Validation Failed: 1: index is missing;', 400)};
    return {action, index: ix, id: meta._id === undefined ? null : String(meta._id), line: i + 1};
}

function bulk(req, res, urlIndex, raw, filter) {
    stats.requests++;
    stats.bytes += raw.length;
    if (!ctl.fast) {
        bodies.push(raw.toString('utf8'));
        if (bodies.length > 50) bodies.shift();
    }
    const ct = (req.headers['content-type'] || '').split(';')[0].trim();
    if (ct !== 'application/x-ndjson' && ct !== 'application/json')
        return send(res, 406, {error: `Content-Type header [${ct}] is not supported`, status: 406});
    if (ctl.fail_requests > 0) {
        ctl.fail_requests--;
        return send(res, ctl.status, esError(ctl.status === 429 ? 'es_rejected_execution_exception' : 'unavailable_shards_exception',
            'injected by the stand-in', ctl.status));
    }
    if (raw.length === 0) return send(res, 400, esError('action_request_validation_exception', 'Validation Failed: 1: no requests added;', 400));
    if (raw[raw.length - 1] !== 10)
        return send(res, 400, esError('illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]', 400));
    // The body's lines, found in the bytes: documents are decoded only when they are kept.
    const ops = [];
    const t0 = Date.now();
    for (let pos = 0, i = 0; pos < raw.length; i++) {
        const [from, to, next] = lineAt(raw, pos);
        pos = next;
        if (from === to) continue; // an empty line is skipped
        const op = actionOf(raw.toString('utf8', from, to), i, urlIndex);
        if (op.error) return send(res, 400, op.error);
        if (op.action !== 'delete') {
            if (pos >= raw.length)
                return send(res, 400, esError('illegal_argument_exception', `The bulk request's ${op.action} action on line [${i + 1}] has no source line`, 400));
            const [sf, st, sn] = lineAt(raw, pos);
            pos = sn;
            i++;
            if (!ctl.fast) op.source = raw.toString('utf8', sf, st);
        }
        ops.push(op);
    }
    if (ctl.fast) { // benchmarks: every document taken as it is, the answer built as text
        const items = filter ? [].concat(...filter.map(p => stepFilter(p, 'items'))) : null;
        const tmpl = new Map(); // action -> the item's text (filtered) with placeholders, or null
        const parts = [];
        for (const op of ops) {
            stats.docs += op.action === 'delete' ? 0 : 1;
            if (!tmpl.has(op.action)) {
                const it = {[op.action]: {_index: '\u0001I', _id: '\u0001D', _version: 1, result: 'created', _seq_no: SEQ_MARK,
                    _primary_term: 1, status: 201}};
                const f = items ? (items.length ? applyFilter(it, items) : undefined) : it;
                tmpl.set(op.action, f === undefined ? null : JSON.stringify(f));
            }
            const t = tmpl.get(op.action), seq = seqNo++;
            if (t !== null)
                parts.push(t.replace(INDEX_MARK, () => JSON.stringify(op.index)).replace(ID_MARK, () => JSON.stringify(op.id))
                    .replace(String(SEQ_MARK), () => String(seq)));
        }
        const head = {took: Date.now() - t0, errors: false};
        const top = JSON.stringify(filter ? applyFilter(head, filter) || {} : head).slice(1, -1);
        const fields = (top ? [top] : []).concat(!filter || parts.length ? [`"items":[${parts.join(',')}]`] : []);
        const text = `{${fields.join(',')}}`;
        res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text)});
        return res.end(text);
    }
    let errors = false;
    const items = ops.map(op => {
        const r = {_index: op.index, _id: op.id};
        const ix = index(op.index);
        const fail = (status, type, reason) => {
            errors = true;
            r.status = status;
            r.error = {type, reason, index: op.index};
            return {[op.action]: r};
        };
        if ((op.action === 'index' || op.action === 'create') && ctl.fail_items > 0) {
            ctl.fail_items--;
            return fail(ctl.item_status, ctl.item_status === 429 ? 'es_rejected_execution_exception' : 'unavailable_shards_exception',
                'rejected by the stand-in (injected)');
        }
        if (op.action === 'delete') {
            const had = op.id !== null && ix.docs.delete(op.id);
            Object.assign(r, {_version: 1, result: had ? 'deleted' : 'not_found', _shards: {total: 2, successful: 1, failed: 0},
                _seq_no: seqNo++, _primary_term: 1, status: had ? 200 : 404});
            return {delete: r};
        }
        let src;
        try { src = JSON.parse(op.source); } catch (e) {
            return fail(400, 'mapper_parsing_exception', 'failed to parse: ' + e.message);
        }
        if (op.action === 'update') {
            const have = op.id !== null && ix.docs.get(op.id);
            if (!have) return fail(404, 'document_missing_exception', `[${op.id}]: document missing`);
            src = Object.assign({}, have.source, src.doc || {});
        }
        if (typeof src !== 'object' || src === null || Array.isArray(src))
            return fail(400, 'mapper_parsing_exception', 'failed to parse: the source is not a JSON object');
        const bad = checkMapping(ix, src, '');
        if (bad) return fail(400, 'mapper_parsing_exception', bad);
        if (op.id === null) op.id = r._id = 'auto-' + (++autoId);
        const prev = ix.docs.get(op.id);
        if (prev && op.action === 'create')
            return fail(409, 'version_conflict_engine_exception', `[${op.id}]: version conflict, document already exists (current version [${prev.version}])`);
        const version = prev ? prev.version + 1 : 1;
        ix.docs.set(op.id, {source: src, version});
        stats.docs++;
        Object.assign(r, {_version: version, result: prev ? 'updated' : 'created', _shards: {total: 2, successful: 1, failed: 0},
            _seq_no: seqNo++, _primary_term: 1, status: prev ? 200 : 201});
        return {[op.action]: r};
    });
    const answer = {took: Date.now() - t0, errors, items};
    send(res, 200, filter ? applyFilter(answer, filter) || {} : answer);
}

const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0, over = false;
    req.on('data', c => {
        size += c.length;
        if (size > ctl.max_body) over = true;
        else chunks.push(c);
    });
    req.on('end', () => {
        const url = new URL(req.url, 'http://x');
        const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
        if (url.pathname.startsWith('/_standin/')) {
            if (parts[1] === 'control' && req.method === 'POST') {
                Object.assign(ctl, JSON.parse(Buffer.concat(chunks).toString() || '{}'));
                return send(res, 200, ctl);
            }
            if (parts[1] === 'stats') {
                const u = process.cpuUsage();
                return send(res, 200, Object.assign({cpu_s: (u.user + u.system) / 1e6}, stats));
            }
            if (parts[1] === 'bodies') return send(res, 200, bodies);
            return send(res, 404, {});
        }
        if (auth && req.headers.authorization !== auth)
            return send(res, 401, esError('security_exception', 'unable to authenticate user for REST request [' + url.pathname + ']', 401));
        if (over) return send(res, 413, undefined); // Elasticsearch's http.max_content_length
        const raw = Buffer.concat(chunks);
        if (req.method === 'GET' && parts.length === 0)
            return send(res, 200, {name: 'es-standin', cluster_name: 'standin', version: {number: '8.15.0', distribution: 'stand-in'},
                tagline: 'You Know, for Search (a stand-in)'});
        if (req.method === 'POST' && parts[parts.length - 1] === '_bulk') stats.last_bulk = req.url;
        if (req.method === 'POST' && parts.length === 1 && parts[0] === '_bulk') return bulk(req, res, null, raw, compileFilter(url.searchParams.get('filter_path')));
        if (req.method === 'POST' && parts.length === 2 && parts[1] === '_bulk') return bulk(req, res, parts[0], raw, compileFilter(url.searchParams.get('filter_path')));
        if (req.method === 'GET' && parts.length === 2 && parts[1] === '_count') {
            const ix = indices.get(parts[0]);
            if (!ix) return send(res, 404, esError('index_not_found_exception', `no such index [${parts[0]}]`, 404));
            return send(res, 200, {count: ix.docs.size, _shards: {total: 1, successful: 1, skipped: 0, failed: 0}});
        }
        if (req.method === 'GET' && parts.length === 3 && parts[1] === '_doc') {
            const d = indices.get(parts[0]) && indices.get(parts[0]).docs.get(parts[2]);
            if (!d) return send(res, 404, {_index: parts[0], _id: parts[2], found: false});
            return send(res, 200, {_index: parts[0], _id: parts[2], _version: d.version, found: true, _source: d.source});
        }
        send(res, 405, esError('illegal_argument_exception', `no handler for ${req.method} ${url.pathname}`, 405));
    });
});
server.keepAliveTimeout = 30000;
server.listen(port, '127.0.0.1', () => console.log('LISTENING ' + server.address().port));
