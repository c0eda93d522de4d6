#!/bin/sh
# run-relay-bench - sgrelay beside Postfix on this machine, in one run:
#   (a) acceptance: wall time from spawning "sgrelay -C CONF -odq -f S R" with
#       a 4 KiB message on stdin to its exit, against Postfix's own
#       "sendmail -C PFDIR -f S R" into a private Postfix whose queue is on the
#       same file system; ACCEPT_N runs each, interleaved, spawned the same way
#       (tests/bench/relay_timer.py).  Bar: sgrelay's median no slower
#       (ratio sgrelay/postfix <= 1.0).
#   (b) delivery: DELIVER_N queued 4 KiB messages sent to smtp-sink on
#       loopback, messages/second: "sgrelay -q" from its spool, beside Postfix
#       sending the same number from its queue.  Bar: ratio >= 0.80.
# Postfix's messages are put on hold as they arrive (header_checks HOLD), so
# acceptance measures only the submission, and the delivery run starts from
# a full queue: "postsuper -H ALL" (not timed) then "postqueue -f" (timed).
# The delivery run's messages go into sgrelay with "sgrelay -odq" and into
# Postfix over SMTP (faster to fill; the queue file is the same kind).
# Both delivery times run from the command that starts the delivery until
# the sink has counted every message and the queue holds no file.
# Usage: tests/bench/run-relay-bench.sh   (as root; Postfix and smtp-sink
#   installed; the sink, the private Postfix and every file live under one
#   mktemp -d directory, removed on exit; ports are picked free at run time)
# Environment: SGRELAY (default relay/sgrelay under SG_TOP_BUILDDIR or the
#   top directory; the bench runs a copy of it),
#   ACCEPT_N (200), DELIVER_N (10000), ROUNDS (1, delivery rounds: ratio is
#   the median), SG_CONNECTIONS (4, sgrelay's default), SG_MSGS_PER_CONN (100), WARMUP (5),
#   KEEP=1 keeps the work directory.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SGRELAY=${SGRELAY:-${SG_TOP_BUILDDIR:-$top}/relay/sgrelay}
ACCEPT_N=${ACCEPT_N:-200}
DELIVER_N=${DELIVER_N:-10000}
ROUNDS=${ROUNDS:-1}
SG_CONNECTIONS=${SG_CONNECTIONS:-4}
SG_MSGS_PER_CONN=${SG_MSGS_PER_CONN:-100}
PY=/usr/bin/python3
timer=$top/tests/bench/relay_timer.py
. "$top/tests/postfix.sh"

[ "$(id -u)" -eq 0 ] || { echo "run-relay-bench: run as root (a private Postfix)" >&2; exit 2; }
[ -x "$SGRELAY" ] || { echo "run-relay-bench: no $SGRELAY (make relay/sgrelay)" >&2; exit 2; }
SGRELAY=$(cd "$(dirname "$SGRELAY")" && pwd)/$(basename "$SGRELAY")

work=$(mktemp -d /tmp/sg-relay-bench-XXXXXX)
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    pf_cleanup
    if [ "${KEEP:-0}" = 1 ]; then echo "# kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
# a copy: a rebuild of relay/sgrelay during the run must not change it
mkdir "$work/bin"
cp "$SGRELAY" "$work/bin/sgrelay"
sgrelay_id="$SGRELAY $(wc -c <"$SGRELAY") bytes, sha256 $(sha256sum "$SGRELAY" | cut -c1-12)"
SGRELAY=$work/bin/sgrelay
rc=0
"$SGRELAY" -Z >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 64 ] || { echo "run-relay-bench: $SGRELAY -Z exited $rc, not 64: a broken binary (being rebuilt?)" >&2; exit 2; }

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# the message: 4096 bytes with the header, LF line ends
$PY - "$work/msg" <<'EOF'
import sys
hdr = ("From: Bench Sender <s@example.com>\nTo: <rcpt@example.org>\n"
       "Subject: sendguard relay bench\nMIME-Version: 1.0\n"
       "Content-Type: text/plain; charset=us-ascii\n\n")
line = "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij.\n"
m = hdr
while len(m) + len(line) <= 4096:
    m += line
m += "x" * (4096 - len(m) - 1) + "\n"
open(sys.argv[1], "w").write(m)
EOF

