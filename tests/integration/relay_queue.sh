#!/bin/sh
# relay_queue - sgrelay as sendmail against a real SMTP server on loopback:
# -t with Bcc, bytes received equal to bytes queued, a 5xx for one of three
# recipients (one bounce, two delivered), a 4xx deferring one, the smarthost
# down (queued, exit 0, delivered by a later -q), -bs, -bp, the null sender
# never bounced, usage errors, and a full spool file system.
. "$(dirname "$0")/lib.sh"
: "${SGRELAY:?run through make check}"

PORT=$(free_port)
SINK="$WORK/sink"
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/spool"; retry_min = "1s"; retry_max = "2s"; };
relay = { smarthost = "127.0.0.1:$PORT"; domain = "relay.test"; starttls = "none";
          connections = 2; };
EOF
mkdir -p "$WORK/store"
peer_start "$SINK" "$PORT" --reply 'bad@=550 5.1.1 <bad@example.org>: User unknown' \
    --reply 'later@=451 4.2.0 try again later'

# -t, queued only (-odq): Bcc is a recipient and is removed from the header
printf 'Subject: one\nTo: a@example.org, bad@example.org\nCc: later@example.org\nBcc: hidden@example.org\n\nline one\n.dot line\n' >"$WORK/in"
sgr -t -odq -f sender@example.com <"$WORK/in"
expect_rc 0 "sgrelay -t -odq"
check "one entry queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq 1 ]
check "nothing left in tmp" [ "$(count_files "$WORK/spool/tmp" '*')" -eq 0 ]
Q=$(ls "$WORK/spool/queue")
# the message as queued: everything after the envelope's empty line
awk 'f{print} /^$/ && !f{f=1}' "$WORK/spool/queue/$Q" >"$WORK/queued.eml"
check_not "Bcc removed" grep -qi '^Bcc:' "$WORK/queued.eml"
check "Date added" grep -q '^Date: ' "$WORK/queued.eml"
check "Message-ID added" grep -q '^Message-ID: <.*@relay.test>' "$WORK/queued.eml"
check "From added from -f" grep -q '^From: <sender@example.com>' "$WORK/queued.eml"
check "CRLF line ends" grep -q "$(printf 'line one\r')" "$WORK/queued.eml"

sgr -bp
expect_rc 0 "sgrelay -bp"
out_has "$Q"
out_has "hidden@example.org"

