#!/bin/sh
# tracker - sgtrackd over HTTP, with curl and raw sockets: every URL a
# tracked message carries is served (clicks redirect to the original link
# byte for byte, the pixel is a GIF that is never cached, GET /u asks and
# changes nothing, the one-click POST of RFC 8058 unsubscribes), each with
# its event (category, unique_args, ip, user agent); forged, truncated and
# re-purposed tokens get 404 and never a Location; oversize, malformed and
# slow requests are refused without harm to the daemon; an event log that
# cannot be written answers 503 and loses nothing once it can; SIGHUP
# reloads the pages' texts.
. "$(dirname "$0")/lib.sh"
: "${SGTRACKD:?run through make check}"
command -v curl >/dev/null || fail "needs curl (tools/debian-setup installs it)"

TRACKD_PID=
cleanup() {
    [ -z "$TRACKD_PID" ] || kill "$TRACKD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

TPORT=$(free_port)
B="http://127.0.0.1:$TPORT"
CONF="$WORK/sendguard.conf"
# conf NAME - the configuration, pages.name NAME (tracker.url as
# conf_common's, which tracked_urls expects)
conf() {
    cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; listen = "127.0.0.1:$TPORT"; pid_file = "";
            timeout = "2s"; max_request_size = "4k"; max_headers = 20; max_connections = 50; };
pages = { name = "$1"; footer = "Acme Inc., 1 Main Street"; };
EOF
}
conf "Acme Shop"
A="-c $CONF"
expect 0 $A token generate
expect 0 $A --json groups create --name Newsletter --description "Weekly news"
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")

# a tracked newsletter for bob: links (one with an entity, one with a
# fragment), the pixel, the footer, the preferences tag
cat >"$WORK/in.eml" <<EOF
From: Shop <news@shop.example>
To: bob@example.org
Subject: tracked
X-SMTPAPI: {"asm_group_id": $GID, "category": ["promo", "winter"], "unique_args": {"user_id": "42", "campaign": "w1"}, "filters": {"clicktrack": {"settings": {"enable": 1}}, "opentrack": {"settings": {"enable": 1}}, "subscriptiontrack": {"settings": {"enable": 1}}}}
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p><a href="https://shop.example/a?x=1&amp;y=%41b">A</a>
<a href='https://shop.example/b#top'>B</a> <a href=https://shop.example/c/d>C</a></p>
<p><a href="<%asm_preferences_raw_url%>">Preferences</a></p></body></html>
EOF
"$SG_TOP_BUILDDIR/tests/integration/track_message" "$CONF" "$WORK/in.eml" bob@example.org \
    >"$WORK/out.eml" 2>"$WORK/tm.err" || fail "track_message: $(cat "$WORK/tm.err")"
tracked_urls "$WORK/out.eml" >"$WORK/urls"
url() { awk -v k="$1" -v n="${2:-1}" '$1 == k && ++i == n { print $2 }' "$WORK/urls"; }
check "three links, a pixel, unsubscribe and preferences URLs ($(cut -c1-60 "$WORK/urls"))" \
    [ "$(grep -c '^c ' "$WORK/urls")" -eq 3 -a -n "$(url o)" -a -n "$(url u)" -a -n "$(url p)" ]

start_trackd

# http METHOD URL [CURL ARGS...] - the answer's headers in $WORK/h, body in
# $WORK/b, status in $CODE
http() {
    hm=$1
    hu=$2
    shift 2
    CODE=$(curl -s -X "$hm" -A "TrackTest/1.0" -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' "$@" "$hu") ||
        CODE=000
    tr -d '\r' <"$WORK/h" >"$WORK/h.txt"
}
header() { sed -n "s/^$1: //Ip" "$WORK/h.txt" | head -n 1; }
events() { expect 0 $A --json events list --type "$1"; }

# 1. clicks: 302 to the original, entities decoded, fragment kept
n=1
for want in 'https://shop.example/a?x=1&y=%41b' 'https://shop.example/b#top' 'https://shop.example/c/d'; do
    http GET "$(url c $n)"
    check "click $n: 302 ($CODE)" [ "$CODE" = 302 ]
    check "click $n: Location is the original ($(header Location))" [ "$(header Location)" = "$want" ]
    check "click $n: not cached" [ "$(header Cache-Control)" = no-store ]
    n=$((n + 1))
done
events click
json "len(j) == 3 and sorted(e['url'] for e in j) == ['https://shop.example/a?x=1&y=%41b', 'https://shop.example/b#top', 'https://shop.example/c/d']"
json "all(e['email'] == 'bob@example.org' and e['sg_message_id'] == 'TRACKTEST' and e['asm_group_id'] == $GID and e['category'] == ['promo', 'winter'] and e['user_id'] == '42' and e['campaign'] == 'w1' and e['useragent'] == 'TrackTest/1.0' and e['ip'] == '127.0.0.1' for e in j)"
# HEAD (link scanners): the answer, no event
http HEAD "$(url c 1)" -I
check "HEAD of a click: 302 ($CODE)" [ "$CODE" = 302 ]
events click
json "len(j) == 3"
# behind the proxy: X-Forwarded-For's last address, from a trusted peer only
http GET "$(url c 2)" -H "X-Forwarded-For: 10.9.8.7, 203.0.113.5"
events click
json "j[0]['ip'] == '203.0.113.5'"

# 2. the pixel
http GET "$(url o)"
check "pixel: 200 ($CODE)" [ "$CODE" = 200 ]
check "pixel: a GIF" [ "$(header Content-Type)" = image/gif ]
case "$(header Cache-Control)" in *no-store*) CHECKS=$((CHECKS + 1)) ;; *) fail "pixel: cached ($(header Cache-Control))" ;; esac
check "pixel: 43 bytes of GIF89a" [ "$(wc -c <"$WORK/b")" -eq 43 -a "$(head -c 6 "$WORK/b")" = GIF89a ]
events open
json "len(j) == 1 and j[0]['email'] == 'bob@example.org' and j[0]['category'] == ['promo', 'winter']"

