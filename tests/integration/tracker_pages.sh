#!/bin/sh
# tracker_pages - sgtrackd's unsubscribe (/u/) and preferences (/p/) pages
# in a real headless Chromium (tracker_pages.py, Debian's python3-selenium,
# chromium-driver and chromium): a message through track_message for
# bob@example.org in group 1, the page its List-Unsubscribe names loaded (a
# GET changes nothing) and its button clicked, then the preferences page's
# buttons (resubscribe, unsubscribe from a group, from all mail); after each
# click the store and the event log are asked with sgadmin.  Also: the
# pages' strict headers (CSP, nosniff, no-referrer) by urllib and in the
# browser, no script and nothing from elsewhere, no horizontal scrolling at
# 900 and 390 pixels.  Screenshots of each state are kept in
# $SG_TOP_BUILDDIR/tests/artifacts/tracker-*.png.
# Skipped (77) without chromium, chromedriver or selenium; under CI
# (CI=true) their absence is a failure: tools/debian-setup installs them.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"
: "${SGTRACKD:?run through make check}"
TM="$SG_TOP_BUILDDIR/tests/integration/track_message"
DRIVER="$SG_TOP_SRCDIR/tests/integration/tracker_pages.py"
ARTIFACTS="$SG_TOP_BUILDDIR/tests/artifacts"
RCPT=bob@example.org
PUBLIC=https://track.test

missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v chromedriver >/dev/null || [ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
$PY -c 'import selenium' 2>/dev/null || missing="$missing python3-selenium"
if [ -n "$missing" ]; then
    [ "${CI:-}" = true ] && fail "needs$missing (tools/debian-setup installs them)"
    echo "$TESTNAME: SKIP (needs$missing)"
    exit 77
fi
[ -x "$TM" ] || fail "no $TM (make check builds it)"

TRACKD_PID=""
stop_trackd() {
    if [ -n "$TRACKD_PID" ]; then
        kill "$TRACKD_PID" 2>/dev/null || true
        wait "$TRACKD_PID" 2>/dev/null || true
        TRACKD_PID=""
    fi
    stop_peers
}
trap stop_trackd EXIT INT TERM

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
CONF="$WORK/sendguard.conf"
mkdir -p "$STORE" "$ARTIFACTS"
rm -f "$ARTIFACTS"/tracker-*.png
cat >"$CONF" <<EOF
store = { path = "$STORE"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "$PUBLIC"; listen = "127.0.0.1:$PORT"; pid_file = ""; };
pages = { name = "Acme Shop"; footer = "Acme Inc., 1 Main Street, Springfield"; };
EOF
expect 0 -c "$CONF" token generate
expect 0 -c "$CONF" --json groups create --name Newsletter --description "Weekly news"
json 'j["id"]==1'
expect 0 -c "$CONF" --json groups create --name Offers
json 'j["id"]==2'

cat >"$WORK/msg.eml" <<'EOF'
From: Shop <news@shop.example>
To: bob@example.org
Subject: hello
X-SMTPAPI: {"asm_group_id": 1, "filters": {"subscriptiontrack": {"settings": {"enable": 1}}}}
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Hi</p><p><a href="<%asm_preferences_raw_url%>">prefs</a></p></body></html>
EOF
"$TM" "$CONF" "$WORK/msg.eml" "$RCPT" >"$WORK/tracked.eml" 2>"$WORK/tm.err" ||
    fail "track_message failed: $(cat "$WORK/tm.err")"
check "the message has List-Unsubscribe" grep -q '^List-Unsubscribe:' "$WORK/tracked.eml"
check "the message links $PUBLIC/p/" grep -qF "$PUBLIC/p/" "$WORK/tracked.eml"

"$SGTRACKD" -c "$CONF" -f >"$WORK/trackd.log" 2>&1 &
TRACKD_PID=$!
trackd_up() {
    kill -0 "$TRACKD_PID" 2>/dev/null || fail "sgtrackd exited: $(cat "$WORK/trackd.log")"
    $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$PORT" 2>/dev/null
}
wait_until 10 "sgtrackd on port $PORT" trackd_up

set +e
$PY "$DRIVER" --message "$WORK/tracked.eml" --base "$BASE" --public "$PUBLIC" \
    --rcpt "$RCPT" --sgadmin "$SGADMIN" --conf "$CONF" --artifacts "$ARTIFACTS" \
    >"$WORK/driver.out" 2>&1
rc=$?
set -e
cat "$WORK/driver.out"
if [ "$rc" -eq 77 ]; then
    [ "${CI:-}" = true ] && fail "the browser could not start under CI"
    echo "$TESTNAME: SKIP (the driver could not start a browser)"
    exit 77
fi
passed=$(grep -c '^ok ' "$WORK/driver.out" || true)
CHECKS=$((CHECKS + passed))
[ "$rc" -eq 0 ] || fail "tracker_pages.py exited $rc: $(grep '^FAIL' "$WORK/driver.out" | head -5)"

# the end state, again through sgadmin's own words
expect 0 -c "$CONF" --json group-suppressions list 1
json 'j==[]'
expect 0 -c "$CONF" --json group-suppressions list 2
json 'j==["bob@example.org"]'
expect 0 -c "$CONF" --json unsubscribes list
json '[e["email"] for e in j]==["bob@example.org"]'
expect 0 -c "$CONF" --json lookup "$RCPT" --group 2
json 'j["decision"]=="drop" and sorted(m["list"] for m in j["matches"])==["group","unsubscribes"]'
expect 0 -c "$CONF" --json events list --email "$RCPT"
json 'sorted((e["event"], e.get("asm_group_id")) for e in j)==[("group_resubscribe",1),("group_unsubscribe",1),("group_unsubscribe",2),("unsubscribe",None)]'
check "sgtrackd still runs" kill -0 "$TRACKD_PID"
check_not "sgtrackd logged no error" grep -qiE 'error|fatal|panic' "$WORK/trackd.log"
for f in unsubscribe unsubscribe-phone unsubscribed preferences-before preferences-phone \
    preferences-resubscribed preferences-after preferences-after-phone; do
    check "artifact tracker-$f.png" test -s "$ARTIFACTS/tracker-$f.png"
done
done_ok
