#!/usr/bin/python3
"""Integration test of the object-storage sink's file formats: files made by the encoders
(build/tests/test_filefmt write, the same sl_ff_encode the connector calls) are read back by
readers nobody here wrote: DuckDB (read_json, read_csv, read_parquet, parquet_metadata), hyparquet
(+ hyparquet-compressors), avrocat and python3-avro, zcat / zstdcat / lz4cat, and a snappy framing
reader written here from the format description."""
import csv
import io
import json
import os
import random
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import sluicetest as st  # noqa: E402

t = st.Checks()
TOOL = os.path.join(st.ROOT, "build", "tests", "test_filefmt")
NODE_DIR = os.environ.get("SLUICE_NODE_DIR") or os.path.join(st.ROOT, "build", "node")
TMP = st.tmpdir("sluice-formats-")
if not t.ok(os.access(TOOL, os.X_OK), "encoder tool built (make build/tests/test_filefmt)"):
    t.done()


def write(cfg, records, strand="orders"):
    """The file the encoders make of records (payloads) with config cfg."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    p = subprocess.run([TOOL, "write", json.dumps(cfg), strand], input=lines, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("encoder failed: %s" % p.stderr.decode(errors="replace"))
    return p.stdout


def save(name, data):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------- readers

DUCK_JS = r"""
import { DuckDBInstance } from '@duckdb/node-api';
const queries = JSON.parse(process.argv[2]);
const inst = await DuckDBInstance.create(':memory:');
const c = await inst.connect();
const out = [];
for (const q of queries) {
  try {
    const r = await c.runAndReadAll(q);
    out.push({rows: JSON.parse(JSON.stringify(r.getRowObjectsJS(),
      (k, v) => typeof v === 'bigint' ? Number(v) : v))});
  } catch (e) { out.push({error: String(e)}); }
}
console.log(JSON.stringify(out));
"""

HYPAR_JS = r"""
import { parquetReadObjects, parquetMetadata } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { readFileSync } from 'fs';
const b = readFileSync(process.argv[2]);
const file = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const rows = await parquetReadObjects({ file, compressors });
const md = parquetMetadata(file);
console.log(JSON.stringify({rows, row_groups: md.row_groups.length},
  (k, v) => typeof v === 'bigint' ? Number(v) : v));
