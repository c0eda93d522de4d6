// receiver.js - an Event Webhook receiver as an application would run one:
// it checks each POST with SendGrid's own verifier (@sendgrid/eventwebhook)
// and the payload's shape, and appends every event it accepts to OUT, one
// JSON line each, with the batch it came in ("_batch").
//
//   node receiver.js PORT PUBLIC_KEY OUT [CONTROL]
//
// CONTROL, a file read at each request, says how to answer: "ok", "500",
// "slow MS" (answer after MS ms), "hang" (never answer), "401" (refuse).
// Refused or failing batches are not stored.  A request whose signature or
// shape is wrong gets 403 and is logged to OUT.bad.
'use strict';
const http = require('http');
const fs = require('fs');
const { EventWebhook, EventWebhookHeader } = require('@sendgrid/eventwebhook');
const [port, publicKey, out, control] = process.argv.slice(2);
const ew = new EventWebhook();
const key = ew.convertPublicKeyToECDSA(publicKey);
let batches = 0;
const REQUIRED = ['email', 'timestamp', 'event', 'sg_event_id'];

function mode() {
  try {
    return fs.readFileSync(control, 'utf8').trim() || 'ok';
  } catch (e) {
    return 'ok';
  }
}

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const sig = req.headers[EventWebhookHeader.SIGNATURE().toLowerCase()];
    const ts = req.headers[EventWebhookHeader.TIMESTAMP().toLowerCase()];
    let why = null;
    let events = null;
    try {
      if (!ew.verifySignature(key, body, sig || '', ts || '')) why = 'signature';
      events = JSON.parse(body.toString());
      if (!Array.isArray(events) || !events.length) why = why || 'not a non-empty array';
      for (const e of events || []) {
        for (const k of REQUIRED) if (!(k in e)) why = why || `no ${k}`;
        if ('tenant' in e) why = why || 'a tenant field';
      }
    } catch (e) {
      why = why || 'not JSON';
    }
    if (why) {
      fs.appendFileSync(out + '.bad', why + '\n');
      res.writeHead(403);
      return res.end();
    }
    const m = mode();
    if (m === 'hang') return;
    const answer = () => {
      if (m === '500' || m === '401') {
        res.writeHead(Number(m));
        return res.end();
      }
      batches++;
      fs.appendFileSync(out, events.map((e) => JSON.stringify(Object.assign({ _batch: batches }, e)) + '\n').join(''));
      res.writeHead(200);
      res.end();
    };
    if (m.startsWith('slow ')) setTimeout(answer, Number(m.slice(5)));
    else answer();
  });
}).listen(Number(port), '127.0.0.1', () => fs.writeFileSync(out + '.ready', String(process.pid)));