# 3. forged, truncated, re-purposed and garbage tokens: 404, no Location
C1=$(url c 1)
TOK=${C1##*/}
FLIP=$(printf '%s' "$TOK" | $PY -c 'import sys; t=sys.stdin.read(); i=len(t)//2; print(t[:i] + ("A" if t[i] != "A" else "B") + t[i+1:])')
for bad in "$B/c/$FLIP" "$B/c/${TOK%??????????}" "$B/c/${TOK}A" "$B/c/$(url u | sed 's|.*/||')" \
    "$B/o/$TOK" "$B/u/$TOK" "$B/p/$TOK" "$B/c/not-a-token" "$B/c/" "$B/c/$TOK/x" \
    "$B/c/$TOK%0d%0aSet-Cookie:x=1" "$B/" "$B/z/$TOK" "$B/c/${TOK}%00"; do
    http GET "$bad"
    check "$(echo "$bad" | cut -c1-60)...: 404 ($CODE)" [ "$CODE" = 404 ]
    check "$(echo "$bad" | cut -c1-60)...: no Location" [ -z "$(header Location)" ]
done
http POST "$(url c 1)" --data x=1
check "POST to a click: 404 ($CODE)" [ "$CODE" = 404 ]
http PUT "$(url c 1)"
check "PUT: 405 ($CODE)" [ "$CODE" = 405 ]
events click
json "len(j) == 4"

# 4. the unsubscribe page: a GET asks, changes nothing
http GET "$(url u)"
check "unsubscribe page: 200 ($CODE)" [ "$CODE" = 200 ]
check "it names the group, the sender and the masked address" \
    grep -q 'Stop sending Newsletter mail from Acme Shop to <span class="addr">b…@example.org' "$WORK/b"
check_not "it does not show the address whole" grep -q 'bob@example.org' "$WORK/b"
check "a form that POSTs" grep -q '<form method="post">' "$WORK/b"
check_not "no script" grep -qi '<script' "$WORK/b"
case "$(header Content-Security-Policy)" in
"default-src 'none';"*"form-action 'self'"*) CHECKS=$((CHECKS + 1)) ;;
*) fail "CSP: $(header Content-Security-Policy)" ;;
esac
check "nosniff" [ "$(header X-Content-Type-Options)" = nosniff ]
check "no referrer" [ "$(header Referrer-Policy)" = no-referrer ]
check "HTML in UTF-8" [ "$(header Content-Type)" = "text/html; charset=utf-8" ]
expect 0 $A --json lookup bob@example.org
json "j['matches'] == [] and j['decision'] == 'deliver'"

# 5. RFC 8058's one-click POST: unsubscribed at once, 200, no redirect
http POST "$(url u)" -H 'Content-Type: application/x-www-form-urlencoded' --data 'List-Unsubscribe=One-Click'
check "one-click: 200 ($CODE)" [ "$CODE" = 200 ]
check "one-click: no redirect" [ -z "$(header Location)" ]
expect 0 $A --json group-suppressions list "$GID"
out_has bob@example.org
events group_unsubscribe
json "len(j) == 1 and j[0]['email'] == 'bob@example.org' and j[0]['asm_group_id'] == $GID and j[0]['category'] == ['promo', 'winter'] and j[0]['user_id'] == '42'"
# again (a provider retrying): still 200, still one suppression
http POST "$(url u)" --data 'List-Unsubscribe=One-Click'
check "one-click again: 200 ($CODE)" [ "$CODE" = 200 ]

# 6. preferences: resubscribe through the form's POST
http GET "$(url p)"
check "preferences: 200 ($CODE)" [ "$CODE" = 200 ]
check "Newsletter is shown unsubscribed" grep -q 'Newsletter</span><span class="desc">Weekly news</span><span class="state off">Unsubscribed' "$WORK/b"
http POST "$(url p)" --data "group=$GID&action=resubscribe"
check "resubscribe: 200 ($CODE)" [ "$CODE" = 200 ]
check "the page says so" grep -q 'subscribed to Newsletter again' "$WORK/b"
expect 0 $A --json group-suppressions list "$GID"
out_lacks bob@example.org
events group_resubscribe
json "len(j) == 1 and j[0]['asm_group_id'] == $GID"
for body in "group=999&action=unsubscribe" "action=explode" "group=$GID&action=unsub%zz" ""; do
    http POST "$(url p)" --data "$body"
    check "preferences POST '$body': 400 ($CODE)" [ "$CODE" = 400 ]