sg_conf() { # DIR SINKPORT - write DIR/sendguard.conf
    mkdir -p "$1/store"
    cat >"$1/sendguard.conf" <<EOF
store = { path = "$1/store"; };
spool = { path = "$1/spool"; };
relay = { smarthost = "127.0.0.1:$2"; domain = "relay.test"; starttls = "none";
          connections = $SG_CONNECTIONS; messages_per_connection = $SG_MSGS_PER_CONN; };
EOF
}

SG_SINKPORT=$(free_port)
PF_SINKPORT=$(free_port)
PF_SMTPPORT=$(free_port)
SINK_STORE=no SINK_BACKLOG=1024 sink_start "$work/sink-sg" "$SG_SINKPORT"
SINK_STORE=no SINK_BACKLOG=1024 sink_start "$work/sink-pf" "$PF_SINKPORT"
# every bench message is held on arrival: acceptance leaves Postfix idle, and
# the delivery run starts from a full queue
printf '/^Subject: sendguard relay bench$/ HOLD\n' >"$work/hold.regexp"
cat >"$work/pf-extra.cf" <<EOF
header_checks = regexp:$work/hold.regexp
EOF
pf_start "$work/pf" "$PF_SMTPPORT" "$PF_SINKPORT" "$work/pf-extra.cf"
sg_conf "$work/sg-accept" "$SG_SINKPORT"

fs() { df -PT "$1" | awk 'NR == 2 { print $1 "(" $2 ")" }'; }
echo "# bench: sgrelay beside Postfix $(pf_postconf -h mail_version), $(nproc) cores," \
    "$(uname -r), $(date -u +%FT%TZ)"
echo "# sgrelay: $sgrelay_id"
echo "# queues: sgrelay $(fs "$work/sg-accept") postfix $(fs "$PF_QUEUE");" \
    "message $(wc -c <"$work/msg") bytes"

# --- (a) acceptance -------------------------------------------------------
echo "# acceptance: $ACCEPT_N runs each, interleaved, after ${WARMUP:-5} warm-up runs each"
ACCEPT_A_NAME=sgrelay \
ACCEPT_A_CMD="$SGRELAY -C $work/sg-accept/sendguard.conf -odq -f s@example.com rcpt@example.org" \
ACCEPT_B_NAME=postfix \
ACCEPT_B_CMD="$PF_SENDMAIL -C $PF_CONF -f s@example.com rcpt@example.org" \
    $PY "$timer" accept "$ACCEPT_N" "$work/msg" "$work/accept.times" >"$work/accept.out"
sed 's/^/# /' "$work/accept.out"
sg_med=$(awk '$1 == "sgrelay" { sub("median_ms=", "", $2); print $2 }' "$work/accept.out")
pf_med=$(awk '$1 == "postfix" { sub("median_ms=", "", $2); print $2 }' "$work/accept.out")
sg_p90=$(awk '$1 == "sgrelay" { sub("p90_ms=", "", $3); print $3 }' "$work/accept.out")
pf_p90=$(awk '$1 == "postfix" { sub("p90_ms=", "", $3); print $3 }' "$work/accept.out")
# what was accepted is really queued: ACCEPT_N + warm-up in each queue
warm=${WARMUP:-5}
sg_q=$(find "$work/sg-accept/spool/queue" -type f | wc -l)
pf_wait_queue $((ACCEPT_N + warm)) "maildrop incoming active deferred hold" 120
pf_q=$(pf_queue_count hold)
echo "# accepted and queued: sgrelay=$sg_q postfix_hold=$pf_q (expected $((ACCEPT_N + warm)) each)"
[ "$sg_q" -eq $((ACCEPT_N + warm)) ] || { echo "run-relay-bench: sgrelay's queue holds $sg_q" >&2; exit 1; }
accept_ratio=$(ratio "$sg_med" "$pf_med")
echo "accept_median_ms sgrelay=$sg_med postfix=$pf_med ratio=$accept_ratio"
echo "accept_p90_ms sgrelay=$sg_p90 postfix=$pf_p90 ratio=$(ratio "$sg_p90" "$pf_p90")"
pf_postsuper -d ALL 2>/dev/null
rm -rf "$work/sg-accept"

# --- (b) delivery ---------------------------------------------------------
# inject N messages into each queue (not timed), two submitters at a time
inject() { # NAME COMMAND... - run COMMAND < msg DELIVER_N times
    _name=$1
    shift
    _per=$(( (DELIVER_N + 1) / 2 ))
    _rest=$DELIVER_N
    _pids=
    for _w in 1 2; do
        _cnt=$_per
        [ "$_cnt" -le "$_rest" ] || _cnt=$_rest
        _rest=$((_rest - _cnt))
        (
            i=0
            while [ "$i" -lt "$_cnt" ]; do
                "$@" <"$work/msg" || { echo "run-relay-bench: $_name injection failed" >&2; exit 1; }
                i=$((i + 1))
            done
        ) &
        _pids="$_pids $!"
    done
    _rc=0
    for _p in $_pids; do wait "$_p" || _rc=1; done
    return $_rc
}

