#!/bin/sh
# relay_crash - the queue runner (sgrelay -q) killed with SIGKILL, with its
# forked workers, in the middle of a delivery loses nothing, and sends again
# only what THE CRASH WINDOW of sgrelay(8) allows.  The SMTP peer holds a
# reply (smtp_peer.py --delay) and says so in delays.log; the run is killed
# then, at a known instant:
#  1. while the peer holds its reply to the end of the data (it has stored
#     the message; no 250 reached the runner): the entry is still queued,
#     pending, unlocked and listed by -bp; the next -q sends it again; each
#     recipient has it once or twice (twice is the documented window);
#  2. while the peer holds a RCPT reply (no data sent): outside the window,
#     so after the next -q each recipient has it exactly once;
#  3. twenty messages, two workers, one connection each: killed while each
#     worker's seventh message waits for its 250.  At the kill every
#     recipient of every message is either pending in the queue or at the
#     peer; after the next -q every message reached every recipient, at most
#     twice, only the messages the peer had before the kill are duplicated,
#     and the queue and tmp/ are empty; at most relay.connections messages
#     (those in flight) are duplicated: each message is marked as soon as
#     its data is accepted, not when the connection ends.
. "$(dirname "$0")/lib.sh"
: "${SGRELAY:?run through make check}"

PORT=$(free_port)
SINK="$WORK/sink"
SPOOL="$WORK/spool"
CONF="$WORK/sendguard.conf"
CONNS=2
HOLD=30 # seconds a held reply waits; the run is killed long before
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$SPOOL"; };
relay = { smarthost = "127.0.0.1:$PORT"; domain = "relay.test"; starttls = "none";
          connections = $CONNS; messages_per_connection = 100; timeout = "60s"; };
EOF
mkdir -p "$WORK/store"
# each delay applies only as often as a case needs it: the next runs go through
peer_start "$SINK" "$PORT" --delay "DATA:held-data@=${HOLD}x1" \
    --delay "RCPT:held-rcpt@=${HOLD}x1" --delay "DATA:@late.example.org=${HOLD}x$CONNS"

RUNNER=
trap '[ -z "$RUNNER" ] || kill -s KILL -- "-$RUNNER" 2>/dev/null; stop_peers' EXIT INT TERM

# tally.py sink|queue DIR - what the peer stored ("SUBJECT RCPT NNNNNN", one
# line per recipient of each copy) or what is queued ("SUBJECT RCPT STATE
# ID", one line per recipient of each entry), tab-separated
cat >"$WORK/tally.py" <<'EOF'
import json, os, re, sys

def subject(msg):
    m = re.search(rb"^Subject: ([^\r\n]*)", msg.split(b"\r\n\r\n", 1)[0], re.M)
    return m.group(1).decode() if m else "-"

mode, d = sys.argv[1:3]
if mode == "sink":
    for name in sorted(os.listdir(d)):
        if re.fullmatch(r"\d{6}\.eml", name):
            with open(os.path.join(d, name), "rb") as f:
                s = subject(f.read())
            with open(os.path.join(d, name[:6] + ".json")) as f:
                for r in json.load(f)["rcpt_tos"]:
                    print(f"{s}\t{r}\t{name[:6]}")
else:
    q = os.path.join(d, "queue")
    for name in sorted(os.listdir(q)):
        with open(os.path.join(q, name), "rb") as f:
            env, _, msg = f.read().partition(b"\n\n")
        for line in env.decode().split("\n"):
            w = line.split(" ")
            if w[0] == "R":
                print(f"{subject(msg)}\t{w[-1]}\t{w[1]}\t{name}")
EOF

# tally - refresh $WORK/sink.tab and $WORK/queue.tab
tally() {
    $PY "$WORK/tally.py" sink "$SINK" >"$WORK/sink.tab"
    $PY "$WORK/tally.py" queue "$SPOOL" >"$WORK/queue.tab"
}

# copies SUBJECT RCPT - how many copies the peer stored for RCPT (sink.tab)
copies() {
    awk -F '\t' -v s="$1" -v r="$2" '$1 == s && $2 == r { n++ } END { print n + 0 }' \
        "$WORK/sink.tab"
}

# queued_state SUBJECT RCPT - RCPT's state byte in the entry (queue.tab)
queued_state() {
    awk -F '\t' -v s="$1" -v r="$2" '$1 == s && $2 == r { print $3 }' "$WORK/queue.tab"
}

# entry_of SUBJECT - the queue id of the entry holding SUBJECT (queue.tab)
entry_of() {
    awk -F '\t' -v s="$1" '$1 == s { print $4; exit }' "$WORK/queue.tab"
}

