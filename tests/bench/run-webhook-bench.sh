#!/bin/sh
# run-webhook-bench - the event webhook's bar: EVENTS (100,000) queued
#   events of one tenant delivered by sgwebhook to a receiver on loopback
#   at least at 20,000 events/s.  The receiver is tests/integration/
#   webhook_peer/receiver.js: every batch's signature checked by SendGrid's
#   own verifier (@sendgrid/eventwebhook, installed from the npm registry)
#   and its events written to a file, as an application would.
# What is timed: from sgwebhook's start (the events already in the log,
#   recorded by event_feed; the webhook set before them) until the receiver
#   has stored all EVENTS (counted by lines; each checked once at the end:
#   every sg_event_id, none twice).  Batches of BATCH (1000) events.
# Usage: tests/bench/run-webhook-bench.sh (SGWEBHOOK, SGADMIN, EVENT_FEED:
#   the built programs under SG_TOP_BUILDDIR or the top directory; nodejs
#   and npm; everything in one mktemp -d directory, removed on exit)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${SG_TOP_BUILDDIR:-$top}
SGWEBHOOK=${SGWEBHOOK:-$B/webhook/sgwebhook}
SGADMIN=${SGADMIN:-$B/sgadmin/sgadmin}
EVENT_FEED=${EVENT_FEED:-$B/tests/integration/event_feed}
EVENTS=${EVENTS:-100000}
BATCH=${BATCH:-1000}
PY=/usr/bin/python3
work=$(mktemp -d "${TMPDIR:-/tmp}/sg-webhook-bench-XXXXXX")
RPID=
WPID=
trap '[ -z "$RPID" ] || kill "$RPID" 2>/dev/null; [ -z "$WPID" ] || kill "$WPID" 2>/dev/null; rm -rf "$work"' EXIT INT TERM
echo "# bench: event webhook, $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), node $(node --version)"
mkdir -p "$work/peer" "$work/store"
cp "$top/tests/integration/webhook_peer/package.json" "$work/peer/"
(cd "$work/peer" && npm install --no-audit --no-fund --silent >/dev/null 2>&1) || { echo "npm install failed" >&2; exit 1; }
cat >"$work/c.conf" <<EOC
store = { path = "$work/store"; };
secrets = { webhook_key_file = "$work/webhook.key"; };
webhook = { batch_size = $BATCH; batch_age = "1s"; pid_file = ""; };
EOC
KEY=$("$SGADMIN" -c "$work/c.conf" --json webhook key | $PY -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
NODE_PATH="$work/peer/node_modules" node "$top/tests/integration/webhook_peer/receiver.js" "$PORT" "$KEY" "$work/got.jsonl" "$work/control" >"$work/receiver.log" 2>&1 &
RPID=$!
while [ ! -f "$work/got.jsonl.ready" ]; do sleep 0.1; done
"$SGADMIN" -c "$work/c.conf" --tenant acme webhook set "http://127.0.0.1:$PORT/events" >/dev/null
$PY - "$EVENTS" >"$work/feed.jsonl" <<'PY'
import json, sys, time
now = int(time.time())
for i in range(int(sys.argv[1])):
    print(json.dumps({"event": ["processed", "delivered", "open", "click"][i % 4],
                      "email": f"u{i}@example{i % 40}.org", "tenant": "acme", "timestamp": now,
                      "sg_message_id": f"M{i // 7}", "sent": now, "category": ["news"],
                      "user_id": str(i)}))
PY
"$EVENT_FEED" "$work/store" <"$work/feed.jsonl" >/dev/null
echo "# queued: $EVENTS events, event log $(du -sh "$work/store/events" | cut -f1)"
t0=$(date +%s%N)
"$SGWEBHOOK" -c "$work/c.conf" -f >"$work/sgwebhook.log" 2>&1 &
WPID=$!
while [ "$( { wc -l <"$work/got.jsonl"; } 2>/dev/null || echo 0)" -lt "$EVENTS" ]; do
    kill -0 "$WPID" 2>/dev/null || { echo "sgwebhook died: $(cat "$work/sgwebhook.log")" >&2; exit 1; }
    sleep 0.05
done
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check=$($PY -c 'import json,sys; ids=[json.loads(l)["sg_event_id"] for l in open(sys.argv[1])]; print(len(ids), len(set(ids)))' "$work/got.jsonl")
rate=$(awk -v n="$EVENTS" -v ms="$ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')
echo "run config=webhook events=$EVENTS batch=$BATCH ms=$ms events_per_s=$rate received_and_distinct=\"$check\" refused=$( { wc -l <"$work/got.jsonl.bad"; } 2>/dev/null || echo 0)"
v=PASS
[ "$rate" -ge 20000 ] || v=FAIL
echo "bar webhook_events_per_s>=20000 $v"
[ "$v" = PASS ]
