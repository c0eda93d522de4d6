# lib.sh - shared by the integration tests: a private store per test,
# removed on exit, and assertions that say what they expected.
set -eu
: "${SGADMIN:?run through make check}"
: "${SG_TOP_SRCDIR:?run through make check}"
WORK=$(mktemp -d /tmp/sg-it-XXXXXX)
STORE="$WORK/store"
trap 'rm -rf "$WORK"' EXIT INT TERM
TESTNAME=$(basename "$0" .sh)
CHECKS=0

fail() {
    echo "FAIL ($TESTNAME): $*" >&2
    exit 1
}

# sga ARGS... - sgadmin on this test's store; output in $WORK/out, $WORK/err
sga() {
    set +e
    "$SGADMIN" --store "$STORE" "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
    return 0
}

# expect STATUS ARGS... - run sgadmin and require that exit status
expect() {
    want=$1
    shift
    sga "$@"
    CHECKS=$((CHECKS + 1))
    [ "$RC" -eq "$want" ] || fail "sgadmin $* exited $RC, expected $want; stderr: $(cat "$WORK/err"); stdout: $(head -c 600 "$WORK/out")"
}

# out_has TEXT / err_has TEXT / out_lacks TEXT
out_has() {
    CHECKS=$((CHECKS + 1))
    grep -qF -- "$1" "$WORK/out" || fail "stdout lacks '$1': $(head -c 800 "$WORK/out")"
}
err_has() {
    CHECKS=$((CHECKS + 1))
    grep -qF -- "$1" "$WORK/err" || fail "stderr lacks '$1': $(cat "$WORK/err")"
}
out_lacks() {
    CHECKS=$((CHECKS + 1))
    ! grep -qF -- "$1" "$WORK/out" || fail "stdout has '$1': $(head -c 800 "$WORK/out")"
}

# json EXPR - evaluate a Python expression over the JSON on stdout (as j)
json() {
    CHECKS=$((CHECKS + 1))
    /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$WORK/out" ||
        fail "JSON check failed: $1 on $(head -c 800 "$WORK/out")"
}

done_ok() {
    echo "$TESTNAME: $CHECKS checks passed"
}

# --- sgrelay and an SMTP peer (tests/integration/smtp_peer.py) ---

PY=/usr/bin/python3

# free_port - a TCP port nobody listens on now
free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# peer_start DIR PORT ARGS... - start the SMTP peer storing into DIR
peer_start() {
    pdir=$1
    pport=$2
    shift 2
    mkdir -p "$pdir"
    rm -f "$pdir/ready"
    $PY "$SG_TOP_SRCDIR/tests/integration/smtp_peer.py" --port "$pport" --dir "$pdir" \
        --ready "$pdir/ready" "$@" >"$pdir/peer.log" 2>&1 &
    PEER_PID=$!
    PEER_PIDS="${PEER_PIDS:-} $PEER_PID"
    for _ in $(seq 100); do
        [ -f "$pdir/ready" ] && return 0
        kill -0 "$PEER_PID" 2>/dev/null || fail "SMTP peer did not start: $(cat "$pdir/peer.log")"
        sleep 0.1
    done
    fail "SMTP peer did not start in 10 s"
}

# peer_stop - stop the peer started last
peer_stop() {
    kill "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
}

