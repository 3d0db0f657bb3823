#!/usr/bin/env node
// s3rver-cli.js - launcher for the fake S3 server used by Sluice's tests (npm @20minutes/s3rver).
//
//   node tests/peers/s3rver-cli.js --dir DIR [--address 127.0.0.1] [--port 0] [--bucket NAME ...]
//
// Why our own launcher: the package's npm tarball declares bin/s3rver.js but does not ship it,
// its CLI hard-wires the credentials S3RVER/S3RVER and cannot report an ephemeral port, and its
// CLI library (commander 14) wants node >= 20 while Debian 12 ships node 18. This file uses the
// S3rver class directly and needs nothing but the package itself.
//
// - Credentials come from the environment, not argv (argv is visible in ps):
//   S3RVER_ACCESS_KEY / S3RVER_SECRET_KEY. Every other key, including the built-in S3RVER one,
//   is revoked, so a request signed with any other key or secret gets 403. (Like real s3rver,
//   requests without any Authorization header are still accepted: only signatures are checked.)
// - The package is looked up in SLUICE_NODE_DIR (or --node-dir), then next to this file.
// - When listening, prints one line "PORT <n>" on stdout. Request logs go to stderr unless
//   --silent. Exits 0 on SIGTERM/SIGINT after closing the listener (at most 2 s).
'use strict';

const path = require('path');

function usage(msg) {
  if (msg) process.stderr.write(`s3rver-cli: ${msg}\n`);
  process.stderr.write(
    'usage: node s3rver-cli.js --dir DIR [--address A] [--port N] [--bucket NAME]... ' +
      '[--node-dir D] [--silent]\n',
  );
  process.exit(2);
}

const opts = {
  dir: null,
  address: '127.0.0.1',
  port: 0,
  buckets: [],
  nodeDir: process.env.SLUICE_NODE_DIR || '',
  silent: false,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    return argv[++i];
  };
  switch (a) {
    case '--dir': case '-d': opts.dir = val(); break;
    case '--address': case '-a': opts.address = val(); break;
    case '--port': case '-p': opts.port = Number(val()); break;
    case '--bucket': opts.buckets.push(val()); break;
    case '--node-dir': opts.nodeDir = val(); break;
    case '--silent': opts.silent = true; break;
    case '--help': case '-h': usage(); break;
    default: usage(`unknown argument ${a}`);
  }
}
if (!opts.dir) usage('--dir is required');
if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('bad --port');

const accessKey = process.env.S3RVER_ACCESS_KEY || 'AKIAIOSFODNN7EXAMPLE';
const secretKey = process.env.S3RVER_SECRET_KEY || 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

// Resolve the package from the shared node dir first, then the usual lookup from this file.
const searchPaths = [opts.nodeDir, __dirname].filter(Boolean).map((p) => path.resolve(p));
function load(name) {
  let file;
  try {
    file = require.resolve(name, { paths: searchPaths });
  } catch (e) {
    process.stderr.write(
      `s3rver-cli: cannot find ${name} under ${searchPaths.join(', ')} ` +
        '(run scripts/install-deps.sh, or npm install @20minutes/s3rver@4.0.4 there)\n',
    );
    process.exit(3);
  }
  return require(file);
}
const S3rver = load('@20minutes/s3rver');
const AWSAccount = load('@20minutes/s3rver/lib/models/account');

// Replace the hard-wired S3RVER/S3RVER key pair with ours.
for (const id of [...AWSAccount.registry.keys()]) {
  AWSAccount.registry.get(id).revokeAccessKey(id);
}
AWSAccount.DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey);

const fs = require('fs');
fs.mkdirSync(opts.dir, { recursive: true });

const server = new S3rver({
  directory: opts.dir,
  address: opts.address,
  port: opts.port,
  silent: opts.silent,
  vhostBuckets: false, // path-style only: http://127.0.0.1:PORT/bucket/key
  configureBuckets: opts.buckets.map((name) => ({ name, configs: [] })),
});

let stopping = false;
function stop(sig) {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 2000).unref();
  server.close().then(
    () => process.exit(0),
    () => process.exit(0),
  );
  // close() waits for idle keep-alive sockets; drop them so a test's stop is quick.
  if (server.httpServer && server.httpServer.closeAllConnections) {
    server.httpServer.closeAllConnections();
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.run().then(
  (addr) => {
    process.stdout.write(`PORT ${addr.port}\n`);
  },
  (err) => {
    process.stderr.write(`s3rver-cli: cannot start: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
