#!/bin/sh
# milter_load - sgmilter under load, attached to a private Postfix on
# loopback (smtpd_milters and non_smtpd_milters, milter_default_action =
# tempfail) relaying to smtp-sink, with sgrelay delivering the recipients
# the milter hands to its spool.
#
# A. The milter killed (SIGKILL) twice during a run of messages, down about
#    2 s each time: once at a moment the run picks, once the instant its
#    hand-off of recipients to sgrelay's spool is durable, before it answers
#    Postfix.  Postfix tempfails (milter_default_action), the SMTP clients
#    retry (4xx or a broken connection: again, for the recipients not yet
#    accepted), mail from Postfix's own sendmail (some sent while the milter
#    is down) waits in Postfix; at the end every message reached each of its
#    recipients that is not suppressed exactly once, or is still in a queue
#    (Postfix's or sgrelay's spool, named), suppressed recipients received
#    nothing, and nothing was delivered twice.
# B. Suppressions added with sgadmin during a steady stream of messages
#    (a bounce, then a group suppression): every message whose transaction
#    ended (the 250 after DATA) more than 1 s after sgadmin returned did not
#    reach the address, and the milter's dropped event for its queue id
#    names the reason; messages that ended before sgadmin started were not
#    dropped by the milter, and reached the address (or, for a copy the
#    milter handed to the spool, were dropped by sgrelay, which decides
#    again before delivering: sgrelay(8)); no client saw anything but 250,
#    sgadmin exited 0 and printed nothing on stderr, and neither the milter
#    nor Postfix logged a problem with the milter.
#
# The load client and the checks over the sink's files, the queues and the
# event log are tests/integration/milter_load_client.py.
. "$(dirname "$0")/lib.sh"
. "$SG_TOP_SRCDIR/tests/postfix.sh"
: "${SGMILTER:?run through make check}"
: "${SGRELAY:?run through make check}"

need_postfix
CLIENT="$SG_TOP_SRCDIR/tests/integration/milter_load_client.py"
N=${MILTER_LOAD_MESSAGES:-300}
MILTER_PID=
RELAYD_PID=
CLIENT_PID=
WATCH_PID=
cleanup() {
    [ -z "$CLIENT_PID" ] || kill "$CLIENT_PID" 2>/dev/null || true
    [ -z "$WATCH_PID" ] || kill "$WATCH_PID" 2>/dev/null || true
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    [ -z "$RELAYD_PID" ] || kill "$RELAYD_PID" 2>/dev/null || true
    pf_cleanup
    # MILTER_LOAD_KEEP=DIR: keep the test's files (logs, sink, spool) there
    [ -z "${MILTER_LOAD_KEEP:-}" ] || cp -a "$WORK" "$MILTER_LOAD_KEEP" 2>/dev/null || true
    stop_peers
}
trap cleanup EXIT INT TERM

# one binary for every start, whatever a rebuild does meanwhile
cp "$SGMILTER" "$WORK/sgmilter"
MILTER_BIN="$WORK/sgmilter"
SMTP=$(free_port)
SINKP=$(free_port)
MPORT=$(free_port)
CONF="$WORK/sendguard.conf"
{
    conf_common
    cat <<EOF
spool = { path = "$WORK/spool"; retry_min = "1s"; retry_max = "2s"; };
relay = { smarthost = "127.0.0.1:$SINKP"; domain = "relay.test"; starttls = "none"; connections = 2; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = "$WORK/sgmilter.pid"; };
EOF
} >"$CONF"
A="-c $CONF"
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 $A --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
# the client's lists (milter_load_client.py: BOUNCED, UNSUBSCRIBED, GROUP_SUPPRESSED)
expect 0 $A bounces add gone@example.org
expect 0 $A unsubscribes add quit@example.org
expect 0 $A group-suppressions add "$GID" left@example.org
expect 0 $A token generate


# kill_milter - SIGKILL, as a crash
kill_milter() {
    kill -s KILL "$MILTER_PID" || fail "cannot kill sgmilter $MILTER_PID"
    wait "$MILTER_PID" 2>/dev/null || true
    MILTER_PID=
}

# lines FILE - records written so far
lines() {
    if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}

# wait_records FILE N SECONDS - until the client recorded N messages (or ended)
wait_records() {
    wr_n=$(($3 * 20))
    while [ "$(lines "$1")" -lt "$2" ]; do
        kill -0 "$CLIENT_PID" 2>/dev/null || return 0
        wr_n=$((wr_n - 1))
        [ "$wr_n" -gt 0 ] || fail "the client recorded $(lines "$1") messages, not $2, in $3 s: $(tail -5 "$WORK/client.err")"
        sleep 0.05
    done
}

