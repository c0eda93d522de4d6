#!/bin/sh
# milter_daemon - sgmilter as a daemon beside a private Postfix: recipients
# handed to the relay leave at once when sgrelay's daemon listens (no queue
# run needed), through etc/'s next hop (master.cf.sendguard); a copy the relay made that passes the milter again is left
# alone (its marker verified and removed), a forged or borrowed marker is
# not; SIGHUP reloads the configuration without dropping the MTA's
# connection (and keeps the old one when the new does not load); SIGTERM
# finishes the message in flight before the process exits.
. "$(dirname "$0")/lib.sh"
. "$SG_TOP_SRCDIR/tests/postfix.sh"
: "${SGMILTER:?run through make check}"

need_postfix
MILTER_PID=
RUNNER_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    [ -z "$RUNNER_PID" ] || kill "$RUNNER_PID" 2>/dev/null || true
    pf_cleanup
    stop_peers
}
trap cleanup EXIT INT TERM
[ "${KEEP:-}" = 1 ] && stop_peers() { echo "kept $WORK" >&2; }

SMTP=$(free_port)
SINKP=$(free_port)
MPORT=$(free_port)
CONF="$WORK/sendguard.conf"
# conf SMARTHOST ALL_DROPPED - the configuration, written again by the reload test
conf() {
    {
        conf_common
        cat <<EOF
spool = { path = "$WORK/spool"; };
relay = { smarthost = "$1"; domain = "relay.test"; starttls = "none"; policy = true; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = "$WORK/sgmilter.pid"; all_dropped = "$2"; };
EOF
    } >"$CONF"
}
conf "127.0.0.1:$SINKP" discard
A="-c $CONF"
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 $A --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 $A bounces add gone@example.org
expect 0 $A token generate
expect 0 $A dkim generate --domain shop.example --selector s1
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
KEYSPEC="s1,shop.example,$WORK/keys/shop.example/s1.pem"

start_milter
sink_start "$WORK/sink" "$SINKP"
milter_cf "$WORK/milter.cf"
pf_start "$WORK/pf" "$SMTP" "$SINKP" "$WORK/milter.cf"
# etc/'s next hop for the relay's copies: a loopback smtpd without the milter
NEXT=$(free_port)
sed "s/^127.0.0.1:10026 inet n - - -/127.0.0.1:$NEXT inet n - n -/" \
    "$SG_TOP_SRCDIR/etc/postfix/master.cf.sendguard" >>"$PF_CONF/master.cf"
postfix -c "$PF_CONF" reload >/dev/null 2>&1
for _ in $(seq 50); do ss -Hltn "sport = :$NEXT" | grep -q . && break; sleep 0.1; done

# session [STEP...] - one SMTP session to Postfix; each STEP is
#   send:SUBJECT:RCPT,RCPT[:HEADER]  a message (the reply on a line of its own)
#   hup / term                       signal the milter (hup: then wait until
#                                    the milter's log says it reloaded)
#   mail:RCPT / data:SUBJECT         MAIL and RCPT now, DATA in a later step
#   sleep:SECONDS
# The replies go to $WORK/replies, one line each: "SUBJECT CODE TEXT".
session() {
    $PY - "$SMTP" "$MILTER_PID" "$WORK/milter.log" "$@" >"$WORK/replies" 2>&1 <<'PY' || true
import os, signal, smtplib, sys, time
port, pid, log, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def reloads():
    with open(log, errors="replace") as f:
        return sum("reloaded " in line for line in f)
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo()

def message(subj, extra=""):
    return ("From: Shop <news@shop.example>\r\nTo: undisclosed-recipients:;\r\n"
            "Subject: %s\r\n%s\r\nbody of %s\r\n" % (subj, extra, subj))

for step in steps:
    kind, _, arg = step.partition(":")
    if kind == "send":
        subj, rcpts, *extra = arg.split(":", 2)
        hdr = extra[0].replace("\\n", "\r\n") if extra else ""
        try:
            s.sendmail("news@shop.example", rcpts.split(","), message(subj, hdr))
            print(subj, 250)
        except smtplib.SMTPResponseException as e:
            print(subj, e.smtp_code, e.smtp_error.decode())
            s.rset()
        sys.stdout.flush()
    elif kind == "hup":
        before, until = reloads(), time.time() + 20
        os.kill(pid, signal.SIGHUP)
        while reloads() == before and time.time() < until:
            time.sleep(0.05)
    elif kind == "term":
        os.kill(pid, signal.SIGTERM)
    elif kind == "mail":
        print("mail", s.mail("news@shop.example")[0], s.rcpt(arg)[0])
    elif kind == "data":
        code, text = s.data(message(arg).encode())
        print(arg, code, text.decode())
    elif kind == "sleep":
        time.sleep(float(arg))
s.quit()
PY
}