"""


def node_script(name, text):
    path = os.path.join(NODE_DIR, name)  # ESM resolves packages next to the script
    with open(path, "w") as f:
        f.write(text)
    return path


def duck(*queries):
    """Runs the queries in one DuckDB; a list of row lists (or {"error": ...})."""
    js = node_script("sluice_ff_duck.mjs", DUCK_JS)
    p = subprocess.run(["node", js, json.dumps(list(queries))], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("duckdb: %s" % p.stderr.decode(errors="replace")[-2000:])
    return [r.get("rows", r) for r in json.loads(p.stdout)]


def hyparquet(path):
    js = node_script("sluice_ff_hyparquet.mjs", HYPAR_JS)
    p = subprocess.run(["node", js, path], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("hyparquet: %s" % p.stderr.decode(errors="replace")[-2000:])
    return json.loads(p.stdout)


def crc32c(data):
    poly, crc = 0x82F63B78, 0xFFFFFFFF
    table = crc32c.table
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _table():
    t_ = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t_.append(c)
    return t_


crc32c.table = _table()


def snappy_raw(data):
    """Snappy block decompression (format_description.txt of google/snappy)."""
    n, shift, i = 0, 0, 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    out = bytearray()
    while i < len(data):
        tag = data[i]
        i += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                nb = ln - 59
                ln = int.from_bytes(data[i : i + nb], "little")
                i += nb
            ln += 1
            out += data[i : i + ln]
            i += ln
            continue
        if kind == 1:
            ln = ((tag >> 2) & 7) + 4
            off = ((tag >> 5) << 8) | data[i]
            i += 1
        elif kind == 2:
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[i : i + 2], "little")
            i += 2
        else:
            ln = (tag >> 2) + 1
            off = int.from_bytes(data[i : i + 4], "little")
            i += 4
        for _ in range(ln):
            out.append(out[-off])
    if len(out) != n:
        raise ValueError("snappy: length %d, header says %d" % (len(out), n))
    return bytes(out)


def unsnappy_framed(data):
    if data[:10] != b"\xff\x06\x00\x00sNaPpY":
        raise ValueError("no snappy stream identifier")
    i, out = 10, bytearray()
    while i < len(data):
        kind, ln = data[i], int.from_bytes(data[i + 1 : i + 4], "little")
        body = data[i + 4 : i + 4 + ln]
        i += 4 + ln
        if kind in (0, 1):
            masked = struct.unpack("<I", body[:4])[0]
            chunk = snappy_raw(body[4:]) if kind == 0 else body[4:]
            if kind == 0:
                import snappy  # python3-snappy (Google's libsnappy) decodes the same block
                if snappy.decompress(bytes(body[4:])) != chunk:
                    raise ValueError("snappy: libsnappy and the test's reader disagree")
            c = crc32c(chunk)
            if masked != ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF):
                raise ValueError("snappy: bad chunk checksum")
            if len(chunk) > 65536:
                raise ValueError("snappy: chunk over 64 KiB")
            out += chunk
        elif kind < 0x80:
            raise ValueError("snappy: unskippable chunk %d" % kind)
    return bytes(out)


def decompress(codec, data):
    if codec == "none":
        return data
    if codec == "snappy":
        # Debian's python3-snappy cannot read the framing format on Python 3.11 (its CRC helper
        # fails with PY_SSIZE_T_CLEAN): the framing is read here, each block also by libsnappy
        return unsnappy_framed(data)
    cmd = {"gzip": ["zcat"], "zstd": ["zstdcat"], "lz4": ["lz4cat"], "brotli": ["brotli", "-dc"]}[codec]
    p = subprocess.run(cmd, input=data, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("%s: %s" % (cmd[0], p.stderr.decode(errors="replace")))
    return p.stdout


# ---------------------------------------------------------------- data


def mixed(n, seed=7):
    """Records with every case the formats must carry: type promotion (int+float, int+string),
    nulls and missing keys, a column null everywhere, unicode, nested values, large strings."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        r = {
            "id": i,
            "name": rnd.choice(["Alice", "Bob", "Zoë", "李雷", 'say "hi"', "a,b", "two\nlines"]),
            "price": (i * 3 if i % 3 else i + 0.25),
            "code": (i if i % 5 else "c%d" % i),
            "active": i % 2 == 0,
            "always_null": None,
        }
        if i % 4 == 0:
            r["meta"] = {"k": [i, "x"], "deep": {"u": "é"}}
        if i % 7 == 0:
            r["maybe"] = None
        elif i % 7 != 3:
            r["maybe"] = "m%d" % (i % 10)
        if i % 50 == 1:
            r["big"] = "€" * 20000 + str(i)
        out.append(r)
    return out