# drain SECONDS - until Postfix's queue is empty: pickup woken (mail from
# sendmail that the milter deferred waits in maildrop) and the deferred
# queue flushed every second
drain() {
    dr_n=$(($1 * 10))
    dr_i=0
    while [ "$(pf_queue_count)" -ne 0 ]; do
        dr_n=$((dr_n - 1))
        [ "$dr_n" -gt 0 ] || fail "Postfix still holds $(pf_queue_count) messages after $1 s: $(pf_log 20)"
        if [ $((dr_i % 10)) -eq 0 ]; then
            /usr/sbin/postkick -c "$PF_CONF" public pickup W 2>/dev/null || true
            pf_postqueue -f 2>/dev/null || true
        fi
        dr_i=$((dr_i + 1))
        sleep 0.1
    done
}

# now - unix time with fractions, as the client's
now() {
    date +%s.%N
}

start_milter
sink_start "$WORK/sink" "$SINKP"
milter_cf "$WORK/milter.cf"
pf_start "$WORK/pf" "$SMTP" "$SINKP" "$WORK/milter.cf"

# --- A: the milter killed during a run -------------------------------------

# sgrelay's queue runner as a daemon during the run; sgrelay -q at the end
"$SGRELAY" -C "$CONF" -bd -q1 >"$WORK/relayd.log" 2>&1 &
RELAYD_PID=$!
T_A=$(now)
$PY "$CLIENT" send --port "$SMTP" --out "$WORK/load.jsonl" --plan load --prefix load \
    --count "$N" --threads 4 --group "$GID" --retry --deadline 40 \
    --sendmail "$PF_SENDMAIL" --sendmail-conf "$PF_CONF" --sendmail-every 8 \
    >"$WORK/client.out" 2>"$WORK/client.err" &
CLIENT_PID=$!
KILLS=0
# sendmail_while_down - 3 messages through Postfix's sendmail while the
# milter is down: pickup's cleanup cannot reach it and keeps them
sendmail_while_down() {
    $PY "$CLIENT" send --port "$SMTP" --out "$WORK/load-sendmail.jsonl" --plan load --prefix load \
        --first $((N + KILLS * 3)) --count 3 --threads 1 --group "$GID" \
        --sendmail "$PF_SENDMAIL" --sendmail-conf "$PF_CONF" --sendmail-every 1 ||
        fail "sendmail while the milter was down"
}
# The first kill at a moment the run picks; the second the instant the
# milter's hand-off to the spool is durable (an entry linked into
# spool/queue), before it answers Postfix: the client's retry must find it
# handed over already (sgmilter's once-only hand-off), not hand it again.  MILTER_LOAD_KILLS="progress
# progress" kills twice at moments the run picks.
for how in ${MILTER_LOAD_KILLS:-progress handoff}; do
    wait_records "$WORK/load.jsonl" $((N * (KILLS * 7 + 5) / 20)) 40
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    if [ "$how" = handoff ]; then
        rm -f "$WORK/watch.ready"
        $PY "$CLIENT" kill-on-handoff --spool "$WORK/spool" --pid "$MILTER_PID" \
            --ready "$WORK/watch.ready" --timeout 20 >"$WORK/watch.out" 2>&1 &
        WATCH_PID=$!
        wait_until 10 "the spool watcher" test -f "$WORK/watch.ready"
        set +e
        wait "$WATCH_PID"
        RC=$?
        set -e
        WATCH_PID=
        check "the milter was killed at a hand-off (status $RC): $(cat "$WORK/watch.out")" [ "$RC" -eq 0 ]
        wait "$MILTER_PID" 2>/dev/null || true
        MILTER_PID=
        HANDED=$(cut -d' ' -f1 "$WORK/watch.out")
        if grep -q "handed to the relay as $HANDED\$" "$WORK/milter.log"; then
            when="after it logged the hand-off"
        else
            when="before it logged the hand-off"
        fi
        echo "milter_load: sgmilter killed as it handed $(cat "$WORK/watch.out") to the spool" \
            "($when), after $(lines "$WORK/load.jsonl") of $N messages"
    else
        kill_milter
        echo "milter_load: sgmilter killed after $(lines "$WORK/load.jsonl") of $N messages"
    fi
    sendmail_while_down
    KILLS=$((KILLS + 1))
    sleep 2
    start_milter
done
check "the milter was killed during the run as planned (killed $KILLS times; raise MILTER_LOAD_MESSAGES)" \
    [ "$KILLS" -eq "$(echo ${MILTER_LOAD_KILLS:-progress handoff} | wc -w)" ]
set +e
wait "$CLIENT_PID"
RC=$?
set -e
CLIENT_PID=
check "the client ended well (status $RC): $(tail -5 "$WORK/client.err")" [ "$RC" -eq 0 ]
check "the client recorded $N messages ($(lines "$WORK/load.jsonl"))" [ "$(lines "$WORK/load.jsonl")" -eq "$N" ]
drain 40
kill -s TERM "$RELAYD_PID"
wait "$RELAYD_PID" 2>/dev/null || true
RELAYD_PID=
sgr -q
expect_rc 0 "sgrelay -q"
SMTP_4XX=$(grep -c 'smtpd.*milter-reject: .* 451 \|cleanup.*milter-reject: END-OF-MESSAGE.*proto=SMTP$' "$PF_LOG" || true)
PICKUP_DEFERRED=$(grep -c 'cleanup.*milter-reject: .*from=<[^>]*>$' "$PF_LOG" || true)
echo "milter_load: run A took $($PY -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$T_A" "$(now)") s;" \
    "Postfix answered 4xx for the missing milter $SMTP_4XX times to SMTP clients" \
    "and kept mail from sendmail for later $PICKUP_DEFERRED times"