# queue_msg SUBJECT RCPT... - queue (-odq) a message known by its Subject
# and Message-ID
queue_msg() {
    qs=$1
    shift
    printf 'Subject: %s\nMessage-ID: <%s@relay-crash.test>\n\nbody of %s\n' \
        "$qs" "$(echo "$qs" | tr ' ' -)" "$qs" >"$WORK/in"
    sgr -odq -f sender@example.com "$@" <"$WORK/in"
    expect_rc 0 "queue $qs"
}

held_count() {
    if [ -f "$SINK/delays.log" ]; then wc -l <"$SINK/delays.log"; else echo 0; fi
}

# holding N - the peer has begun N delays in all; fail at once if the run
# ended instead
holding() {
    [ "$(held_count)" -lt "$1" ] || return 0
    kill -0 "$RUNNER" 2>/dev/null || fail "the queue run ended before the peer held a reply: $(cat "$WORK/runner.err")"
    return 1
}

# runner_gone - no live process of the run: none in its process group, and
# none that runs with this test's configuration
runner_gone() {
    ps -e -o pid=,stat=,args= >"$WORK/ps"
    [ -z "$(group_procs "$RUNNER_GROUP")" ] &&
        ! awk -v c="-C $CONF " '$2 !~ /^Z/ && index($0 " ", c)' "$WORK/ps" | grep -q .
}

