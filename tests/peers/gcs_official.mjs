// Google's own Node client (npm @google-cloud/storage) uploading one object to the GCS stand-in,
// so that a test can compare the requests it sends with Sluice's: a custom apiEndpoint makes it
// send no token (the stand-in is told to accept that).
//   node gcs_official.mjs ENDPOINT BUCKET NAME FILE CONTENT_TYPE resumable|media
import { Storage } from '@google-cloud/storage';
import { readFileSync } from 'fs';

const [endpoint, bucket, name, file, contentType, mode] = process.argv.slice(2);
const storage = new Storage({ apiEndpoint: endpoint, projectId: 'sluice-test' });
await storage.bucket(bucket).file(name).save(readFileSync(file), {
  resumable: mode === 'resumable', contentType, validation: false,
});
console.log(JSON.stringify({ uploaded: name }));