def compact(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def text_of(v):
    """A value as Sluice writes it in CSV (JSON text for everything but strings)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return compact(v)


def with_meta(records, strand="orders"):
    out = []
    for i, r in enumerate(records):
        m = dict(r)
        m.update({"_record_hash": hash_of(i + 1), "_seq": i + 1, "_timestamp_ms": 1700000000000 + i,
                  "_strand": strand})
        out.append(m)
    return out


def hash_of(seq):  # the record hash the tool stamps on record seq
    return bytes((7 * k + seq) & 0xFF for k in range(32)).hex()
CODECS = ["none", "gzip", "zstd", "snappy", "lz4", "brotli"]
EXT = {"none": "", "gzip": ".gz", "zstd": ".zst", "snappy": ".snappy", "lz4": ".lz4", "brotli": ".br"}

# ---------------------------------------------------------------- JSONL / JSON x compression

recs = mixed(300)
want = with_meta(recs)
for codec in CODECS:
    with t.section("jsonl %s" % codec):
        data = write({"format": "jsonl", "compression": codec}, recs)
        plain = decompress(codec, data)
        got = [json.loads(line) for line in plain.decode().splitlines()]
        t.eq(got, want, "jsonl + %s: decompressed by an outside reader, every record back" % codec)
        if codec in ("gzip", "zstd"):  # DuckDB reads these compressions itself
            path = save("r.jsonl%s" % EXT[codec], data)
            [rows] = duck("select id, name, _seq from read_json('%s') order by id" % path)
            t.eq([(r["id"], r["name"], r["_seq"]) for r in rows],
                 [(r["id"], r["name"], r["_seq"]) for r in want],
                 "jsonl + %s: DuckDB read_json reads the file" % codec)

with t.section("json gzip"):
    data = write({"format": "json", "compression": "gzip", "include_metadata": False}, recs[:20])
    t.eq(json.loads(decompress("gzip", data)), recs[:20], "json + gzip: one array, records back")

with t.section("compression headers"):
    big = [{"line": "x" * 100, "i": i} for i in range(5000)]  # several snappy chunks, zstd slices
    raw = write({"format": "jsonl", "include_metadata": False}, big)
    for codec in CODECS[1:]:
        data = write({"format": "jsonl", "include_metadata": False, "compression": codec}, big)
        t.ok(decompress(codec, data) == raw and len(data) < len(raw) / 4,
             "%s of %d bytes: %d bytes, decodes to the same text" % (codec, len(raw), len(data)))
    z = save("big.jsonl.zst",
             write({"format": "jsonl", "include_metadata": False, "compression": "zstd"}, big))
    p = subprocess.run(["zstd", "-lv", z], capture_output=True)
    t.ok(b"Decompressed Size" in p.stdout + p.stderr and ("(%d B)" % len(raw)).encode() in p.stdout,
         "zstd frame carries the content size", p.stdout.decode(errors="replace"))

# ---------------------------------------------------------------- CSV


def csv_expect(records, cols, null="NULL"):
    rows = [cols]
    for r in records:
        rows.append([null if r.get(c) is None else text_of(r[c]) for c in cols])
    return rows


for codec in CODECS:
    with t.section("csv %s" % codec):
        data = write({"format": "csv", "compression": codec}, recs)
        plain = decompress(codec, data).decode()
        got = list(csv.reader(io.StringIO(plain, newline="")))
        cols = sorted(set(k for r in want for k in r))
        t.eq(got, csv_expect(want, cols),
             "csv + %s: Python's csv module reads every field back (quotes, newlines)" % codec)
        if codec in ("none", "gzip", "zstd"):
            path = save("r.csv%s" % EXT[codec], data)
            [rows] = duck("select id, name, \"maybe\" from read_csv('%s', header=true, "
                          "nullstr='NULL', quote='\"', escape='\"') order by id" % path)
            t.eq([(r["id"], r["name"], r["maybe"]) for r in rows],
                 [(r["id"], r["name"], r.get("maybe")) for r in recs],
                 "csv + %s: DuckDB read_csv reads ids, unicode/quoted names, nulls" % codec)

with t.section("csv options"):
    cfg = {"format": "csv", "include_metadata": False,
           "csv": {"delimiter": "|", "include_header": True, "always_quote": True,
                   "line_ending": "crlf", "null_value": "", "columns": ["name", "id", "nope"]}}
    plain = write(cfg, recs[:30]).decode()
    t.ok(plain.count("\r\n") >= 30 and plain.startswith('"name"|"id"|"nope"\r\n'),
         "csv: explicit columns in order, always quoted, CRLF", plain[:80])
    got = list(csv.reader(io.StringIO(plain, newline=""), delimiter="|"))
    t.eq(got, [["name", "id", "nope"]] + [[r["name"], str(r["id"]), ""] for r in recs[:30]],
         "csv: '|' delimiter, a column absent from the batch is the null value")

# ---------------------------------------------------------------- Parquet


def parquet_expect(records):
    """The rows a Parquet reader gives back: promoted types (int+float -> float, int+str -> str),
    nested values as compact JSON text, missing keys as null."""
    cols = sorted(set(k for r in records for k in r))
    kinds = {c: set(type(r.get(c)).__name__ for r in records if r.get(c) is not None) for c in cols}
    out = []
    for r in records:
        row = {}
        for c in cols:
            v, k = r.get(c), kinds[c]
            if v is None:
                row[c] = None
            elif isinstance(v, (dict, list)):
                row[c] = compact(v)
            elif k <= {"int", "float"} and "float" in k:
                row[c] = float(v)
            elif len(k) > 1:
                row[c] = text_of(v)
            else:
                row[c] = v
        out.append(row)
    return out


PQ_CODECS = ["none", "snappy", "gzip", "zstd", "lz4", "brotli"]
pq_want = parquet_expect(want)
for codec in PQ_CODECS:
    with t.section("parquet %s" % codec):
        path = save("r-%s.parquet" % codec,
                    write({"format": "parquet", "parquet": {"compression": codec,
                                                            "row_group_size": 64}}, recs))
        rows, md = duck("select * from read_parquet('%s') order by _seq" % path,
                        "select row_group_id, path_in_schema, type, compression, stats_min_value, "
                        "stats_max_value, stats_null_count from parquet_metadata('%s')" % path)
        t.eq(rows, pq_want, "parquet + %s: DuckDB reads every row and type back" % codec)
        h = hyparquet(path)
        t.eq(h["rows"], pq_want, "parquet + %s: hyparquet reads every row back" % codec)
        t.eq(h["row_groups"], 5, "parquet + %s: 300 rows in row groups of 64 -> 5" % codec)
        want_codec = {"none": "UNCOMPRESSED", "lz4": "LZ4_RAW"}.get(codec, codec.upper())
        t.ok(md and all(m["compression"] == want_codec for m in md),
             "parquet + %s: every column chunk says %s" % (codec, want_codec), md[:2])
        if codec == "snappy":
            ids = [m for m in md if m["path_in_schema"] == "id"]
            t.eq([(m["stats_min_value"], m["stats_max_value"], m["stats_null_count"]) for m in ids],
                 [(str(g * 64), str(min(g * 64 + 63, 299)), 0) for g in range(5)],
                 "parquet statistics: min/max/null_count of id per row group")
            nul = [m for m in md if m["path_in_schema"] == "always_null"]
            t.ok(all(m["stats_null_count"] == (64 if m["row_group_id"] < 4 else 44)
                     and m["stats_min_value"] is None for m in nul),
                 "parquet statistics: a column null in every row counts its nulls", nul)
            names = [m for m in md if m["path_in_schema"] == "name"]
            t.ok(all(m["stats_min_value"] == min(r["name"] for r in recs[m["row_group_id"] * 64:
                                                                         m["row_group_id"] * 64 + 64])
                     for m in names), "parquet statistics: string min per row group", names[:2])

with t.section("parquet types"):
    path = save("types.parquet", write({"format": "parquet", "include_metadata": False}, recs))
    [schema] = duck("select column_name, column_type from (describe select * from '%s')" % path)
    t.eq({r["column_name"]: r["column_type"] for r in schema},
         {"active": "BOOLEAN", "always_null": "VARCHAR", "big": "VARCHAR", "code": "VARCHAR",
          "id": "BIGINT", "maybe": "VARCHAR", "meta": "VARCHAR", "name": "VARCHAR",
          "price": "DOUBLE"},
         "parquet schema: promoted and inferred types as DuckDB sees them")

with t.section("parquet types that change between row groups"):
    # each row group is first written with the types of its own rows; the chunks that differ
    # from the batch's schema (found once every row group is written) are written again
    drift = []
    for i in range(50):
        r = {"n": i if i < 20 else i + 0.5,            # integers, then doubles
             "s": i if i < 40 else "s%d" % i,          # integers, then strings
             "b": (i % 2 == 0) if i < 10 else i,       # booleans, then integers -> strings
             "q": None if i == 33 else i}              # null in one row group only
        if i >= 45:
            r["late"] = {"i": i}                       # only in the last row group
        if i % 7 == 0:
            r["_seq"] = [i, "payload"]                 # same name as a metadata column
        drift.append(r)
    plain = [{k: v for k, v in r.items() if k != "_seq"} for r in drift]
    for meta in (False, True):
        path = save("drift-%s.parquet" % meta,
                    write({"format": "parquet", "include_metadata": meta,
                           "parquet": {"row_group_size": 10}}, drift if meta else plain))
        cols = "b, late, n, q, s" + (", _seq" if meta else "")
        rows, = duck("select %s from read_parquet('%s') order by n" % (cols, path))
        want_rows = parquet_expect(plain)
        for k, r in enumerate(want_rows):
            if meta:
                r["_seq"] = k + 1  # the metadata value, not the payload's
        t.eq(rows, want_rows, "parquet (metadata %s): types promoted across row groups" % meta)
        h = [{c: r[c] for c in want_rows[0]} for r in hyparquet(path)["rows"]]
        t.eq(h, want_rows, "parquet (metadata %s): hyparquet reads the rewritten chunks" % meta)

with t.section("parquet size and row groups"):
    many = [{"id": i, "city": ["Berlin", "Paris", "Tokyo"][i % 3], "v": i * 0.5,
             "flag": i % 3 == 0, "opt": None if i % 5 else "x%d" % (i % 17)} for i in range(100000)]
    sizes = {}
    for codec in ("none", "snappy"):
        path = save("many-%s.parquet" % codec,
                    write({"format": "parquet", "parquet": {"compression": codec,
                                                            "row_group_size": 30000}}, many))
        sizes[codec] = os.path.getsize(path)
        agg, rg = duck("select count(*)::INT n, sum(id)::BIGINT s, count(opt)::INT o, "
                       "sum(v) v, count(*) filter (where flag)::INT f, "
                       "count(distinct city)::INT c from '%s'" % path,
                       "select count(distinct row_group_id)::INT g from parquet_metadata('%s')" % path)
        t.eq(agg[0], {"n": 100000, "s": sum(range(100000)), "o": 20000,
                      "v": sum(i * 0.5 for i in range(100000)), "f": 33334, "c": 3},
             "100k rows (%s): DuckDB aggregates match" % codec)
        t.eq(rg[0]["g"], 4, "100k rows in row groups of 30000 -> 4 row groups")
    h = hyparquet(os.path.join(TMP, "many-snappy.parquet"))
    last = {k: v for k, v in h["rows"][-1].items() if not k.startswith("_")} if h["rows"] else None
    t.ok(len(h["rows"]) == 100000 and last == many[-1] and h["rows"][-1]["_seq"] == 100000,
         "hyparquet reads the 100k-row snappy file", last)
    t.ok(sizes["snappy"] < sizes["none"] * 0.8, "snappy Parquet is smaller than uncompressed (%r)" % sizes)

with t.section("codecs a format does not take"):
    for cfg, field in (({"format": "avro", "avro": {"compression": "brotli"}}, b"avro.compression"),
                       ({"format": "jsonl", "compression": "deflate"}, b"config.compression")):
        p = subprocess.run([TOOL, "write", json.dumps(cfg)], input=b'{"a":1}\n', capture_output=True)
        t.ok(p.returncode != 0 and field in p.stderr, "%s: a clear error naming %s" % (cfg, field.decode()),
             p.stderr)

# ---------------------------------------------------------------- Avro


def py_avro(data):
    import avro.datafile
    import avro.io
    r = avro.datafile.DataFileReader(io.BytesIO(data), avro.io.DatumReader())
    return json.loads(r.meta["avro.schema"].decode()), r.meta.get("avro.codec", b"null"), list(r)


def avrocat(data):
    path = save("cat.avro", data)
    p = subprocess.run(["avrocat", path], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError("avrocat: %s" % p.stderr.decode(errors="replace"))
    out = []
    for line in p.stdout.decode().splitlines():
        row = json.loads(line)  # avrocat shows union values as {"type": value}
        out.append({k: (list(v.values())[0] if isinstance(v, dict) else v) for k, v in row.items()})
    return out


av_want = parquet_expect(want)  # the same promotion and nested-as-JSON rules
for codec in ["none", "deflate", "snappy"]:
    with t.section("avro %s" % codec):
        data = write({"format": "avro", "avro": {"compression": codec}}, recs)
        t.eq(data[:4], b"Obj\x01", "avro %s: an object container file" % codec)
        t.eq(avrocat(data), av_want, "avro %s: avrocat (avro-c) reads every record back" % codec)
        # python3-avro reads snappy through python3-snappy
        schema, got_codec, rows = py_avro(data)
        t.eq(rows, av_want, "avro %s: python3-avro reads every record back" % codec)
        t.eq(got_codec, {"none": b"null"}.get(codec, codec.encode()), "avro codec in header")
        def norm(ty):  # avro-c writes primitive types as {"type": "long"}
            if isinstance(ty, list):
                return [norm(x) for x in ty]
            return ty["type"] if isinstance(ty, dict) and list(ty) == ["type"] else ty
        fields = {f["name"]: norm(f["type"]) for f in schema["fields"]}
        t.eq((schema["name"], schema.get("namespace")), ("Event", "sluice.events"),
             "avro: record Event in namespace sluice.events by default")
        t.eq([f["name"] for f in schema["fields"]], sorted(fields), "avro: fields sorted by name")
        t.eq((fields["id"], fields["price"], fields["code"], fields["maybe"], fields["always_null"]),
             ("long", "double", "string", ["null", "string"], "null"),
             "avro inferred types: long, promoted double/string, nullable union, null")

with t.section("avro given schema and wire format"):
    schema = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "id", "type": "int"}, {"name": "name", "type": "string"},
        {"name": "price", "type": "float"}, {"name": "note", "type": ["null", "string"]},
        {"name": "code", "type": "string"}]}
    cfg = {"format": "avro", "include_metadata": False,
           "avro": {"schema": json.dumps(schema), "wire_format": True, "schema_id": 4242}}
    data = write(cfg, recs[:50])
    t.eq(data[:5], b"\x00\x00\x00\x10\x92", "wire_format: magic byte 0 + schema id 4242 big-endian")
    got_schema, _, rows = py_avro(data[5:])
    t.eq((got_schema["name"], got_schema["namespace"]), ("Order", "shop"), "the given schema is used")
    t.eq(rows, [{"id": r["id"], "name": r["name"], "price": float(r["price"]), "note": None,
                 "code": text_of(r["code"])} for r in recs[:50]],
         "given schema: int, string, float, a missing nullable field, numbers as text in string")
    bad = {"format": "avro", "avro": {"schema": json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "name", "type": "long"}]})}}
    p = subprocess.run([TOOL, "write", json.dumps(bad)], input=b'{"name":"x"}\n', capture_output=True)
    t.ok(p.returncode != 0 and b"field name" in p.stderr, "a value that does not fit: error naming "
         "the field", p.stderr)
    p = subprocess.run([TOOL, "write", json.dumps({"format": "avro", "include_metadata": False})],
                       input=b'{"a-b":1,"1x":2,"\xc3\xa9":3}\n', capture_output=True)
    _, _, rows = py_avro(p.stdout)
    t.eq(rows, [{"_1x": 2, "a_b": 1, "__": 3}], "column names made valid Avro names")

t.done()