# run_and_kill N WHAT - start a queue run, wait until the peer has begun N
# more delays, SIGKILL the run and its workers; then $PROCS_BEFORE: how many
# processes the run had, $HELD: the subjects ("|"-separated) of the messages
# whose end of data the peer was holding
run_and_kill() {
    want=$(($(held_count) + $1))
    spawn_group "$WORK/runner.out" "$WORK/runner.err" "$SGRELAY" -C "$CONF" -v -q
    RUNNER=$SPAWN_PID
    RUNNER_GROUP=$SPAWN_PID
    wait_until 20 "the peer to hold $2" holding "$want"
    PROCS_BEFORE=$(group_procs "$RUNNER_GROUP" | wc -l)
    tail -n "$1" "$SINK/delays.log" >"$WORK/held"
    tally
    HELD=
    for num in $(awk '$3 != "-" { print $3 }' "$WORK/held"); do
        hs=$(awk -F '\t' -v m="$num" '$3 == m { print $1; exit }' "$WORK/sink.tab")
        HELD="$HELD|$hs"
        HELD_IDS="$HELD_IDS $(entry_of "$hs")"
    done
    HELD=${HELD#|}
    for id in $HELD_IDS; do
        check "the run holds the lock of $id while the peer holds its reply" \
            not lock_free "$SPOOL/queue/$id"
    done
    kill_group "$RUNNER"
    RUNNER=
    wait_until 5 "the killed run's processes to be gone" runner_gone
    check "no sgrelay of the killed run survives: $(cat "$WORK/ps")" runner_gone
}

not() { ! "$@"; }

# after_kill SUBJECT RCPT... - the entry of SUBJECT is queued, every RCPT
# pending, its lock free, and -bp lists it
after_kill() {
    ak=$1
    shift
    tally
    id=$(entry_of "$ak")
    check "$ak is still queued after the kill" [ -n "$id" -a -f "$SPOOL/queue/$id" ]
    for r in "$@"; do
        check "$ak: $r still pending after the kill ($(queued_state "$ak" "$r"))" \
            [ "$(queued_state "$ak" "$r")" = - ]
    done
    check "the lock of $ak's entry $id is free after the kill" lock_free "$SPOOL/queue/$id"
    sgr -bp
    expect_rc 0 "sgrelay -bp after the kill"
    out_has "$id"
    for r in "$@"; do out_has "$r"; done
}

queue_empty() {
    check "no entry left in queue/ ($(ls "$SPOOL/queue"))" [ "$(count_files "$SPOOL/queue" '*')" -eq 0 ]
    check "no file left in tmp/ ($(ls "$SPOOL/tmp"))" [ "$(count_files "$SPOOL/tmp" '*')" -eq 0 ]
}

# --- 1. killed while the peer holds the reply to the end of the data -------
queue_msg "crash1" held-data@example.org two@example.org
tally
HELD_IDS=
run_and_kill 1 "the end of the data of crash1"
check "the run was one process (one entry: no workers), found $PROCS_BEFORE" [ "$PROCS_BEFORE" -ge 1 ]
after_kill crash1 held-data@example.org two@example.org
check "the peer stored crash1 before the kill" [ "$(copies crash1 two@example.org)" -eq 1 ]
check "nothing in tmp/ after the kill" [ "$(count_files "$SPOOL/tmp" '*')" -eq 0 ]
sgr -q
expect_rc 0 "the queue run after the kill"
tally
for r in held-data@example.org two@example.org; do
    n=$(copies crash1 "$r")
    check "crash1 reached $r once or twice (the window), not $n times" [ "$n" -ge 1 -a "$n" -le 2 ]
done
C1=$(copies crash1 two@example.org)
queue_empty

# --- 2. killed while the peer holds a RCPT reply: outside the window -------
queue_msg "crash1b" one@example.org held-rcpt@example.org
tally
HELD_IDS=$(entry_of crash1b)
run_and_kill 1 "the RCPT of crash1b"
after_kill crash1b one@example.org held-rcpt@example.org
check "the peer has no copy of crash1b before the data" [ "$(copies crash1b one@example.org)" -eq 0 ]
sgr -q
expect_rc 0 "the queue run after the kill"
tally
for r in one@example.org held-rcpt@example.org; do
    n=$(copies crash1b "$r")
    check "crash1b reached $r exactly once, not $n times" [ "$n" -eq 1 ]
done
queue_empty

# --- 3. twenty messages over two connections, killed in flight ------------
NS=$(seq -w 1 20)
# rcpts NN - the recipients of message NN: the last eight have one at
# late.example.org, so the peer holds the first of them that each worker
# sends (each worker's seventh message, the workers taking every other one)
rcpts() {
    if [ "$1" -ge 13 ]; then echo "a-$1@example.org b-$1@late.example.org"; else echo "a-$1@example.org b-$1@example.org"; fi
}
for n in $NS; do
    # shellcheck disable=SC2046
    queue_msg "crash2 $n" $(rcpts "$n")
done
tally
check "twenty entries queued" [ "$(count_files "$SPOOL/queue" '*')" -eq 20 ]
HELD_IDS=
run_and_kill "$CONNS" "the data of one message per connection"
check "the run had its $CONNS workers at the kill ($PROCS_BEFORE processes)" \
    [ "$PROCS_BEFORE" -eq $((CONNS + 1)) ]
tally
check "one message held per connection ($HELD)" \
    [ "$(echo "$HELD" | tr '|' '\n' | grep -c '^crash2 ')" -eq "$CONNS" ]
check "the held messages are on different connections" \
    [ "$(awk '{ print $2 }' "$WORK/held" | sort -u | wc -l)" -eq "$CONNS" ]
awk -F '\t' '$1 ~ /^crash2 / { print $1 }' "$WORK/sink.tab" | sort -u >"$WORK/before"
NBEFORE=$(wc -l <"$WORK/before")
check "nothing in tmp/ after the kill" [ "$(count_files "$SPOOL/tmp" '*')" -eq 0 ]
# nothing lost at the kill: each recipient pending in the queue or at the peer
for n in $NS; do
    for r in $(rcpts "$n"); do
        check "crash2 $n: $r is pending or delivered after the kill" \
            [ "$(queued_state "crash2 $n" "$r")" = - -o "$(copies "crash2 $n" "$r")" -ge 1 ]
    done
done
# the messages in flight are still queued, pending, unlocked, listed
sgr -bp
expect_rc 0 "sgrelay -bp after the kill"
INFLIGHT=
for id in $HELD_IDS; do
    n=$(awk -F '\t' -v i="$id" '$4 == i { sub(/^crash2 /, "", $1); print $1; exit }' "$WORK/queue.tab")
    check "entry $id (in flight) is still queued" [ -n "$n" -a -f "$SPOOL/queue/$id" ]
    INFLIGHT="$INFLIGHT $n"
    for r in $(rcpts "$n"); do
        check "crash2 $n (in flight): $r still pending" [ "$(queued_state "crash2 $n" "$r")" = - ]
        out_has "$r"
    done
    check "the lock of crash2 $n's entry is free after the kill" lock_free "$SPOOL/queue/$id"
    out_has "$id"
done

sgr -q
expect_rc 0 "the queue run after the kill"
tally
DUPS=
for n in $NS; do
    for r in $(rcpts "$n"); do
        c=$(copies "crash2 $n" "$r")
        check "crash2 $n reached $r at least once and at most twice, not $c times" \
            [ "$c" -ge 1 -a "$c" -le 2 ]
        if [ "$c" -eq 2 ]; then
            check "crash2 $n, sent twice to $r, was at the peer before the kill" \
                grep -qx "crash2 $n" "$WORK/before"
        fi
    done
    [ "$(copies "crash2 $n" "a-$n@example.org")" -lt 2 ] || DUPS="$DUPS $n"
done
queue_empty
NDUPS=$(echo "$DUPS" | wc -w)
check "$NDUPS messages sent twice (${DUPS# }); at most the $CONNS in flight at the kill may be" \
    [ "$NDUPS" -le "$CONNS" ]

echo "$TESTNAME: crash1: $C1 copies; crash2: $NBEFORE messages at the peer at the kill, in flight:$INFLIGHT, sent twice: $NDUPS"
done_ok
