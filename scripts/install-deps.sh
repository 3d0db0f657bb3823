#!/usr/bin/env bash
# The one list of every Debian package (and npm package) Sluice needs to build, test and benchmark.
# Idempotent: installs only what is missing. Run as root on Debian 12.
set -euo pipefail

DEBS=(
  # build
  build-essential pkg-config clang libclang-rt-14-dev clang-format
  # libraries linked by sluice
  libmicrohttpd-dev libgnutls28-dev libjansson-dev libyaml-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
  libpq-dev libavro-dev zlib1g-dev libzstd-dev liblz4-dev libsnappy-dev
  librdkafka-dev # Kafka source and sink; its rdkafka_mock.h is the tests' Kafka cluster
  libbrotli-dev # brotli: Parquet pages and whole-file .br (object_storage)
  # test and benchmark tools
  curl python3 python3-msgpack python3-prometheus-client wrk postgresql-15 postgresql-client-15 postgresql-contrib
  avro-bin python3-avro python3-snappy zstd lz4 gzip brotli
  kcat # the Kafka client on the other side of the Kafka tests and bench/kafka.sh
  redis-server redis-tools # bench/ingest.sh's Redis 7 XADD peer (appendfsync always) and redis-benchmark
  mosquitto mosquitto-clients openssl # the MQTT broker and clients of the MQTT tests and bench/mqtt.sh; openssl makes their test CA
  libmariadb-dev mariadb-server mariadb-client # mysql-cdc: binlog client library; the tests' and bench/mysql_cdc.sh's server
  # the Python clients (clients/python) and their test (the seeds' health example uses psutil)
  python3-httpx python3-pydantic python3-psutil
  # independent checks of Merkle proofs and signed checkpoints (tests/integration/test_proofs.py)
  golang-go golang-golang-x-mod-dev python3-cryptography
  # the OpenAPI test reads docs/openapi.yaml (tests/integration/test_openapi.py)
  python3-yaml
  # the web console's browser test (tests/integration/test_console.py)
  chromium
  # the ClickHouse sink's peer (tests/peers/clickhouse.py, bench/sinks.sh): server and client 18.16
  clickhouse-server clickhouse-client
)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Never let package scripts start services (PostgreSQL) on this machine: tests start their own.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; }
  echo "install-deps: installing ${missing[*]}" >&2
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi

# ---- npm: test peers that exist only as npm packages, installed into build/ (git-ignored).
# Uses the node/npm already on PATH; installs Debian's nodejs + npm only when node is missing
# (never both npm flavours: NodeSource's nodejs conflicts with Debian's npm package).
NPMS=(
  @20minutes/s3rver@4.0.4 # fake S3 that verifies SigV4 (tests/peers/s3rver.sh)
  @duckdb/node-api@1.5.6-r.1 # independent reader of our Parquet/JSON/CSV files, and bench peer
  hyparquet@1.31.5 # second independent Parquet reader
  hyparquet-compressors@1.1.2 # its codecs (gzip, zstd, lz4, brotli) beyond snappy
  pg@8.23.1 # PostgreSQL client of the Supabase (PostgREST) stand-in, tests/peers/supabase_standin.cjs
  azurite@3.37.0 # Microsoft's Azure Storage emulator: object_storage provider azure (test_azure.py)
  @azure/storage-blob@12.34.0 # the official Azure client: lists and reads what the azure provider wrote
  @google-cloud/storage@8.4.0 # the official GCS client: the request shapes the gcs provider must match
  @redocly/cli@2.77.0 # lints docs/openapi.yaml (tests/integration/test_openapi.py)
  puppeteer-core@25.16.0 # drives Debian's chromium through the web console (tests/integration/test_console.py)
  ajv@8.20.0 # validates real answers against the OpenAPI schemas (JSON Schema 2020-12)
  @elastic/elasticsearch@9.5.1 # the official client: its serializer re-encodes our _bulk bodies (test_elasticsearch.py)
)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODE_DIR=${SLUICE_NODE_DIR:-$ROOT/build/node}

node_debs=()
command -v node >/dev/null || node_debs=(nodejs npm)
[ ${#node_debs[@]} -gt 0 ] || command -v npm >/dev/null || node_debs=(npm)
if [ ${#node_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${node_debs[*]} (run as root to install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "install-deps: installing ${node_debs[*]}" >&2
  [ ${#missing[@]} -gt 0 ] || apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${node_debs[@]}" >/dev/null
fi

npm_installed() { # name@version: is exactly that version in NODE_DIR?
  local name=${1%@*} version=${1##*@}
  grep -E "\"version\": *\"$version\"" "$NODE_DIR/node_modules/$name/package.json" >/dev/null 2>&1
}
npm_missing=()
for p in "${NPMS[@]}"; do
  npm_installed "$p" || npm_missing+=("$p")
done
if [ ${#npm_missing[@]} -gt 0 ]; then
  echo "install-deps: npm install ${npm_missing[*]} into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  (
    flock -w 300 9 # the same lock as tests/peers/s3rver.sh, which installs on first use
    cd "$NODE_DIR"
    [ -f package.json ] || echo '{"name":"sluice-test-peers","version":"0.0.0","private":true}' >package.json
    if ! npm install --no-audit --no-fund --prefer-offline --loglevel=error --fetch-retries=2 \
      --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=4000 --fetch-timeout=60000 \
      "${npm_missing[@]}" </dev/null >npm-install.log 2>&1; then
      echo "install-deps: npm install failed (is the npm registry reachable?); see $NODE_DIR/npm-install.log:" >&2
      grep -v '^npm error  *at ' npm-install.log | head -n 5 >&2
      exit 1
    fi
  ) 9>>"$NODE_DIR/.install.lock"
fi
