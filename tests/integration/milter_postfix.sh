#!/bin/sh
# milter_postfix - sgmilter attached to a private Postfix on loopback
# (smtpd_milters and non_smtpd_milters), relaying to smtp-sink: suppressed
# recipients (bounce, spam report, global unsubscribe, group unsubscribe,
# domain entry, digest entry) receive nothing and an event says why; the
# allow list and a bypass filter deliver; X-SMTPAPI never leaves; an invalid
# one gets 550 5.6.0 with the reason; a message with every recipient
# suppressed is discarded (the client sees 250); mail from Postfix's own
# sendmail passes the milter too; mail needing nothing passes byte for byte;
# tracking filters rewrite the links of both doors' copies (signed after);
# and with the milter gone, Postfix tempfails (milter_default_action) and
# nothing is lost.
. "$(dirname "$0")/lib.sh"
. "$SG_TOP_SRCDIR/tests/postfix.sh"
: "${SGMILTER:?run through make check}"

need_postfix
MILTER_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    pf_cleanup
    stop_peers
}
trap cleanup EXIT INT TERM

SMTP=$(free_port)
SINKP=$(free_port)
MPORT=$(free_port)
CONF="$WORK/sendguard.conf"
{
    conf_common
    cat <<EOF
spool = { path = "$WORK/spool"; };
relay = { smarthost = "127.0.0.1:SINKPORT"; domain = "relay.test"; starttls = "none"; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = "$WORK/sgmilter.pid"; };
tenants = ( { name = "acme"; domains = [ "acme.example" ]; } );
EOF
} >"$CONF"
sed -i "s/SINKPORT/$SINKP/" "$CONF"
A="-c $CONF"
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 $A --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 $A bounces add gone@example.org
expect 0 $A spam-reports add spam@example.org
expect 0 $A unsubscribes add quit@example.org
expect 0 $A unsubscribes add @closed.example
expect 0 $A unsubscribes add "$(printf '%s' digest@example.org | md5sum | cut -c1-32)"
expect 0 $A group-suppressions add "$GID" left@example.org
expect 0 $A bounces add vip@example.org
expect 0 $A allow-list add vip@example.org
expect 0 $A token generate
expect 0 $A dkim generate --domain shop.example --selector s1
expect 0 $A --tenant acme bounces add t@example.org
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"

start_milter
sink_start "$WORK/sink" "$SINKP"
milter_cf "$WORK/milter.cf"
pf_start "$WORK/pf" "$SMTP" "$SINKP" "$WORK/milter.cf"

# send SUBJECT HEADERS RCPT... - one message by SMTP; the reply in $WORK/reply
send() {
    subj=$1
    hdrs=$2
    shift 2
    $PY - "$SMTP" "$subj" "$hdrs" "$@" >"$WORK/reply" 2>&1 <<'PY' || true
import os, smtplib, sys
port, subj, hdrs, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
msg = "From: %s\r\nTo: undisclosed-recipients:;\r\nSubject: %s\r\n%s\r\nbody of %s\r\n" % (
    os.environ.get("SEND_FROM", "Shop <news@shop.example>"), subj,
    hdrs.replace("\\n", "\r\n"), subj)
s = smtplib.SMTP("127.0.0.1", port)
try:
    refused = s.sendmail(os.environ.get("SEND_SENDER", "news@shop.example"), rcpts, msg)
    print("250 accepted", refused)
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPRecipientsRefused as e:
    print("refused", e.recipients)
s.quit()
PY
}

# arrived SUBJECT - the sink's file holding that message (empty if none)
arrived() {
    grep -l "^Subject: $1\$" "$WORK"/sink/*.* 2>/dev/null | head -1
}

# wait_for SUBJECT - until it arrives (at most 20 s)
wait_for() {
    for _ in $(seq 200); do
        [ -n "$(arrived "$1")" ] && return 0
        sleep 0.1
    done
    fail "'$1' did not arrive: $(pf_log 20)"
}

# rcpts_of FILE - the envelope recipients smtp-sink recorded, sorted
rcpts_of() {
    sed -n 's/^X-Rcpt-Args: <\(.*\)>.*/\1/p' "$1" | sort | tr '\n' ' '
}

