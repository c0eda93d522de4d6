// verify.js - SendGrid's own verifier (@sendgrid/eventwebhook) on lines of
// "PUBLIC_KEY<TAB>TIMESTAMP<TAB>SIGNATURE<TAB>BODY_FILE" from stdin; prints
// "true" or "false" for each line.  Run with NODE_PATH pointing at the
// node_modules npm installed from package.json here.
'use strict';
const fs = require('fs');
const { EventWebhook } = require('@sendgrid/eventwebhook');
const ew = new EventWebhook();
const lines = fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length);
for (const line of lines) {
  const [key, ts, sig, file] = line.split('\t');
  let ok = false;
  try {
    ok = ew.verifySignature(ew.convertPublicKeyToECDSA(key), fs.readFileSync(file), sig, ts);
  } catch (e) {
    ok = false;
  }
  console.log(ok ? 'true' : 'false');
}