# one queue run: a and hidden delivered together, bad bounced, later deferred
sgr -q
expect_rc 0 "sgrelay -q"
M=$(ls "$SINK"/*.eml | head -1)
check "bytes received are the bytes queued" cmp -s "$M" "$WORK/queued.eml"
json_rcpts=$($PY -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["rcpt_tos"])))' "${M%.eml}.json")
check "delivered to a and hidden ($json_rcpts)" [ "$json_rcpts" = "a@example.org hidden@example.org" ]
sgr -bp
out_has "later@example.org"
out_has "451 4.2.0 try again later"
out_lacks "bad@example.org"
out_lacks "MAILER-DAEMON"

# the bounce went out in the same run, not waiting for the next one
B=$(grep -l 'multipart/report' "$SINK"/*.eml | head -1)
check "a bounce reached the sender" [ -n "$B" ]
check "the bounce names bad@" grep -q 'Final-Recipient: rfc822; bad@example.org' "$B"
check "the bounce has status 5.1.1" grep -q 'Status: 5.1.1' "$B"
check "the bounce was sent from <>" $PY -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["mail_from"] != "")' "${B%.eml}.json"
sleep 2
sgr -q
check "only one bounce, also after another run" [ "$(grep -l 'multipart/report' "$SINK"/*.eml | wc -l)" -eq 1 ]
check "events: bounce recorded" grep -q '"event":"bounce"' "$WORK"/store/events/*.jsonl
check "events: deferred recorded" grep -q '"event":"deferred"' "$WORK"/store/events/*.jsonl
check "events: delivered recorded" grep -q '"event":"delivered"' "$WORK"/store/events/*.jsonl

# the null sender is never bounced
before=$(count_files "$WORK/spool/queue" '*')
reports=$(grep -l 'multipart/report' "$SINK"/*.eml | wc -l)
printf 'Subject: from nobody\n\nx\n' >"$WORK/in"
sgr -odi -f '<>' bad@example.org <"$WORK/in"
expect_rc 0 "sgrelay -f '<>'"
check "no bounce for <> queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq "$before" ]
check "no bounce for <> sent" [ "$(grep -l 'multipart/report' "$SINK"/*.eml | wc -l)" -eq "$reports" ]

# NOTIFY=NEVER (-N never): a 5xx recipient is given up without a bounce
printf 'Subject: nevernotify\n\nx\n' >"$WORK/in"
sgr -odi -N never -f nn@example.com bad@example.org <"$WORK/in"
expect_rc 0 "-N never to a refused recipient"
check "no bounce queued when NOTIFY=NEVER" [ "$(count_files "$WORK/spool/queue" '*')" -eq "$before" ]
check "no bounce sent when NOTIFY=NEVER" [ "$(grep -l 'multipart/report' "$SINK"/*.eml | wc -l)" -eq "$reports" ]
sgr -bp
out_lacks "nn@example.com"

# the smarthost down: queued, exit 0; delivered by a later run
peer_stop
printf 'Subject: while down\n\nqueued\n' >"$WORK/in"
sgr -odi -f sender@example.com down@example.org <"$WORK/in"
expect_rc 0 "sgrelay with the smarthost down"
sgr -bp
out_has "down@example.org"
peer_start "$SINK" "$PORT" --reply 'later@=451 4.2.0 try again later'
sgr -q
check "delivered after the smarthost came back" grep -lq 'Subject: while down' "$SINK"/*.eml
sgr -bp
out_lacks "down@example.org"

# without -i a line with a single dot ends the message; LF input
printf 'Subject: dots\n\nbefore\n.\nafter\n' >"$WORK/in"
sgr -odi -f sender@example.com dot@example.org <"$WORK/in"
expect_rc 0 "sgrelay without -i"
D=$(grep -l 'Subject: dots' "$SINK"/*.eml)
check_not "the dot ended the input" grep -q after "$D"
check "text before the dot kept" grep -q before "$D"

# a leading mbox "From " line (git format-patch output) is dropped, as
# Postfix does, so the header after it is the header
printf 'From 0123456789abcdef Mon Sep 17 00:00:00 2001\nFrom: Dev <dev@example.com>\nTo: list@example.org\nSubject: [PATCH] mbox\n\npatch\n' >"$WORK/in"
sgr -t -i -odi <"$WORK/in"
expect_rc 0 "sgrelay -t with a leading From_ line"
P=$(grep -l 'Subject: \[PATCH\] mbox' "$SINK"/*.eml)
check "the From_ line is gone and the header kept" sh -c "head -1 '$P' | grep -q '^From: Dev'"

# an address list that does not parse is named, with the parser's reason
printf 'To: Broken <nobody@\nSubject: x\n\nx\n' >"$WORK/in"
sgr -t -i -odq <"$WORK/in"
expect_rc 65 "-t with a broken To field"
check "one reason, stated once ($(cat "$WORK/err"))" grep -q "cannot parse the To field: unbalanced '<'" "$WORK/err"

# -bs: an SMTP dialogue on stdin/stdout, with DSN parameters
printf 'EHLO client\r\nMAIL FROM:<bs@example.com> RET=HDRS ENVID=abc123\r\nRCPT TO:<bs1@example.org> NOTIFY=FAILURE ORCPT=rfc822;bs1@example.org\r\nDATA\r\nSubject: bs\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n' >"$WORK/in"
sgr -bs -odi <"$WORK/in"
expect_rc 0 "sgrelay -bs"
out_has "250 2.0.0 Ok: queued as"
out_has "221 2.0.0"
S=$(grep -l 'Subject: bs' "$SINK"/*.eml)
check "-bs message delivered" [ -n "$S" ]
check "-bs dot unstuffed" grep -q '^\.leading dot' "$S"
check "DSN parameters passed on" $PY -c '
import json,sys; j=json.load(open(sys.argv[1]))
sys.exit(not (j["mail_params"].get("RET")=="HDRS" and j["mail_params"].get("ENVID")=="abc123" and j["rcpt_params"][0].get("NOTIFY")=="FAILURE"))' "${S%.eml}.json"

# the smarthost in brackets, as Postfix's relayhost writes it; IPv6 refused
sed "s/smarthost = \"127.0.0.1:$PORT\"/smarthost = \"[127.0.0.1]:$PORT\"/" "$CONF" >"$WORK/brackets.conf"
printf 'Subject: brackets\n\nbody\n' >"$WORK/in"
set +e
"$SGRELAY" -C "$WORK/brackets.conf" -odi -f s@example.com br@example.org <"$WORK/in" 2>"$WORK/err"
RC=$?
set -e
expect_rc 0 "[127.0.0.1]:PORT"
check "delivered through [127.0.0.1]:PORT" grep -lq 'Subject: brackets' "$SINK"/*.eml
sed "s/smarthost = \"127.0.0.1:$PORT\"/smarthost = \"[::1]:$PORT\"/" "$CONF" >"$WORK/v6.conf"
set +e
"$SGRELAY" -C "$WORK/v6.conf" -bp >/dev/null 2>"$WORK/err"
RC=$?
set -e
expect_rc 78 "an IPv6 smarthost"
check "the reason says IPv6 ($(cat "$WORK/err"))" grep -q "relay.smarthost.*IPv6" "$WORK/err"

# usage errors name the flag
sgr -X foo@example.org </dev/null
expect_rc 64 "unknown flag"
err_has "unknown option -X"
sgr -bz </dev/null
expect_rc 64 "unknown -b mode"
err_has "-bz"
printf 'Subject: x\n\n' >"$WORK/in"
sgr -f sender@example.com <"$WORK/in"
expect_rc 64 "no recipients"
err_has "no recipients"
printf 'Subject: x\n\n' >"$WORK/in"
sgr -f sender@example.com 'not an address' <"$WORK/in"
expect_rc 65 "bad recipient"
err_has "bad recipient address"
sgr -v -f sender@example.com 'not an address' <"$WORK/in"
expect_rc 65 "bad recipient with -v"
check "with -v the error is said once" [ "$(grep -c 'bad recipient address' "$WORK/err")" -eq 1 ]
# accepted and ignored, as sendmail's callers pass them
printf 'Subject: cron\n\nok\n' >"$WORK/in"
sgr -FCronDaemon -i -odq -oem -oi -O DeliveryMode=b -t -f root cron@example.org <"$WORK/in"
expect_rc 0 "cron's flags"

# a smarthost without 8BITMIME: the -B8BITMIME message waits, with its own
# reason, and does not hold up the 7-bit message queued before it
P8=$(free_port)
peer_start "$WORK/sink8" "$P8" --no-8bitmime
sed "s/127.0.0.1:$PORT/127.0.0.1:$P8/; s#$WORK/spool#$WORK/spool8#; s/connections = 2/connections = 1/" "$CONF" >"$WORK/8.conf"
grep -q "connections = 1" "$WORK/8.conf" || fail "8.conf: one connection"
printf 'Subject: seven\n\nplain\n' >"$WORK/in"
"$SGRELAY" -C "$WORK/8.conf" -odq -f s@example.com seven@example.org <"$WORK/in"
printf 'Subject: eight\n\ncaf\303\251\n' >"$WORK/in"
"$SGRELAY" -C "$WORK/8.conf" -odq -B8BITMIME -f s@example.com eight@example.org <"$WORK/in"
set +e
"$SGRELAY" -C "$WORK/8.conf" -q >/dev/null 2>&1
set -e
check "the 7-bit message went" grep -lq 'Subject: seven' "$WORK"/sink8/*.eml
check_not "the 8-bit one did not" grep -lq 'Subject: eight' "$WORK"/sink8/*.eml
set +e
"$SGRELAY" -C "$WORK/8.conf" -bp >"$WORK/out" 2>&1
set -e
out_has "eight@example.org"
out_has "does not offer 8BITMIME"
out_lacks "TLS:"
peer_stop

# a full spool file system: a clean failure and nothing half-written.  A
# small tmpfs where we may mount one; else a file size limit (EFBIG), which
# takes the same path through the code.
mkdir -p "$WORK/small"
head -c 200000 /dev/zero | tr '\0' 'x' | fold -w 70 >"$WORK/big.txt"
SMALL_CONF="$WORK/small.conf"
sed "s#$WORK/spool#$WORK/small/spool#" "$CONF" >"$SMALL_CONF"
set +e
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=64k tmpfs "$WORK/small" 2>/dev/null; then
    MOUNTED=1
    "$SGRELAY" -C "$SMALL_CONF" -odq -f sender@example.com big@example.org <"$WORK/big.txt" 2>"$WORK/err"
    RC=$?
    WANT="No space left"
else
    MOUNTED=0
    mkdir -p "$WORK/small/spool"
    "$SGRELAY" -C "$SMALL_CONF" -bp >/dev/null 2>&1 # creates the spool when root
    (trap '' XFSZ; ulimit -f 64; exec "$SGRELAY" -C "$SMALL_CONF" -odq -f sender@example.com big@example.org <"$WORK/big.txt" 2>"$WORK/err")
    RC=$?
    WANT="File too large"
fi
set -e
expect_rc 75 "a full spool"
err_has "$WANT"
check "no partial entry in queue" [ "$(count_files "$WORK/small/spool/queue" '*')" -eq 0 ]
check "no partial entry in tmp" [ "$(count_files "$WORK/small/spool/tmp" '*')" -eq 0 ]
[ "$MOUNTED" -eq 0 ] || umount "$WORK/small"

done_ok
