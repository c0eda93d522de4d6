#!/bin/sh
# milter_track - tracking end to end: a private Postfix with sgmilter
# relaying to smtp-sink, sgtrackd beside them.  A newsletter of a tenant
# whose configured defaults turn tracking on (no filters in its X-SMTPAPI)
# goes to three recipients: one stays in Postfix's transaction, two leave as
# the relay's copies.  For each, the links smtp-sink received are followed
# with curl (the redirect is the original link), the pixel is fetched and
# the one-click POST of its List-Unsubscribe made; the events are in
# sgadmin events list with the message's category and unique_args; the
# signature over the rewritten copy verifies; and the next message to an
# unsubscribed recipient, sent at once, is dropped by the milter.
. "$(dirname "$0")/lib.sh"
. "$SG_TOP_SRCDIR/tests/postfix.sh"
: "${SGMILTER:?run through make check}"
: "${SGTRACKD:?run through make check}"

need_postfix
command -v curl >/dev/null || fail "needs curl (tools/debian-setup installs it)"
MILTER_PID=
TRACKD_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    [ -z "$TRACKD_PID" ] || kill "$TRACKD_PID" 2>/dev/null || true
    pf_cleanup
    stop_peers
}
trap cleanup EXIT INT TERM

SMTP=$(free_port)
SINKP=$(free_port)
MPORT=$(free_port)
TPORT=$(free_port)
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
dkim = { key_dir = "$WORK/keys"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; listen = "127.0.0.1:$TPORT"; pid_file = ""; };
spool = { path = "$WORK/spool"; };
relay = { smarthost = "127.0.0.1:$SINKP"; domain = "relay.test"; starttls = "none"; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = ""; };
tenants = ( {
    name = "acme";
    domains = [ "acme.example" ];
    tracking = {
        clicktrack = { enable = true; };
        opentrack = { enable = true; };
        subscriptiontrack = { enable = true; };
    };
    pages = { name = "Acme"; };
} );
EOF
A="-c $CONF"
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 $A --tenant acme --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 $A token generate
expect 0 $A dkim generate --domain acme.example --selector s1
KEYSPEC="s1,acme.example,$WORK/keys/acme.example/s1.pem"

start_milter
start_trackd
sink_start "$WORK/sink" "$SINKP"
milter_cf "$WORK/milter.cf"
pf_start "$WORK/pf" "$SMTP" "$SINKP" "$WORK/milter.cf"

# send SUBJECT RCPT... - the newsletter by SMTP; the reply in $WORK/reply
send() {
    $PY - "$SMTP" "$GID" "$@" >"$WORK/reply" 2>&1 <<'PY' || true
import quopri, smtplib, sys
port, gid, subj, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
html = ('<!DOCTYPE html><html><body><table><tr><td>'
        '<a href="https://acme.example/winter?src=mail&amp;id=7">Winter sale</a></td>'
        '<td><A HREF=\'https://acme.example/p/42#details\'>Boots</A></td></tr></table>'
        '<p><a href="mailto:help@acme.example">Help</a></p>' + '&nbsp;' * 40 + '</body></html>')
qp = quopri.encodestring(html.encode()).decode().replace("\n", "\r\n")
msg = ("From: Acme <news@acme.example>\r\nTo: undisclosed-recipients:;\r\n"
       "Subject: %s\r\nX-SMTPAPI: {\"asm_group_id\": %s, \"category\": [\"winter\"], "
       "\"unique_args\": {\"campaign\": \"w1\"}}\r\n"
       "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
       "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWinter sale: "
       "https://acme.example/winter\r\n"
       "--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
       "Content-Transfer-Encoding: quoted-printable\r\n\r\n%s\r\n--b1--\r\n") % (subj, gid, qp)
s = smtplib.SMTP("127.0.0.1", port)
try:
    print("250 accepted", s.sendmail("news@acme.example", rcpts, msg))
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
PY
}