echo "# delivery: $DELIVER_N messages each, $ROUNDS round(s); sgrelay relay.connections=$SG_CONNECTIONS" \
    "relay.messages_per_connection=$SG_MSGS_PER_CONN; postfix" \
    "default_destination_concurrency_limit=$(pf_postconf -h default_destination_concurrency_limit)" \
    "initial_destination_concurrency=$(pf_postconf -h initial_destination_concurrency)" \
    "smtp_connection_cache_on_demand=$(pf_postconf -h smtp_connection_cache_on_demand)"
: >"$work/rates"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    sgd=$work/sg-deliver-$r
    sg_conf "$sgd" "$SG_SINKPORT"
    t0=$(date +%s)
    inject sgrelay "$SGRELAY" -C "$sgd/sendguard.conf" -odq -f s@example.com rcpt@example.org
    t1=$(date +%s)
    # into Postfix over SMTP (its smtpd and cleanup queue them, held): as
    # durable as its sendmail, and far quicker to fill 10,000
    $PY "$timer" inject "$PF_SMTPPORT" "$DELIVER_N" "$work/msg" 4
    pf_wait_queue "$DELIVER_N" hold 600
    t2=$(date +%s)
    sg_q=$(find "$sgd/spool/queue" -type f | wc -l)
    [ "$sg_q" -eq "$DELIVER_N" ] || { echo "run-relay-bench: sgrelay's queue holds $sg_q" >&2; exit 1; }
    echo "# round $r: queued $DELIVER_N into sgrelay in $((t1 - t0)) s, into postfix (held) in $((t2 - t1)) s"
    pf_postsuper -H ALL 2>/dev/null
    sync
    run_sg() {
        $PY "$timer" deliver "$work/sink-sg/sink.out" "$DELIVER_N" 1800 "$sgd/spool/queue" \
            -- "$SGRELAY" -C "$sgd/sendguard.conf" -q >"$work/sg.out"
        sg_s=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' "$work/sg.out")
    }
    run_pf() {
        $PY "$timer" deliver "$work/sink-pf/sink.out" "$DELIVER_N" 1800 \
            "$PF_QUEUE/incoming,$PF_QUEUE/active,$PF_QUEUE/deferred,$PF_QUEUE/hold" \
            -- /usr/sbin/postqueue -c "$PF_CONF" -f >"$work/pf.out"
        pf_s=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' "$work/pf.out")
    }
    if [ $((r % 2)) -eq 1 ]; then run_sg; run_pf; else run_pf; run_sg; fi
    sg_rate=$(echo "scale=1; $DELIVER_N / $sg_s" | bc -l)
    pf_rate=$(echo "scale=1; $DELIVER_N / $pf_s" | bc -l)
    rr=$(ratio "$sg_rate" "$pf_rate")
    echo "# round $r: sgrelay $DELIVER_N in ${sg_s}s, postfix $DELIVER_N in ${pf_s}s"
    echo "delivery_round=$r msgs_per_s sgrelay=$sg_rate postfix=$pf_rate ratio=$rr"
    echo "$sg_rate $pf_rate $rr" >>"$work/rates"
    rm -rf "$sgd"
    r=$((r + 1))
done
echo "# postfix log: $(grep -c 'status=sent' "$PF_LOG" || true) sent, $(grep -c 'status=deferred' "$PF_LOG" || true) deferred"
sg_rate=$(awk '{ print $1 }' "$work/rates" | median)
pf_rate=$(awk '{ print $2 }' "$work/rates" | median)
del_ratio=$(awk '{ print $3 }' "$work/rates" | median)
echo "delivery_msgs_per_s sgrelay=$sg_rate postfix=$pf_rate ratio=$del_ratio"

fail=0
v=PASS
[ "$(echo "$accept_ratio <= 1.0" | bc -l)" = 1 ] || { v=FAIL; fail=1; }
echo "bar_accept_median_ratio_le_1.0=$v"
v=PASS
[ "$(echo "$del_ratio >= 0.80" | bc -l)" = 1 ] || { v=FAIL; fail=1; }
echo "bar_delivery_ratio_ge_0.80=$v"
exit $fail
