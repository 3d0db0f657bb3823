#!/usr/bin/env bash
# The one list of every Debian package (and npm package) Sluice needs to build, test and benchmark.
# Idempotent: installs only what is missing. Run as root on Debian 12.
set -euo pipefail

DEBS=(
  # build
  build-essential pkg-config clang libclang-rt-14-dev clang-format
  # libraries linked by sluice
  libmicrohttpd-dev libjansson-dev libyaml-dev libsqlite3-dev libssl-dev
  # test and benchmark tools
  curl python3 python3-msgpack wrk postgresql-15 postgresql-client-15 postgresql-contrib
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