# copies SUBJECT - the sink's files holding that message
copies() {
    grep -l "^Subject: $1\$" "$WORK"/sink/*.* 2>/dev/null || true
}

send news a@example.org b@example.org c@example.org
check "accepted ($(cat "$WORK/reply"))" grep -q "^250" "$WORK/reply"
wait_until 20 "Postfix's copy" sh -c "grep -lq '^Subject: news\$' '$WORK'/sink/*.* 2>/dev/null"
"$SGRELAY" -C "$CONF" -q
wait_until 20 "three copies" sh -c "[ \$(grep -l '^Subject: news\$' '$WORK'/sink/*.* | wc -l) -ge 3 ]"

for who in a@example.org b@example.org c@example.org; do
    f=$(grep -l "^X-Rcpt-Args: <$who>" $(copies news) | head -1)
    check "$who got one copy" [ -n "$f" ]
    grep -v '^X-\(Client-Addr\|Client-Proto\|Helo-Args\|Mail-Args\|Rcpt-Args\):' "$f" >"$WORK/got.eml"
    $PY "$SG_TOP_SRCDIR/tests/integration/dkim_verify.py" "$WORK/got.eml" "$KEYSPEC" >"$WORK/verify" 2>&1 ||
        fail "DKIM of $who's rewritten copy does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
    tracked_urls "$WORK/got.eml" >"$WORK/urls"
    check "$who: two tracked links ($(cut -c1-50 "$WORK/urls" | tr '\n' ' '))" [ "$(grep -c '^c ' "$WORK/urls")" -eq 2 ]
    check_not "$who: mailto: not tracked" sh -c "grep -q 'mailto:help@acme.example' '$WORK/urls'"
    # follow the links as a mail reader would: the redirect is the original
    n=0
    for link in $(awk '$1 == "c" { print $2 }' "$WORK/urls"); do
        n=$((n + 1))
        to=$(curl -s -o /dev/null -A "Reader/$who" -w '%{http_code} %{redirect_url}' "$link")
        case $n in
        1) want='https://acme.example/winter?src=mail&id=7' ;;
        *) want='https://acme.example/p/42#details' ;;
        esac
        check "$who: link $n redirects to the original ($to)" [ "$to" = "302 $want" ]
    done
    px=$(awk '$1 == "o" { print $2; exit }' "$WORK/urls")
    check "$who: the pixel" [ "$(curl -s -o "$WORK/px" -w '%{http_code} %{content_type}' "$px")" = "200 image/gif" ]
    # the one-click POST of the List-Unsubscribe header (RFC 8058)
    lu=$(awk '$1 == "u" { print $2; exit }' "$WORK/urls")
    check "$who: a List-Unsubscribe https URL" [ -n "$lu" ]
    check "$who: one-click POST answered 200" \
        [ "$(curl -s -o /dev/null -w '%{http_code}' -d 'List-Unsubscribe=One-Click' "$lu")" = 200 ]
done

# the events, each with the message's category and unique_args
expect 0 $A --tenant acme --json events list --type click
json "len(j) == 6 and sorted(set(e['email'] for e in j)) == ['a@example.org', 'b@example.org', 'c@example.org']"
json "all(e['category'] == ['winter'] and e['campaign'] == 'w1' and e['asm_group_id'] == $GID and e['tenant'] == 'acme' and e['useragent'] == 'Reader/' + e['email'] for e in j)"
json "sorted(set(e['url'] for e in j)) == ['https://acme.example/p/42#details', 'https://acme.example/winter?src=mail&id=7']"
expect 0 $A --tenant acme --json events list --type open
json "len(j) == 3 and all(e['category'] == ['winter'] for e in j)"
expect 0 $A --tenant acme --json events list --type group_unsubscribe
json "sorted(e['email'] for e in j) == ['a@example.org', 'b@example.org', 'c@example.org'] and all(e['asm_group_id'] == $GID for e in j)"

# the next message to them, sent at once: dropped by the milter
send again a@example.org b@example.org d@example.org
check "the second message accepted ($(cat "$WORK/reply"))" grep -q "^250" "$WORK/reply"
wait_until 20 "d@'s copy" sh -c "grep -lq '^Subject: again\$' '$WORK'/sink/*.* 2>/dev/null"
"$SGRELAY" -C "$CONF" -q
sleep 0.5
check "only d@ received it" [ "$(sed -n 's/^X-Rcpt-Args: <\(.*\)>.*/\1/p' $(copies again) | sort | tr '\n' ' ')" = "d@example.org " ]
expect 0 $A --tenant acme --json events list --type dropped
json "sorted((e['email'], e['reason']) for e in j) == [('a@example.org', 'group_unsubscribe'), ('b@example.org', 'group_unsubscribe')]"
check "sgtrackd still running" kill -0 "$TRACKD_PID"
done_ok