# reply SUBJECT - the code the session got for it
reply() {
    awk -v s="$1" '$1 == s { print $2; exit }' "$WORK/replies"
}

# arrived SUBJECT - the sink's files holding that message
arrived() {
    grep -l "^Subject: $1\$" "$WORK"/sink/*.* 2>/dev/null || true
}

# wait_count SUBJECT N - until N copies arrived (at most 20 s)
wait_count() {
    for _ in $(seq 200); do
        [ "$(arrived "$1" | wc -l)" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "$2 copies of '$1' did not arrive (got $(arrived "$1" | wc -l)): $(pf_log 10)"
}

# clean FILE - what the recipient's server would see (no smtp-sink lines)
clean() {
    grep -v '^X-\(Client-Addr\|Client-Proto\|Helo-Args\|Mail-Args\|Rcpt-Args\):' "$1"
}

# 1. a group message to three recipients: each gets one copy whose
# List-Unsubscribe names that recipient, DKIM-verified; the two handed to the
# relay leave at once when its daemon listens, through etc/'s next hop
# (Postfix without the milter)
conf "127.0.0.1:$NEXT" discard
"$SGRELAY" -C "$CONF" -bd -q1h >"$WORK/runner.log" 2>&1 &
RUNNER_PID=$!
for _ in $(seq 50); do [ -p "$WORK/spool/kick" ] && break; sleep 0.1; done
check "the relay's daemon listens on the kick FIFO" [ -p "$WORK/spool/kick" ]
session "send:kicked:a@example.org,b@example.org,c@example.org:X-SMTPAPI: {\"asm_group_id\": $GID}\\n"
check "accepted ($(cat "$WORK/replies"))" [ "$(reply kicked)" = 250 ]
wait_count kicked 3
check "the spool is empty again" [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ]
for f in $(arrived kicked); do
    clean "$f" >"$WORK/got.eml"
    check "one List-Unsubscribe in $f" [ "$(grep -c '^List-Unsubscribe:' "$WORK/got.eml")" -eq 1 ]
    who=$(sed -n 's/^X-Rcpt-Args: <\(.*\)>.*/\1/p' "$f")
    tok=$($PY -c 'import email,re,sys; m=email.message_from_binary_file(open(sys.argv[1],"rb")); print(re.search(r"/u/([A-Za-z0-9_-]+)>", m["List-Unsubscribe"]).group(1))' "$WORK/got.eml")
    expect 0 $A --json token decode "$tok"
    json "j['recipient'] == '$who' and j['group'] == $GID"
    $PY "$VERIFY" "$WORK/got.eml" "$KEYSPEC" >"$WORK/verify" 2>&1 ||
        fail "DKIM of $f does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
done
# the relay's two copies went by the next hop, unseen by the milter (still
# marked); Postfix's own copy was never marked
check "two copies marked" [ "$(grep -l '^X-Sendguard-Copy: t=' $(arrived kicked) | wc -l)" -eq 2 ]
check_not "the milter did not see them" grep -q 'a copy sendguard made already' "$WORK/milter.log"
check "they came through the next hop" [ "$(grep -c 'postfix/sendguard/smtpd.*client=localhost' "$PF_LOG")" -ge 1 ]
kill "$RUNNER_PID"
wait "$RUNNER_PID" 2>/dev/null || true
RUNNER_PID=

# 2. the relay's copies sent through the same Postfix again: left alone
conf "127.0.0.1:$SMTP" discard
printf 'From: Shop <news@shop.example>\nSubject: again\nX-SMTPAPI: {"asm_group_id": %s}\n\nbody\n' "$GID" |
    "$SGRELAY" -C "$CONF" -odq -f news@shop.example d@example.org e@example.org
"$SGRELAY" -C "$CONF" -q
wait_count again 2
for f in $(arrived again); do
    clean "$f" >"$WORK/got.eml"
    check "one signature in $f" [ "$(grep -c '^DKIM-Signature:' "$WORK/got.eml")" -eq 1 ]
    check "one List-Unsubscribe in $f" [ "$(grep -c '^List-Unsubscribe:' "$WORK/got.eml")" -eq 1 ]
    check_not "the marker removed from $f" grep -q '^X-Sendguard-Copy' "$WORK/got.eml"
    $PY "$VERIFY" "$WORK/got.eml" "$KEYSPEC" >"$WORK/verify" 2>&1 ||
        fail "DKIM of $f does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
done
check "the milter says so" [ "$(grep -c 'a copy sendguard made already' "$WORK/milter.log")" -eq 2 ]
expect 0 $A --json events list --type processed
json "sorted(e['email'] for e in j if e['email'][0] in 'de') == ['d@example.org', 'e@example.org']"

# a marker made for another recipient, or forged, counts for nothing
conf "127.0.0.1:$SINKP" discard
printf 'From: Shop <news@shop.example>\nSubject: borrowed\n\nbody\n' |
    "$SGRELAY" -C "$CONF" -odq -f news@shop.example f@example.org
"$SGRELAY" -C "$CONF" -q
wait_count borrowed 1
MARK=$(sed -n 's/^X-Sendguard-Copy: //p' "$(arrived borrowed)" | tr -d '\r')
check "the relay's copy carries a marker ($MARK)" [ -n "$MARK" ]
session "send:borrowed2:gone@example.org:X-Sendguard-Copy: $MARK\\n" \
    "send:forged:gone@example.org,ok@example.org:X-Sendguard-Copy: t=$(date +%s); m=1.AAAAAAAAAAAAAAAAAAAAAA\\n"
wait_count forged 1
check "gone@ dropped despite a marker made for f@" [ -z "$(arrived borrowed2)" ]
F=$(arrived forged)
check "a forged marker: gone@ dropped, ok@ delivered" [ "$(sed -n 's/^X-Rcpt-Args: <\(.*\)>.*/\1/p' "$F")" = ok@example.org ]
check_not "the forged marker removed" grep -q '^X-Sendguard-Copy' "$F"

# 3. SIGHUP: a new configuration for the next message of the same session
conf "127.0.0.1:$SINKP" reject
session send:before-hup:gone@example.org hup send:after-hup:gone@example.org
check "before the reload: discarded (250)" [ "$(reply before-hup)" = 250 ]
check "after it, on the same connection: rejected ($(cat "$WORK/replies"))" [ "$(reply after-hup)" = 550 ]
check "still the same process" kill -0 "$MILTER_PID"
check "the reload is logged" grep -q "reloaded $CONF" "$WORK/milter.log"
# a configuration that does not load: the running one stays
echo 'milter = { all_dropped = "maybe"; };' >"$CONF"
kill -HUP "$MILTER_PID"
for _ in $(seq 100); do grep -q 'the running configuration stays' "$WORK/milter.log" && break; sleep 0.1; done
check "the failed reload is logged" grep -q 'reload: .*the running configuration stays' "$WORK/milter.log"
session send:bad-conf:gone@example.org
check "the old configuration still rules (550)" [ "$(reply bad-conf)" = 550 ]
conf "127.0.0.1:$SINKP" discard
# a burst: a SIGHUP arriving while the handler runs must not reach
# libmilter's own signal thread (which would stop the milter)
i=0
while [ "$i" -lt 200 ]; do kill -HUP "$MILTER_PID"; i=$((i + 1)); done
sleep 1
check "two hundred SIGHUPs in a row: still running" kill -0 "$MILTER_PID"
session send:after-burst:ok@example.org
check "and answering ($(cat "$WORK/replies"); $(tail -n 3 "$WORK/milter.log"))" [ "$(reply after-burst)" = 250 ]

# a unix socket, made as root, is given to milter.user before it becomes that user
sed 's|socket = "inet:[^"]*"|socket = "unix:'"$WORK"'/user.sock"; user = "nobody"|; s|pid_file = "[^"]*"|pid_file = ""|' \
    "$CONF" >"$WORK/user.conf"
"$SGMILTER" -c "$WORK/user.conf" -f >"$WORK/user.log" 2>&1 &
USER_PID=$!
for _ in $(seq 50); do [ -S "$WORK/user.sock" ] && break; sleep 0.1; done
for _ in $(seq 50); do [ "$(ps -o user= -p "$USER_PID")" = nobody ] && break; sleep 0.1; done
check "the socket is milter.user's ($(stat -c '%U:%G' "$WORK/user.sock" 2>&1); $(cat "$WORK/user.log"))" \
    [ "$(stat -c '%U:%G' "$WORK/user.sock")" = "nobody:$(id -gn nobody)" ]
check "and the milter runs as that user" [ "$(ps -o user= -p "$USER_PID")" = nobody ]
kill "$USER_PID"
wait "$USER_PID" 2>/dev/null || true

# 4. SIGTERM with a message in flight: it is finished, then the milter stops
session mail:ok@example.org term sleep:1 data:in-flight
check "the message in flight is accepted ($(cat "$WORK/replies"))" [ "$(reply in-flight)" = 250 ]
for _ in $(seq 50); do kill -0 "$MILTER_PID" 2>/dev/null || break; sleep 0.1; done
check_not "then the milter is gone" kill -0 "$MILTER_PID" 2>/dev/null
wait "$MILTER_PID" 2>/dev/null || true
MILTER_PID=
wait_count in-flight 1
clean "$(arrived in-flight)" >"$WORK/got.eml"
$PY "$VERIFY" "$WORK/got.eml" "$KEYSPEC" >"$WORK/verify" 2>&1 ||
    fail "the message in flight was not signed: $(cat "$WORK/verify")"
CHECKS=$((CHECKS + 1))
check "the stop is logged" grep -q 'stopping: [1-9][0-9]* connection(s) open' "$WORK/milter.log"
done_ok
