// The official Azure Storage client (npm @azure/storage-blob) on the other side of the azure
// provider's tests: it creates containers, lists, reads and makes SAS tokens, so the blobs
// Sluice wrote are checked by a client nobody here wrote.
//
//   node azblob.mjs ENDPOINT ACCOUNT KEY create CONTAINER
//   node azblob.mjs ENDPOINT ACCOUNT KEY list CONTAINER [PREFIX]   -> [{name, size, contentType}]
//   node azblob.mjs ENDPOINT ACCOUNT KEY get CONTAINER NAME FILE    (downloads the blob into FILE)
//   node azblob.mjs ENDPOINT ACCOUNT KEY blocks CONTAINER NAME      -> {committed, uncommitted}
//   node azblob.mjs ENDPOINT ACCOUNT KEY sas CONTAINER [PERMS]      -> a container SAS (PERMS, default rwl; 1 h)
//
// ENDPOINT is the blob endpoint with the account in its path (Azurite's layout).
// Run from SLUICE_NODE_DIR (the test copies it there) so that the package resolves.
import {
  BlobServiceClient, StorageSharedKeyCredential, generateBlobSASQueryParameters,
  ContainerSASPermissions,
} from '@azure/storage-blob';
import { writeFileSync } from 'fs';

const [endpoint, account, key, cmd, container, arg, file] = process.argv.slice(2);
const cred = new StorageSharedKeyCredential(account, key);
const svc = new BlobServiceClient(endpoint, cred);
const c = svc.getContainerClient(container);
const out = (v) => console.log(JSON.stringify(v));

if (cmd === 'create') {
  await c.createIfNotExists();
  out({ created: container });
} else if (cmd === 'list') {
  const items = [];
  for await (const b of c.listBlobsFlat({ prefix: arg || undefined })) {
    items.push({ name: b.name, size: b.properties.contentLength, contentType: b.properties.contentType });
  }
  out(items);
} else if (cmd === 'get') {
  const buf = await c.getBlockBlobClient(arg).downloadToBuffer();
  writeFileSync(file, buf);
  out({ bytes: buf.length });
} else if (cmd === 'blocks') {
  const r = await c.getBlockBlobClient(arg).getBlockList('all');
  out({ committed: (r.committedBlocks || []).length, uncommitted: (r.uncommittedBlocks || []).length });
} else if (cmd === 'sas') {
  const sas = generateBlobSASQueryParameters({
    containerName: container, permissions: ContainerSASPermissions.parse(arg || 'rwl'),
    startsOn: new Date(Date.now() - 60000), expiresOn: new Date(Date.now() + 3600000),
  }, cred).toString();
  out({ sas });
} else {
  console.error('unknown command ' + cmd);
  process.exit(2);
}
