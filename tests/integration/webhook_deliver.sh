#!/bin/sh
# webhook_deliver - sgwebhook delivering the event webhook to a receiver on
# loopback that checks every request with SendGrid's own verifier
# (receiver.js, @sendgrid/eventwebhook from npm), through faults: the
# receiver down for a while, answering 500, answering slowly, killed in the
# middle of a batch, and sgwebhook itself killed (SIGKILL) and started
# again.  Afterwards every event of the tenant has arrived at least once,
# duplicates only from a batch in flight, none of another tenant's, and
# sgadmin webhook status tells the position, the backlog and the last error;
# and another tenant's endpoint that hangs all along holds none of it up.
. "$(dirname "$0")/lib.sh"
command -v node >/dev/null && command -v npm >/dev/null || {
    [ "${CI:-}" = true ] && fail "needs nodejs and npm (tools/debian-setup installs them)"
    echo "webhook_deliver: SKIP (no nodejs or npm)"
    exit 77
}
PEER="$SG_TOP_SRCDIR/tests/integration/webhook_peer"
FEED="$SG_TOP_BUILDDIR/tests/integration/event_feed"
SGWEBHOOK="$SG_TOP_BUILDDIR/webhook/sgwebhook"
RPID=
R2PID=
WPID=
cleanup() {
    [ -z "$RPID" ] || kill -9 "$RPID" 2>/dev/null || true
    [ -z "$R2PID" ] || kill -9 "$R2PID" 2>/dev/null || true
    [ -z "$WPID" ] || kill -9 "$WPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/peer" "$STORE"
cp "$PEER/package.json" "$WORK/peer/"
(cd "$WORK/peer" && npm install --no-audit --no-fund --silent >"$WORK/npm.log" 2>&1) ||
    fail "npm install @sendgrid/eventwebhook failed: $(tail -5 "$WORK/npm.log")"
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOC
store = { path = "$STORE"; };
secrets = { webhook_key_file = "$WORK/webhook.key"; };
webhook = { batch_size = 200; batch_age = "1s"; timeout = "5s"; pid_file = ""; };
EOC
A="-c $CONF"
expect 0 $A --json webhook key
KEY=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$WORK/out")
PORT=$(free_port)
GOT="$WORK/got.jsonl"
CTL="$WORK/control"
echo ok >"$CTL"
start_receiver() {
    rm -f "$GOT.ready"
    NODE_PATH="$WORK/peer/node_modules" node "$PEER/receiver.js" "$PORT" "$KEY" "$GOT" "$CTL" \
        >>"$WORK/receiver.log" 2>&1 &
    RPID=$!
    wait_until 10 "the receiver" test -f "$GOT.ready"
}
start_sender() {
    "$SGWEBHOOK" -c "$CONF" -f >>"$WORK/sgwebhook.log" 2>&1 &
    WPID=$!
}
# feed N FIRST - N events from number FIRST on, two thirds of them acme's
feed() {
    $PY - "$1" "$2" >"$WORK/feed.jsonl" <<'PY'
import json, sys, time
n, first = int(sys.argv[1]), int(sys.argv[2])
now = int(time.time())
for i in range(first, first + n):
    t = "acme" if i % 3 else "beta"
    print(json.dumps({"event": ["processed", "delivered", "open", "click"][i % 4],
                      "email": f"u{i}@example.org", "tenant": t, "timestamp": now,
                      "sg_message_id": f"M{i // 7}", "sent": now, "category": ["news"],
                      "campaign": f"c{i}"}))
PY
    "$FEED" "$STORE" <"$WORK/feed.jsonl" >/dev/null || fail "event_feed failed"
}
# arrived - distinct acme events the receiver has
arrived() { $PY -c 'import json,sys; print(len({json.loads(l)["sg_event_id"] for l in open(sys.argv[1])}))' "$GOT" 2>/dev/null || echo 0; }
wanted=1 # the test event below
add_want() { wanted=$((wanted + $1 * 2 / 3)); }
until_arrived() { wait_until "$1" "$wanted events at the receiver (has $(arrived))" sh -c "[ \"\$($PY -c 'import json,sys; print(len({json.loads(l)[\"sg_event_id\"] for l in open(sys.argv[1])}))' '$GOT' 2>/dev/null || echo 0)\" -ge $wanted ]"; }

start_receiver
feed 30 0 # before the webhook is set: never sent (a new one starts at the log's end)
expect 0 $A --tenant acme webhook set "http://127.0.0.1:$PORT/events"
# webhook test: one signed sample event, and the receiver's answer
expect 0 $A --tenant acme webhook test
out_has "answered 200"
echo 500 >"$CTL"
expect 69 $A --tenant acme --json webhook test
json 'j["status"] == 500'
echo ok >"$CTL"
expect 78 $A --tenant beta webhook test
# beta's endpoint hangs the whole run: it must not hold acme's events up
PORT2=$(free_port)
echo hang >"$WORK/control2"
NODE_PATH="$WORK/peer/node_modules" node "$PEER/receiver.js" "$PORT2" "$KEY" "$WORK/got2.jsonl" \
    "$WORK/control2" >>"$WORK/receiver2.log" 2>&1 &
R2PID=$!
wait_until 10 "the second receiver" test -f "$WORK/got2.jsonl.ready"
expect 0 $A --tenant beta webhook set "http://127.0.0.1:$PORT2/events"
start_sender
# 1. plain delivery
feed 600 30
add_want 600
until_arrived 20
# 2. the receiver down for a while
kill -9 "$RPID"
wait "$RPID" 2>/dev/null || true
feed 300 630
add_want 300
sleep 3
expect 0 $A --tenant acme --json webhook status
json 'j["last_error"] and j["backlog"] == 200'
start_receiver
until_arrived 30
# 3. answering 500
echo 500 >"$CTL"
feed 300 930
add_want 300
wait_until 10 "a 500 in the status" sh -c "grep -q 'HTTP 500' '$STORE/webhook/acme/status'"
echo ok >"$CTL"
until_arrived 40
# 4. answering slowly (under webhook.timeout)
echo "slow 1500" >"$CTL"
feed 300 1230
add_want 300
until_arrived 30
# 5. killed in the middle of a batch: it hangs, then dies
echo hang >"$CTL"
feed 300 1530
add_want 300
sleep 2
kill -9 "$RPID"
wait "$RPID" 2>/dev/null || true
echo ok >"$CTL"
start_receiver
until_arrived 40
# 6. sgwebhook killed and started again: the position it kept
kill -9 "$WPID"
wait "$WPID" 2>/dev/null || true
feed 600 1830
add_want 600
start_sender
until_arrived 30
sleep 2
# every acme event at least once, duplicates at most a batch in flight, no beta
$PY - "$GOT" "$STORE/events" <<'PY' >"$WORK/verdict" || fail "$(cat "$WORK/verdict")"
import glob, json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
log = [json.loads(l) for f in sorted(glob.glob(sys.argv[2] + "/*.jsonl")) for l in open(f)]
num = lambda e: int(e["email"][1:].split("@")[0])
want = {e["sg_event_id"] for e in log if e["tenant"] == "acme" and num(e) >= 30}
ids = [e["sg_event_id"] for e in got if e["sg_event_id"] != "sendguard-webhook-test"]
missing = want - set(ids)
extra = set(ids) - want
dups = len(ids) - len(set(ids))
print(f"{len(want)} events, {len(ids)} received, {len(missing)} missing, {len(extra)} not wanted, {dups} duplicates")
sys.exit(1 if missing or extra or dups > 200 else 0)
PY
cat "$WORK/verdict"
CHECKS=$((CHECKS + 1))
check "no request the receiver refused ($(cat "$GOT.bad" 2>/dev/null | sort | uniq -c))" [ ! -s "$GOT.bad" ]
expect 0 $A --tenant acme --json webhook status
json 'j["backlog"] == 0 and j["url"].startswith("http://127.0.0.1:") and j["position"]["offset"] > 0'
expect 0 $A --tenant beta --json webhook status
json 'j["url"].endswith("/events") and j["backlog"] > 0 and "last_error" in j and not j.get("events_sent")'
expect 64 $A --tenant acme webhook set ftp://example.org/x
done_ok