check "Postfix kept mail from sendmail while the milter was down (maillog: $PICKUP_DEFERRED)" [ "$PICKUP_DEFERRED" -ge 1 ]
if [ -n "${HANDED:-}" ] && ! grep -q "handed to the relay as $HANDED\$" "$WORK/milter.log"; then
    check "the retry found $HANDED handed over already" \
        grep -q "handed to the relay as $HANDED already" "$WORK/milter.log"
fi
# run B goes on when A fails: both verdicts at the end
FAILED_A=
CHECKS=$((CHECKS + 1))
$PY "$CLIENT" check-load --sent "$WORK/load.jsonl" --sent "$WORK/load-sendmail.jsonl" \
    --prefix load --sink "$WORK/sink" --pfconf "$PF_CONF" --spool "$WORK/spool" \
    --expect-sent $((N + KILLS * 3)) --min-retried 1 ||
    FAILED_A="run A: a message was lost, duplicated, or reached a suppressed recipient (above)"
# the milter's own processing, outside the kills, raised no error
CHECKS=$((CHECKS + 1))
if grep -qi 'error' "$WORK/milter.log"; then
    FAILED_A="${FAILED_A:+$FAILED_A; }the milter logged errors: $(grep -i 'error' "$WORK/milter.log" | head -5)"
fi
[ -z "$FAILED_A" ] || echo "FAIL ($TESTNAME): $FAILED_A (run B follows)" >&2

# --- B: suppressions added during a stream ---------------------------------

MLOG_AT=$(wc -c <"$WORK/milter.log")
PLOG_AT=$(wc -c <"$PF_LOG")
$PY "$CLIENT" send --port "$SMTP" --out "$WORK/stream.jsonl" --plan stream --prefix stream \
    --duration 6 --threads 3 --group "$GID" --deadline 10 \
    >"$WORK/client.out" 2>"$WORK/client.err" &
CLIENT_PID=$!
sleep 1.5
B0=$(now)
sga $A bounces add target@example.org
B1=$(now)
RC_B=$RC
cp "$WORK/err" "$WORK/bounce.err"
sleep 1.5
G0=$(now)
sga $A group-suppressions add "$GID" gtarget@example.org
G1=$(now)
RC_G=$RC
cp "$WORK/err" "$WORK/group.err"
set +e
wait "$CLIENT_PID"
RC=$?
set -e
CLIENT_PID=
check "sgadmin bounces add exited 0 ($RC_B: $(cat "$WORK/bounce.err"))" [ "$RC_B" -eq 0 ]
check "sgadmin bounces add said nothing on stderr" [ ! -s "$WORK/bounce.err" ]
check "sgadmin group-suppressions add exited 0 ($RC_G: $(cat "$WORK/group.err"))" [ "$RC_G" -eq 0 ]
check "sgadmin group-suppressions add said nothing on stderr" [ ! -s "$WORK/group.err" ]
check "the stream client ended well (status $RC): $(tail -5 "$WORK/client.err")" [ "$RC" -eq 0 ]
drain 30
sgr -q
expect_rc 0 "sgrelay -q"
CHECKS=$((CHECKS + 1))
$PY "$CLIENT" check-stream --sent "$WORK/stream.jsonl" --prefix stream --sink "$WORK/sink" \
    --pfconf "$PF_CONF" --spool "$WORK/spool" --sgadmin "$SGADMIN" --conf "$CONF" --grace 1 \
    --bounce-start "$B0" --bounce-end "$B1" --group-start "$G0" --group-end "$G1" ||
    fail "run B: a suppression took effect late, or a client or the milter failed (above)"
tail -c +$((MLOG_AT + 1)) "$WORK/milter.log" >"$WORK/milter.b.log"
check "no error or warning in the milter's log during the stream: $(grep -i 'error\|warn' "$WORK/milter.b.log" | head -5)" \
    sh -c "! grep -qi 'error\|warn' '$WORK/milter.b.log'"
tail -c +$((PLOG_AT + 1)) "$PF_LOG" >"$WORK/pf.b.log"
check "Postfix saw no milter trouble during the stream: $(grep -i 'milter' "$WORK/pf.b.log" | grep -i 'warn\|error\|fatal\|reject' | head -5)" \
    sh -c "! grep -i 'milter' '$WORK/pf.b.log' | grep -qi 'warn\|error\|fatal\|reject'"
check "nothing bounced in Postfix" sh -c "! grep -q 'status=bounced' '$PF_LOG'"
[ -z "$FAILED_A" ] || fail "$FAILED_A"
done_ok