done

# 7. limits: oversize, too many fields, malformed, slow clients
http POST "$(url u)" --data "$($PY -c 'print("x=" + "a" * 6000)')"
check "a body over max_request_size: 413 ($CODE)" [ "$CODE" = 413 ]
set --
i=0
while [ $i -lt 25 ]; do set -- "$@" -H "X-Filler-$i: $i"; i=$((i + 1)); done
http GET "$(url o)" "$@"
check "25 header fields (max 20): 431 ($CODE)" [ "$CODE" = 431 ]
http GET "$(url o)" -H "X-Big: $($PY -c 'print("b" * 9000)')"
check "a field over the request limit: 413 or 431 ($CODE)" [ "$CODE" = 413 -o "$CODE" = 431 ]
$PY - "$TPORT" >"$WORK/raw" 2>&1 <<'PY' || fail "raw requests: $(cat "$WORK/raw")"
import socket, sys, time
port = int(sys.argv[1])

def ask(data, wait=5):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(data)
    s.settimeout(wait)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except socket.timeout:
        pass
    s.close()
    return got

for req in (b"GARBAGE\r\n\r\n", b"GET /c/x HTTP/9.9\r\n\r\n", b"GET /c/x HTTP/1.1\r\nNoColonHere\r\n\r\n",
            b"GET /c/x HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"):
    r = ask(req)
    code = r.split(b" ", 2)[1] if r.startswith(b"HTTP/") else b"none"
    print("malformed", repr(req[:20]), code.decode(), "ok" if code in (b"400", b"505", b"none") else "BAD")

# slow clients: 20 connections sending half a request line, then nothing
slow = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(20)]
for s in slow:
    s.sendall(b"GET /o/")
t0 = time.time()
r = ask(b"GET /c/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
print("answered beside 20 slow clients in %.2f s" % (time.time() - t0), "ok" if b" 404 " in r[:20] else "BAD")
# closed by the daemon after tracker.timeout (2 s)
closed = 0
for s in slow:
    s.settimeout(6)
    try:
        closed += s.recv(100) == b""
    except (socket.timeout, ConnectionResetError):
        closed += 1
print("slow clients closed by the daemon:", closed, "ok" if closed == 20 else "BAD")
PY
check "malformed and slow requests: $(grep BAD "$WORK/raw" || true)" [ "$(grep -c ' ok$' "$WORK/raw")" -eq 6 ]
check "still running" kill -0 "$TRACKD_PID"

# 8. an event log that cannot be written: 503, no redirect; nothing lost after
mv "$WORK/store/events" "$WORK/events.away"
touch "$WORK/store/events" # a file where the directory was: every append fails
sleep 1.1 # a writer looks at the path again at most once a second (lib/event.h)
http GET "$(url c 3)"
check "log unwritable: a click gets 503 ($CODE)" [ "$CODE" = 503 ]
check "and no redirect" [ -z "$(header Location)" ]
check "a Retry-After" [ -n "$(header Retry-After)" ]
http POST "$(url u)" --data 'List-Unsubscribe=One-Click'
check "log unwritable: one-click gets 503 ($CODE)" [ "$CODE" = 503 ]
check "the failure is logged" grep -q 'answered 503' "$WORK/trackd.log"
rm "$WORK/store/events"
mv "$WORK/events.away" "$WORK/store/events"
http GET "$(url c 3)"
check "the retried click: 302 ($CODE)" [ "$CODE" = 302 ]
http POST "$(url u)" --data 'List-Unsubscribe=One-Click'
check "the retried one-click: 200 ($CODE)" [ "$CODE" = 200 ]
events group_unsubscribe
json "len(j) == 3"
expect 0 $A --json group-suppressions list "$GID"
out_has bob@example.org

# 9. SIGHUP: the pages' texts anew, the daemon the same
conf "Acme Outlet"
kill -HUP "$TRACKD_PID"
wait_until 10 "the reload" grep -q "reloaded $CONF" "$WORK/trackd.log"
http GET "$(url u)"
check "the new sender name after SIGHUP" grep -q 'Acme Outlet' "$WORK/b"
echo 'tracker = { listen = 5; };' >"$CONF"
kill -HUP "$TRACKD_PID"
wait_until 10 "the failed reload" grep -q 'the running configuration stays' "$WORK/trackd.log"
http GET "$(url u)"
check "a bad configuration keeps the running one ($CODE)" grep -q 'Acme Outlet' "$WORK/b"
check "still the same process" kill -0 "$TRACKD_PID"
kill "$TRACKD_PID"
wait "$TRACKD_PID" || fail "sgtrackd exited $? on SIGTERM: $(tail -n 5 "$WORK/trackd.log")"
TRACKD_PID=
check "the stop is logged" grep -q 'stopped' "$WORK/trackd.log"
done_ok
