#!/bin/sh
# feedback_postfix - feedback closes the loop on a real Postfix, through
# both doors.  A private Postfix with sgmilter relays to an SMTP peer that
# rejects gone@ with "550 5.1.1" and full@ with "552 5.2.2"; the tenant
# "shop" has feedback.return_path, and Postfix hands that address (and the
# unsubscribe and feedback-loop addresses) to "sgadmin ingest" through a
# pipe(8) transport, as etc/postfix/ shows.
#   1. One message to gone@, full@ and ok@ through Postfix: its envelope
#      sender is bounces+TOKEN@; Postfix's DSN reaches sgadmin ingest; gone@
#      is on the bounce list as hard, full@ has a soft-bounce event and is not
#      listed; the next message to gone@ is dropped by the milter.
#   2. The same through sgrelay (relay.policy): its own deliveries' failures
#      are recorded by the relay itself, and its copies carry the return path
#      naming their recipient.
#   3. An ARF complaint about a message whose recipient the provider
#      redacted, and an unsubscribe mail to a copy's List-Unsubscribe mailto,
#      both sent through Postfix, land on the spam-report list and in the
#      group's suppressions.
. "$(dirname "$0")/lib.sh"
. "$SG_TOP_SRCDIR/tests/postfix.sh"
: "${SGMILTER:?run through make check}"
: "${SGRELAY:?run through make check}"

need_postfix
MILTER_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    pf_cleanup
    stop_peers
}
trap cleanup EXIT INT TERM

SMTP=$(free_port)
PEERP=$(free_port)
MPORT=$(free_port)
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
dkim = { key_dir = "$WORK/keys"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; };
unsubscribe = { mailto = "unsubscribe@shop.example"; };
spool = { path = "$WORK/spool"; };
relay = { smarthost = "127.0.0.1:$PEERP"; domain = "relay.test"; starttls = "none";
          policy = true; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = ""; user = "nobody"; };
tenants = ( {
    name = "shop";
    domains = [ "shop.example" ];
    feedback = { return_path = "bounces@shop.example"; };
} );
EOF
chmod 644 "$CONF"
A="-c $CONF"
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 $A --tenant shop --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 $A token generate
# pipe(8) runs the ingest command as an unprivileged user, and sgmilter
# becomes one: here both are nobody, whose the stores, spool and token key
# are (sendguard's own user, in production)
chmod o+x "$WORK"
chown -R nobody:nogroup "$WORK/store" "$WORK/spool" "$WORK/token.key"

start_milter
peer_start "$WORK/peer" "$PEERP" --reply 'gone=550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown' \
    --reply 'full=552 5.2.2 <full@example.org>: Mailbox full, quota exceeded'
milter_cf "$WORK/pf.cf"
# the sendguard addresses go to the ingest command, one recipient per run:
# etc/postfix's snippets, with this build's sgadmin, this test's
# configuration, and nobody for the user
grep -v '^sgingest_destination_recipient_limit' "$SG_TOP_SRCDIR/etc/postfix/main.cf.feedback" >>"$WORK/pf.cf"
pf_start "$WORK/pf" "$SMTP" "$PEERP" "$WORK/pf.cf"
sed -e "s|user=sendguard|user=nobody|" -e "s|/usr/local/sbin/sgadmin|$SGADMIN -c $CONF|" \
    "$SG_TOP_SRCDIR/etc/postfix/master.cf.feedback" >>"$PF_CONF/master.cf"
# (set once the transport exists, or postconf warns that it is unused)
pf_postconf -e "$(grep '^sgingest_destination_recipient_limit' "$SG_TOP_SRCDIR/etc/postfix/main.cf.feedback")"
"$PF_POSTFIX" -c "$PF_CONF" reload >/dev/null 2>&1