# stop_peers - on exit
stop_peers() {
    for p in ${PEER_PIDS:-}; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap stop_peers EXIT INT TERM

# sgr ARGS... - sgrelay with this test's configuration ($CONF); stdin as given
sgr() {
    set +e
    "$SGRELAY" -C "$CONF" "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
}

# expect_rc WANT WHAT - the last command's status
expect_rc() {
    CHECKS=$((CHECKS + 1))
    [ "$RC" -eq "$1" ] || fail "$2: exited $RC, expected $1; stderr: $(cat "$WORK/err")"
}

# count_files DIR PATTERN - how many files match
count_files() {
    find "$1" -maxdepth 1 -name "$2" -type f | wc -l
}

# check TEXT CONDITION... - a shell condition that must hold
check() {
    what=$1
    shift
    CHECKS=$((CHECKS + 1))
    "$@" || fail "$what"
}

# check_not TEXT COMMAND... - a command that must fail
check_not() {
    what=$1
    shift
    CHECKS=$((CHECKS + 1))
    ! "$@" || fail "$what"
}

# --- processes killed on purpose (relay_crash.sh) ---

# spawn_group OUT ERR CMD... - start CMD in the background as the leader of
# a process group of its own, which its children (forked workers) join, so
# that kill_group reaches them all; its pid (and group id) in $SPAWN_PID
spawn_group() {
    sg_out=$1
    sg_err=$2
    shift 2
    $PY -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' \
        "$@" >"$sg_out" 2>"$sg_err" &
    # shellcheck disable=SC2034 # for the caller
    SPAWN_PID=$!
}

# kill_group PID - SIGKILL every process of the group PID leads; reap PID.
# (dash's kill takes "-s KILL -- -PGID", not "-KILL -- -PGID")
kill_group() {
    kill -s KILL -- "-$1" || fail "cannot kill process group $1"
    wait "$1" 2>/dev/null || true
}

# group_procs PGID - "PID STAT ARGS" of the live (non-zombie) processes of a
# process group; nothing when none is left
group_procs() {
    ps -e -o pid=,pgid=,stat=,args= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { $2 = ""; print }'
}

# wait_until SECONDS WHAT COMMAND... - poll every 0.1 s until COMMAND
# succeeds; fail naming WHAT after SECONDS
wait_until() {
    wu_s=$1
    wu_n=$(($1 * 10))
    wu_what=$2
    shift 2
    until "$@"; do
        wu_n=$((wu_n - 1))
        [ "$wu_n" -gt 0 ] || fail "timed out after $wu_s s waiting for $wu_what"
        sleep 0.1
    done
}

# lock_free FILE - true when no process holds a flock(2) on FILE (it is
# taken without waiting and let go at once)
lock_free() {
    $PY -c 'import fcntl, sys; fcntl.flock(open(sys.argv[1], "rb"), fcntl.LOCK_EX | fcntl.LOCK_NB)' \
        "$1" 2>/dev/null
}

# --- sgmilter beside a private Postfix (milter_*.sh) ---

# need_postfix - root, postfix and smtp-sink, or skip the test (77); under
# CI (CI=true) their absence is a failure, not a skip
need_postfix() {
    if [ "$(id -u)" -ne 0 ] || ! command -v postfix >/dev/null || ! command -v smtp-sink >/dev/null; then
        [ "${CI:-}" = true ] && fail "needs root, postfix and smtp-sink (tools/debian-setup installs postfix)"
        echo "$TESTNAME: SKIP (needs root and postfix)"
        exit 77
    fi
}

# conf_common - the settings every milter and relay test shares, on stdout:
# store, DKIM keys, token key and tracker under $WORK
conf_common() {
    cat <<EOF
store = { path = "$WORK/store"; };
dkim = { key_dir = "$WORK/keys"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; };
EOF
}

# start_trackd - "$SGTRACKD -c $CONF -f" in the background, its log
# appended to $WORK/trackd.log, until its port $TPORT answers HTTP; its pid
# in TRACKD_PID
start_trackd() {
    : "${SGTRACKD:?run through make check}"
    "$SGTRACKD" -c "$CONF" -f >>"$WORK/trackd.log" 2>&1 &
    TRACKD_PID=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$TPORT/" 2>/dev/null && return 0
        kill -0 "$TRACKD_PID" 2>/dev/null || fail "sgtrackd did not start: $(cat "$WORK/trackd.log")"
        sleep 0.1
    done
    fail "sgtrackd did not listen in 10 s"
}

# tracked_urls FILE - the tracker's URLs in a message (headers unfolded,
# bodies decoded), one "KIND URL" per line, in order of appearance, the
# base https://t.example.net (conf_common's tracker.url) replaced by
# http://127.0.0.1:$TPORT, as the TLS proxy in front of sgtrackd would
tracked_urls() {
    $PY - "$1" "$TPORT" <<'PY'
import email, email.policy, re, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.compat32)
text = "\n".join(re.sub(r"\r?\n[ \t]+", " ", str(v)) for k, v in m.items())
for part in m.walk():
    if not part.is_multipart():
        text += "\n" + (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
for kind, tok in re.findall(r"https://t\.example\.net/([cuop])/([A-Za-z0-9_-]+)", text):
    print(kind, "http://127.0.0.1:%s/%s/%s" % (sys.argv[2], kind, tok))
PY
}

# start_milter - "${MILTER_BIN:-$SGMILTER} -c $CONF -f" in the background,
# its log appended to $WORK/milter.log, until inet port $MPORT answers; its
# pid in MILTER_PID
start_milter() {
    "${MILTER_BIN:-$SGMILTER}" -c "$CONF" -f >>"$WORK/milter.log" 2>&1 &
    MILTER_PID=$!
    for _ in $(seq 100); do
        $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$MPORT" 2>/dev/null && return 0
        kill -0 "$MILTER_PID" 2>/dev/null || fail "sgmilter did not start: $(cat "$WORK/milter.log")"
        sleep 0.1
    done
    fail "sgmilter did not listen in 10 s"
}

# milter_cf FILE - the main.cf lines attaching the milter on $MPORT to
# Postfix's smtpd and its own sendmail (pf_start's extra file)
milter_cf() {
    printf 'smtpd_milters = inet:127.0.0.1:%s\nnon_smtpd_milters = $smtpd_milters\nmilter_default_action = tempfail\nmilter_protocol = 6\n' \
        "$MPORT" >"$1"
}