# the decisions: suppressed ones get nothing, the others one delivery
send group "X-SMTPAPI: {\"asm_group_id\": $GID, \"category\": [\"weekly\"]}\\n" \
    ok@example.org gone@example.org spam@example.org quit@example.org x@closed.example \
    digest@example.org left@example.org vip@example.org
check "accepted ($(cat "$WORK/reply"))" grep -q "^250" "$WORK/reply"
wait_for group
F=$(arrived group)
check "Postfix delivered it to ok@ only ($(rcpts_of "$F"))" [ "$(rcpts_of "$F")" = "ok@example.org " ]
check_not "X-SMTPAPI never leaves" grep -qi '^X-SMTPAPI' "$F"
# vip@ was handed to the relay, durably, for a copy of its own
check "one entry handed to the relay" [ "$(count_files "$WORK/spool/queue" '*')" -eq 1 ]
"$SGRELAY" -C "$CONF" -q
check "the relay's queue is empty" [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ]
for _ in $(seq 50); do [ "$(grep -l '^Subject: group$' "$WORK"/sink/*.* | wc -l)" -ge 2 ] && break; sleep 0.1; done
V=$(grep -l '^X-Rcpt-Args: <vip@example.org>' $(grep -l '^Subject: group$' "$WORK"/sink/*.*) | head -1)
check "vip@ got its own copy through the relay" [ -n "$V" ]
for f in "$F" "$V"; do
    who=$(rcpts_of "$f" | tr -d ' ')
    # what the recipient's server would see: without smtp-sink's own lines
    grep -v '^X-\(Client-Addr\|Client-Proto\|Helo-Args\|Mail-Args\|Rcpt-Args\):' "$f" >"$WORK/got.eml"
    check_not "no X-SMTPAPI for $who" grep -qi '^X-SMTPAPI' "$WORK/got.eml"
    check "List-Unsubscribe-Post for $who" grep -q '^List-Unsubscribe-Post: List-Unsubscribe=One-Click' "$WORK/got.eml"
    tok=$($PY -c 'import email,re,sys; m=email.message_from_binary_file(open(sys.argv[1],"rb")); print(re.search(r"/u/([A-Za-z0-9_-]+)>", m["List-Unsubscribe"]).group(1))' "$WORK/got.eml")
    expect 0 $A --json token decode "$tok"
    json "j['recipient'] == '$who' and j['group'] == $GID"
    $PY "$VERIFY" "$WORK/got.eml" "s1,shop.example,$WORK/keys/shop.example/s1.pem" >"$WORK/verify" 2>&1 ||
        fail "DKIM of $who's copy does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
done
expect 0 $A --json events list --type dropped
json "sorted((e['email'], e['reason']) for e in j) == sorted([('gone@example.org','bounce'), ('spam@example.org','spam_report'), ('quit@example.org','global_unsubscribe'), ('x@closed.example','global_unsubscribe'), ('digest@example.org','global_unsubscribe'), ('left@example.org','group_unsubscribe')])"
json "all(e.get('category') == ['weekly'] and e.get('asm_group_id') == $GID for e in j)"
expect 0 $A --json events list --type processed
json "len(j) == 8"
expect 0 $A --json events list --type delivered
json "[e['email'] for e in j] == ['vip@example.org']"

# tracking (X-SMTPAPI filters): through both doors, ok2@ in Postfix's
# transaction (the milter replaces the body) and vip@ in a copy of the relay's,
# each HTML link goes through the tracker with a click token naming the
# recipient and giving the link back, mailto: stays, the pixel is there, the
# plain part is as it was, and the signature over the rewritten copy verifies
$PY - "$SMTP" <<'PY' >"$WORK/reply" 2>&1 || true
import smtplib, sys
html = ('<html><body><p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a> '
        '<a href="mailto:help@shop.example">help</a></p>' + 'x' * 80 + '</body></html>')
import quopri
qp = quopri.encodestring(html.encode()).decode().replace("\n", "\r\n")
msg = ("From: Shop <news@shop.example>\r\nTo: undisclosed-recipients:;\r\nSubject: tracked\r\n"
       "X-SMTPAPI: {\"filters\": {\"clicktrack\": {\"settings\": {\"enable\": 1}}, "
       "\"opentrack\": {\"settings\": {\"enable\": 1}}}}\r\n"
       "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
       "--b1\r\nContent-Type: text/plain\r\n\r\nSale at https://shop.example/sale\r\n"
       "--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
       "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp + "\r\n--b1--\r\n")
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
print("250 accepted", s.sendmail("news@shop.example", ["ok2@example.org", "vip@example.org"], msg))
s.quit()
PY
check "tracked: accepted ($(cat "$WORK/reply"))" grep -q "^250" "$WORK/reply"
wait_for tracked
"$SGRELAY" -C "$CONF" -q
for _ in $(seq 50); do [ "$(grep -l '^Subject: tracked$' "$WORK"/sink/*.* | wc -l)" -ge 2 ] && break; sleep 0.1; done
for who in ok2@example.org vip@example.org; do
    f=$(grep -l "^X-Rcpt-Args: <$who>" $(grep -l '^Subject: tracked$' "$WORK"/sink/*.*) | head -1)
    check "tracked: $who got a copy" [ -n "$f" ]
    grep -v '^X-\(Client-Addr\|Client-Proto\|Helo-Args\|Mail-Args\|Rcpt-Args\):' "$f" >"$WORK/got.eml"
    $PY - "$WORK/got.eml" >"$WORK/parts" <<'PY'
import email, re, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
plain, html = [p.get_payload(decode=True).decode() for p in m.walk() if not p.is_multipart()]
click = re.findall(r'href="https://t\.example\.net/c/([A-Za-z0-9_-]+)"', html)
print("plain=" + plain.strip())
print("clicks=%d" % len(click))
print("click=" + (click[0] if click else ""))
print("mailto=%d" % html.count('href="mailto:help@shop.example"'))
print("pixel=%d" % len(re.findall(r'<img src="https://t\.example\.net/o/[A-Za-z0-9_-]+"', html)))
print("pixel_before_body=%d" % bool(re.search(r'/>\s*</body>', html)))
PY
    check "tracked: $who's plain part as sent" grep -qx 'plain=Sale at https://shop.example/sale' "$WORK/parts"
    check "tracked: $who's one http link through the tracker" grep -qx 'clicks=1' "$WORK/parts"
    check "tracked: $who's mailto: left alone" grep -qx 'mailto=1' "$WORK/parts"
    check "tracked: $who's pixel before </body>" sh -c "grep -qx 'pixel=1' '$WORK/parts' && grep -qx 'pixel_before_body=1' '$WORK/parts'"
    expect 0 $A --json token decode "$(sed -n 's/^click=//p' "$WORK/parts")"
    json "j['purpose'] == 'click' and j['recipient'] == '$who' and j['data'] == 'https://shop.example/sale?a=1&b=2'"
    $PY "$VERIFY" "$WORK/got.eml" "s1,shop.example,$WORK/keys/shop.example/s1.pem" >"$WORK/verify" 2>&1 ||
        fail "DKIM of $who's tracked copy does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
done

# without the group, left@ is not suppressed; with a bypass filter gone@ is not
send nogroup "" left@example.org
wait_for nogroup
check "left@ gets mail outside the group" [ "$(rcpts_of "$(arrived nogroup)")" = "left@example.org " ]

# each bypass filter lifts its own list, bypass_list_management all of them
# (no group here: the recipients left share one copy in Postfix)
bypass() {
    printf 'X-SMTPAPI: {%s"filters": {"%s": {"settings": {"enable": 1}}}}\\n' "$2" "$1"
}
for case in bypass_bounce_management=gone bypass_spam_management=spam \
    bypass_unsubscribe_management=quit bypass_list_management=gone,quit,spam; do
    f=${case%%=*}
    want=$(echo "${case#*=}" | tr ',' '\n' | sed 's/$/@example.org/' | tr '\n' ' ')
    send "$f" "$(bypass "$f" "")" gone@example.org spam@example.org quit@example.org
    wait_for "$f"
    check "$f delivers to $want only ($(rcpts_of "$(arrived "$f")"))" [ "$(rcpts_of "$(arrived "$f")")" = "$want" ]
done
# a group's suppression: only bypass_list_management lifts it
send grp-narrow "$(bypass bypass_unsubscribe_management "\"asm_group_id\": $GID, ")" left@example.org ok@example.org
wait_for grp-narrow
check "bypass_unsubscribe_management keeps left@ out of its group" [ "$(rcpts_of "$(arrived grp-narrow)")" = "ok@example.org " ]
send grp-list "$(bypass bypass_list_management "\"asm_group_id\": $GID, ")" left@example.org
wait_for grp-list
check "bypass_list_management lets left@ in" [ "$(rcpts_of "$(arrived grp-list)")" = "left@example.org " ]

# the tenant: by the envelope sender's domain, else the From domain; t@ has
# a bounce in tenant acme only
SEND_SENDER=news@acme.example send tenant-env "" t@example.org ok@example.org
wait_for tenant-env
check "acme by its envelope sender: t@ dropped" [ "$(rcpts_of "$(arrived tenant-env)")" = "ok@example.org " ]
SEND_FROM="Acme <news@acme.example>" send tenant-from "" t@example.org ok@example.org
wait_for tenant-from
check "acme by its From domain: t@ dropped" [ "$(rcpts_of "$(arrived tenant-from)")" = "ok@example.org " ]
send tenant-default "" t@example.org
wait_for tenant-default
check "the default tenant: t@ delivered" [ "$(rcpts_of "$(arrived tenant-default)")" = "t@example.org " ]
expect 0 $A --json --tenant acme events list --type dropped
json "[e['email'] for e in j] == ['t@example.org', 't@example.org'] and all(e['tenant'] == 'acme' for e in j)"

# every recipient suppressed: discarded, the client is not told
send alldropped "" gone@example.org spam@example.org
check "the client saw 250 ($(cat "$WORK/reply"))" grep -q '^250' "$WORK/reply"
sleep 1
check "nothing delivered" [ -z "$(arrived alldropped)" ]

# an invalid X-SMTPAPI: 550 5.6.0 with the parser's reason
send badapi 'X-SMTPAPI: {"asm_group_id": \n' ok@example.org
check "550 5.6.0 with a reason ($(cat "$WORK/reply"))" grep -q '^550 5.6.0 invalid X-SMTPAPI header: .' "$WORK/reply"

# Postfix's own sendmail passes the milter too
printf 'From: news@shop.example\nSubject: viasendmail\n\nbody\n' |
    pf_sendmail -f news@shop.example ok@example.org quit@example.org
wait_for viasendmail
check "sendmail: quit@ dropped, ok@ delivered" [ "$(rcpts_of "$(arrived viasendmail)")" = "ok@example.org " ]

# mail needing nothing (no group, no key for its domain, no recipient
# suppressed) passes unchanged: the milter accepts it at the end of its
# header, and its processed event is recorded all the same
SEND_FROM="Other <a@other.example>"
export SEND_FROM
expect 0 $A --json events list --type processed
np=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/out")
send plain "X-Test: plain\\n" ok@example.org
wait_for plain
P=$(arrived plain)
check "headers as sent" sh -c "grep -q '^X-Test: plain' '$P' && grep -q '^From: Other <a@other.example>' '$P'"
check_not "no signature, no unsubscribe fields" grep -qi '^DKIM-Signature\|^List-Unsubscribe' "$P"
expect 0 $A --json events list --type processed
json "len(j) == $np + 1 and sum(e['email'] == 'ok@example.org' and e['tenant'] == 'default' for e in j) >= 1"

# the milter gone: Postfix tempfails, nothing is lost; back, it delivers
kill "$MILTER_PID"
wait "$MILTER_PID" 2>/dev/null || true
MILTER_PID=
send nomilter "" ok@example.org
check "tempfail without the milter ($(cat "$WORK/reply"))" grep -q '^4' "$WORK/reply"
start_milter
send nomilter "" ok@example.org
check "accepted with the milter back" grep -q '^250' "$WORK/reply"
wait_for nomilter
done_ok