# send FROM SUBJECT [GROUP] RCPT... - a message by SMTP into Postfix; reply in $WORK/reply
send() {
    $PY - "$SMTP" "$@" >"$WORK/reply" 2>&1 <<'PY' || true
import smtplib, sys
port, sender, subj, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
hdr = ""
if rest and rest[0].isdigit():
    hdr = 'X-SMTPAPI: {"asm_group_id": %s}\r\n' % rest[0]
    rest = rest[1:]
msg = ("From: Shop <%s>\r\nTo: undisclosed-recipients:;\r\nSubject: %s\r\n%s"
       "Message-ID: <%s.%s>\r\n\r\nHello.\r\n") % (sender, subj, hdr, subj, sender)
s = smtplib.SMTP("127.0.0.1", port)
try:
    print("250 accepted", s.sendmail(sender, rest, msg))
except smtplib.SMTPResponseException as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
PY
}
# peer_msgs SUBJECT - the peer's .json files of messages with that subject
# (their own: not a bounce quoting one)
peer_msgs() {
    for f in "$WORK"/peer/*.eml; do
        if [ "$(sed -n '/^Subject: /{p;q}' "$f" | tr -d '\r')" = "Subject: $1" ]; then echo "${f%.eml}.json"; fi
    done
}
# events TYPE - sgadmin events list --type TYPE (JSON) into $WORK/out
events() { expect 0 $A --tenant shop --json events list --type "$1"; }
ingested() {
    [ "$(grep -c 'status=sent (delivered via sgingest' "$PF_LOG")" -ge "$1" ]
}

# 1. Postfix's door
send news@shop.example first gone@example.org full@example.org ok@example.org
check "accepted ($(cat "$WORK/reply"))" grep -q "^250" "$WORK/reply"
wait_until 30 "the message at the peer" sh -c "[ -n \"\$(grep -l '^Subject: first' '$WORK'/peer/*.eml 2>/dev/null)\" ]"
J=$(peer_msgs first)
$PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["mail_from"])' "$J" >"$WORK/from"
check "the envelope sender is the return path ($(cat "$WORK/from"))" grep -q '^bounces+[A-Za-z0-9_-]\{60,\}@shop.example$' "$WORK/from"
wait_until 30 "Postfix's DSN ingested ($(pf_log 5))" ingested 1
events bounce
json 'any(e["email"] == "gone@example.org" and e["bounce_type"] == "hard" and e["status"] == "5.1.1" and e["suppressed"] and e["source"] == "dsn" for e in j)'
json 'any(e["email"] == "full@example.org" and e["bounce_type"] == "soft" and e["status"] == "5.2.2" and not e["suppressed"] and e["soft_bounces"] == 1 for e in j)'
expect 0 $A --tenant shop --json lookup gone@example.org
json 'j["decision"] == "drop" and j["matches"][0]["bounce_type"] == "hard"'
expect 0 $A --tenant shop --json lookup full@example.org
json 'j["decision"] == "deliver" and j["matches"] == []'
# the next message to gone@ is dropped by the milter
send news@shop.example second gone@example.org ok@example.org
check "second accepted" grep -q "^250" "$WORK/reply"
wait_until 30 "the second message at the peer" sh -c "[ -n \"\$(grep -l '^Subject: second' '$WORK'/peer/*.eml 2>/dev/null)\" ]"
J=$(peer_msgs second)
json_rcpts() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join(j["rcpt_tos"] + [r[0] for r in j["rejected_rcpts"]]))' "$1"; }
check "only ok@ got the second message ($(json_rcpts "$J"))" [ "$(json_rcpts "$J")" = "ok@example.org" ]
events dropped
json 'any(e["email"] == "gone@example.org" and e["reason"] == "bounce" for e in j)'
# one recipient left in the transaction: the token names it; its DSN is matched by it
send news@shop.example third gone2@example.org
wait_until 30 "the DSN for gone2@" ingested 2
events bounce
json 'any(e["email"] == "gone2@example.org" and e["bounce_type"] == "hard" and e["suppressed"] for e in j)'

# 2. sgrelay's door: its own deliveries
printf 'From: Shop <news@shop.example>\nSubject: relayed\n\nHello.\n' >"$WORK/relayed.eml"
sgr -f news@shop.example gone3@example.org full3@example.org ok3@example.org <"$WORK/relayed.eml"
expect_rc 0 "sgrelay accepts"
sgr -q
wait_until 30 "the relay's copy for ok3@" sh -c "[ -n \"\$(grep -l '^Subject: relayed' '$WORK'/peer/*.eml 2>/dev/null)\" ]"
J=$(peer_msgs relayed)
$PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["mail_from"], j["rcpt_tos"])' "$J" >"$WORK/from"
check "the relay's copy has the return path ($(cat "$WORK/from"))" grep -q "^bounces+[A-Za-z0-9_-]\{60,\}@shop.example \['ok3@example.org'\]" "$WORK/from"
RPTOKEN=$(sed 's/^bounces+\([^@]*\)@.*/\1/' "$WORK/from")
expect 0 $A --json token decode "$RPTOKEN"
json 'j["purpose"] == "return-path" and j["recipient"] == "ok3@example.org" and j["tenant"] == "shop"'
events bounce
json 'any(e["email"] == "gone3@example.org" and e["bounce_type"] == "hard" and e["source"] == "relay" and e["suppressed"] for e in j)'
json 'any(e["email"] == "full3@example.org" and e["bounce_type"] == "soft" and not e["suppressed"] for e in j)'
expect 0 $A --tenant shop --json lookup gone3@example.org
json 'j["decision"] == "drop"'

# 3a. an unsubscribe mail to a copy's List-Unsubscribe mailto, through Postfix
send news@shop.example news "$GID" reader@example.org
wait_until 30 "the newsletter at the peer" sh -c "[ -n \"\$(grep -l '^Subject: news' '$WORK'/peer/*.eml 2>/dev/null)\" ]"
MAILTO=$($PY - "$(grep -l '^Subject: news' "$WORK"/peer/*.eml)" <<'PY'
import email, re, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
print(re.search(r"<mailto:([^>?]+)", re.sub(r"\s+", " ", m["List-Unsubscribe"])).group(1))
PY
)
check "a mailto in List-Unsubscribe ($MAILTO)" sh -c "echo '$MAILTO' | grep -q '^unsubscribe+.*@shop.example$'"
$PY - "$SMTP" "$MAILTO" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.sendmail("reader@example.org", [sys.argv[2]],
           "From: reader@example.org\r\nTo: %s\r\nSubject: unsubscribe\r\n\r\n" % sys.argv[2])
s.quit()
PY
wait_until 30 "the unsubscribe mail ingested" ingested 3
expect 0 $A --tenant shop --json lookup reader@example.org --group "$GID"
json 'j["decision"] == "drop" and j["reason"] == "group_unsubscribe"'
events group_unsubscribe
json 'any(e["email"] == "reader@example.org" and e["asm_group_id"] == '"$GID"' and e["source"] == "mailto" for e in j)'

# 3b. an ARF complaint whose recipient was redacted: the return path in the
# enclosed original names it
RP=$("$SG_TOP_BUILDDIR/tests/integration/token_make" "$WORK/token.key" return-path shop complainer@example.org 0 -)
$PY - "$SMTP" "$RP" <<'PY'
import smtplib, sys
port, tok = int(sys.argv[1]), sys.argv[2]
arf = f"""From: Feedback Loop <fbl@isp.example>\r
To: fbl@shop.example\r
Subject: FW: complaint\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r
\r
--arf\r
Content-Type: text/plain\r
\r
This is an email abuse report.\r
--arf\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: ISP-FBL/1.0\r
Version: 1\r
Reporting-MTA: dns; fbl.isp.example\r
\r
--arf\r
Content-Type: text/rfc822-headers\r
\r
Return-Path: <bounces+{tok}@shop.example>\r
From: Shop <news@shop.example>\r
To: redacted@isp.example\r
Subject: news\r
\r
--arf--\r
"""
s = smtplib.SMTP("127.0.0.1", port)
s.sendmail("fbl@isp.example", ["fbl@shop.example"], arf)
s.quit()
PY
wait_until 30 "the complaint ingested" ingested 4
expect 0 $A --tenant shop --json lookup complainer@example.org
json 'j["decision"] == "drop" and j["reason"] == "spam_report"'
expect 0 $A --tenant shop --json spam-reports list
json 'len(j) == 1 and j[0]["email"] == "complainer@example.org" and j[0]["source"] == "fbl.isp.example"'
check_not "the ingest command never failed ($(grep 'sgingest' "$PF_LOG" | grep -v 'status=sent' | tail -3))" \
    grep -q 'delivered via sgingest.*status=\(deferred\|bounced\)\|relay=sgingest.*status=\(deferred\|bounced\)' "$PF_LOG"
done_ok
