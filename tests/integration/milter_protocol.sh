#!/bin/sh
# milter_protocol - sgmilter driven without an MTA, by miltertest(8) and the
# Lua scripts of tests/milter (one per corner of the protocol), and by a
# small milter client of our own where miltertest cannot look (the text of
# a reply given before the end of the message):
#   several_messages  six transactions on one connection: each end removes
#                     exactly its own suppressed recipients; no X-SMTPAPI,
#                     From or refusal leaks into the next message
#   aborted           aborted transactions (after the header, in the body,
#                     after MAIL), then complete ones decided afresh; one
#                     signature over the last message's own content
#   negotiation       only the actions and steps it uses; SMFIR_SKIP and no
#                     change for a message needing nothing; each connection
#                     answered after its own negotiation
#   tenant            the tenant by SASL login ({auth_authen}), envelope
#                     sender's domain, From domain, in that order
#   header_count      milter.max_headers (default 1000; 20 here)
#   oversize          milter.max_header_size, body_memory (the private
#                     unlinked temporary file in milter.tmp_dir, or $TMPDIR
#                     when that is empty), max_body_size
# The signatures of the messages the scripts save are checked here: the
# body hash recomputed, the whole message verified by dkim_verify.py.
# sgmilter must still run after each script.  A failing script does not
# stop the others: all run, and the test fails at the end naming them.
. "$(dirname "$0")/lib.sh"
: "${SGMILTER:?run through make check}"

if ! command -v miltertest >/dev/null; then
    [ "${CI:-}" = true ] && fail "needs miltertest (Debian package miltertest)"
    echo "milter_protocol: SKIP (needs miltertest)"
    exit 77
fi
$PY -c 'import dkim' 2>/dev/null ||
    fail "python3-dkim is needed (tools/debian-setup installs it)"
MT="$SG_TOP_SRCDIR/tests/milter"
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
MILTER_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# conf FILE PORT EXTRA - a configuration for one sgmilter on this test's store
conf() {
    cat >"$1" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/spool"; };
dkim = { key_dir = "$WORK/keys"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; };
milter = { socket = "inet:$2@127.0.0.1"; pid_file = ""; $3 };
tenants = ( { name = "acme"; logins = [ "acme-app" ]; domains = [ "acme.example" ]; },
            { name = "beta"; logins = [ "beta-app" ]; domains = [ "beta.example" ]; } );
EOF
}

# start_milter CONF LOG [NAME=VALUE...] - sgmilter -f (with that
# environment) until its port answers; its pid in $MILTER_PID, its port in
# $MPORT.  Fails (status 1) when it does not start: the log says why.
start_milter() {
    sm_conf=$1
    sm_log=$2
    shift 2
    MPORT=$(sed -n 's/.*socket = "inet:\([0-9]*\)@.*/\1/p' "$sm_conf")
    env "$@" "$SGMILTER" -c "$sm_conf" -f >"$sm_log" 2>&1 &
    MILTER_PID=$!
    for _ in $(seq 100); do
        answers "$MPORT" && return 0
        if ! kill -0 "$MILTER_PID" 2>/dev/null; then
            wait "$MILTER_PID" 2>/dev/null || true
            MILTER_PID=
            return 1
        fi
        sleep 0.1
    done
    fail "sgmilter did not listen in 10 s: $(cat "$sm_log")"
}

# stop_milter - SIGTERM, and wait for it
stop_milter() {
    kill "$MILTER_PID"
    wait "$MILTER_PID" 2>/dev/null || true
    MILTER_PID=
}

# answers PORT - something accepts connections on PORT
answers() {
    $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null
}

# mtest SCRIPT [NAME=VALUE...] - miltertest running tests/milter/SCRIPT.lua
# against the milter started last (saving into $WORK/saved); its checks
# counted, a failure recorded in $FAILED; sgmilter must have survived it
FAILED=
mtest() {
    lu_name=$1
    shift
    lu_args=
    for d in "$@"; do lu_args="$lu_args -D $d"; done
    set +e
    # shellcheck disable=SC2086 # -D NAME=VALUE words, without blanks
    miltertest -D sock="inet:$MPORT@127.0.0.1" -D mtdir="$MT" -D out="$WORK/saved" $lu_args \
        -s "$MT/$lu_name.lua" >"$WORK/$lu_name.out" 2>&1
    lu_rc=$?
    set -e
    lu_n=$(sed -n 's/^CHECKS \([0-9]*\)$/\1/p' "$WORK/$lu_name.out" | tail -1)
    CHECKS=$((CHECKS + ${lu_n:-0}))
    if [ "$lu_rc" -ne 0 ]; then
        FAILED="$FAILED $lu_name"
        echo "---- $lu_name: FAILED (exit $lu_rc)" >&2
        grep -v '^-- \|^CHECKS \|^FAILED: ' "$WORK/$lu_name.out" >&2 || true
    else
        echo "$lu_name: $lu_n checks passed"
    fi
    check "sgmilter still runs after $lu_name: $(tail -5 "$WORK/milter.log")" kill -0 "$MILTER_PID"
    check "sgmilter still answers after $lu_name" answers "$MPORT"
}

# signature_ok FILE - the DKIM-Signature of a message a script saved: its
# bh= is the hash of the body as sent, canonicalised as its c= says
# (recomputed here), and the whole message verifies (dkim_verify.py,
# python3-dkim); a failure recorded in $FAILED
signature_ok() {
    so_name=$(basename "$1")
    if [ ! -s "$1" ]; then
        FAILED="$FAILED signature($so_name)"
        echo "---- $so_name: not saved (see the script's failures)" >&2
        return 0
    fi
    if ! $PY - "$1" >"$WORK/verify" 2>&1 <<'PY'
import base64, hashlib, re, sys
msg = open(sys.argv[1], "rb").read()
head, body = msg.split(b"\r\n\r\n", 1)
sig = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", head + b"\r\n", re.S | re.M).group(1)
tags = dict(t.split(b"=", 1) for t in re.sub(rb"\s+", b"", sig).split(b";") if t)
canon = tags.get(b"c", b"simple/simple").split(b"/")
if (canon[1] if len(canon) > 1 else b"simple") == b"relaxed":
    body = b"\r\n".join(re.sub(rb"[ \t]+", b" ", l).rstrip(b" ") for l in body.split(b"\r\n"))
    while body.endswith(b"\r\n"):
        body = body[:-2]
    body = body + b"\r\n" if body else b""
else:
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
if b"l" in tags:
    body = body[:int(tags[b"l"])]
want = base64.b64encode(hashlib.sha256(body).digest())
if tags.get(b"bh") != want:
    sys.exit("bh=%s, but the body sent hashes to %s (c=%s)" % (
        tags.get(b"bh", b"").decode(), want.decode(), b"/".join(canon).decode()))
PY
    then
        FAILED="$FAILED bodyhash($so_name)"
        echo "---- $so_name: body hash wrong: $(cat "$WORK/verify")" >&2
        return 0
    fi
    CHECKS=$((CHECKS + 1))
    if ! $PY "$VERIFY" "$1" "s1,shop.example,$WORK/keys/shop.example/s1.pem" >"$WORK/verify" 2>&1; then
        FAILED="$FAILED signature($so_name)"
        echo "---- $so_name: the signature does not verify: $(cat "$WORK/verify")" >&2
        return 0
    fi
    CHECKS=$((CHECKS + 1))
    echo "$so_name: body hash and signature verified"
}

# A milter client of our own for the reply texts miltertest does not keep
# (those given at a header field or a body chunk):
#   mclient PORT NFIELDS BIGFIELD BODYSIZE
# one message From shop.example of NFIELDS header fields (From, Subject,
# then X-Filler-N; the last one X-Big of BIGFIELD bytes if BIGFIELD > 0)
# and a body of BODYSIZE bytes; prints where it was refused and the reply
# ("header N: 552 ...", "body BYTES: ...", "eom: ...") or "accepted".
cat >"$WORK/mclient.py" <<'PY'
import socket, struct, sys
port, nfields, big, size = (int(a) for a in sys.argv[1:5])
s = socket.create_connection(("127.0.0.1", port), 10)
s.settimeout(30)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("the milter closed the connection")
        b += c
    return b
def ask(cmd, data=b""):
    s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)
    while True:  # at the end of the message, modifications come first
        d = recv(struct.unpack(">I", recv(4))[0])
        if d[:1] in (b"O", b"c", b"a", b"r", b"t", b"d", b"y", b"s"):
            return d[:1], d[1:].rstrip(b"\0").decode()
def done(where, r):
    if r[0] in (b"c", b"a"):
        return False
    print("%s: %s" % (where, r[1] if r[0] == b"y" else {b"r": "reject", b"t": "tempfail",
          b"d": "discard", b"s": "skip"}.get(r[0], r[0])))
    return True
ask(b"O", struct.pack(">III", 6, 0x1FF, 0x400))  # every action, SMFIP_SKIP
ask(b"C", b"client.example\0" + b"4" + struct.pack(">H", 12345) + b"192.0.2.10\0")
ask(b"H", b"client.example\0")
ask(b"M", b"<news@shop.example>\0")
ask(b"R", b"<ok@example.org>\0")
fields = [(b"From", b"Shop <news@shop.example>"), (b"Subject", b"mclient")]
fields += [(b"X-Filler-%d" % i, b"filler") for i in range(3, nfields + 1)]
if big:
    fields[-1] = (b"X-Big", b"v" * (big - len(b"X-Big: ")))
for i, (name, value) in enumerate(fields, 1):
    if done("header %d" % i, ask(b"L", name + b"\0" + value + b"\0")):
        sys.exit(0)
if done("eoh", ask(b"N")):
    sys.exit(0)
sent, line = 0, b"x" * 70 + b"\r\n"
while sent < size:
    chunk = (line * 200)[:min(14400, size - sent)]
    sent += len(chunk)
    if done("body %d" % sent, ask(b"B", chunk)):
        sys.exit(0)
if not done("eom", ask(b"E")):
    print("accepted")
PY

# mclient_says WHAT ARGS... - the client's outcome must end with WHAT
mclient_says() {
    want=$1
    shift
    $PY "$WORK/mclient.py" "$MPORT" "$@" >"$WORK/mclient" 2>&1 || true
    if grep -q -- ": $want\$" "$WORK/mclient"; then
        CHECKS=$((CHECKS + 1))
        echo "mclient $*: $(cat "$WORK/mclient")"
    else
        FAILED="$FAILED mclient($*)"
        echo "---- mclient $*: expected '$want', got: $(cat "$WORK/mclient")" >&2
    fi
}

# The store: suppressions, a group, the token key, a key for shop.example
mkdir -p "$WORK/store" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer" "$WORK/saved" \
    "$WORK/mtmp" "$WORK/envtmp" "$WORK/othertmp"
CONF="$WORK/sendguard.conf"
conf "$CONF" "$(free_port)" ""
expect 0 -c "$CONF" --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 -c "$CONF" bounces add gone@example.org
expect 0 -c "$CONF" unsubscribes add quit@example.org
expect 0 -c "$CONF" spam-reports add spam@example.org
expect 0 -c "$CONF" group-suppressions add "$GID" left@example.org
expect 0 -c "$CONF" token generate
expect 0 -c "$CONF" dkim generate --domain shop.example --selector s1
expect 0 -c "$CONF" --tenant acme bounces add t@example.org

# 1. the default limits
start_milter "$CONF" "$WORK/milter.log" || fail "sgmilter did not start: $(cat "$WORK/milter.log")"
mtest several_messages group="$GID"
expect 0 -c "$CONF" --json events list --type dropped
json "sorted((e['email'], e['reason']) for e in j) == sorted([('gone@example.org', 'bounce'), ('left@example.org', 'group_unsubscribe'), ('quit@example.org', 'global_unsubscribe'), ('spam@example.org', 'spam_report'), ('gone@example.org', 'bounce'), ('quit@example.org', 'global_unsubscribe')])"
json "[e.get('asm_group_id') for e in j if e['email'] == 'left@example.org'] == [$GID]"
expect 0 -c "$CONF" --json events list --type processed
json "len(j) == 10" # the two refused messages decided nothing
mtest aborted group="$GID"
signature_ok "$WORK/saved/aborted.eml"
mtest negotiation
mtest tenant
expect 0 -c "$CONF" --json --tenant acme events list --type dropped
json "len(j) == 3 and all(e['email'] == 't@example.org' and e['tenant'] == 'acme' for e in j)"
mtest header_count limit=1000
mclient_says "552 5.3.4 too many header fields (limit 1000)" 1001 0 10
stop_milter

# 2. small limits; the temporary file in milter.tmp_dir (oversize looks for
# it there: not in $TMPDIR)
LCONF="$WORK/limits.conf"
conf "$LCONF" "$(free_port)" "max_headers = 20; max_header_size = 512; max_body_size = 100000; body_memory = 4096; tmp_dir = \"$WORK/mtmp\";"
if start_milter "$LCONF" "$WORK/milter.log" TMPDIR="$WORK/othertmp"; then
    mtest header_count limit=20
    mclient_says "552 5.3.4 too many header fields (limit 20)" 21 0 10
    mtest oversize pid="$MILTER_PID" tmpdir="$WORK/mtmp" hsize=512 bmem=4096 bsize=100000
    signature_ok "$WORK/saved/spill.eml"
    signature_ok "$WORK/saved/exact.eml"
    # 3000 bytes: more than miltertest can send in one field
    mclient_says "552 5.3.4 header field X-Big too large (limit 512 bytes)" 3 3000 10
    mclient_says "552 5.3.4 message body too large for the milter (limit 100000 bytes)" 2 0 150000
    stop_milter
    # milter.tmp_dir empty: $TMPDIR
    rm -f "$WORK/saved/spill.eml"
    conf "$LCONF" "$(free_port)" "body_memory = 4096;"
    start_milter "$LCONF" "$WORK/milter.log" TMPDIR="$WORK/envtmp" ||
        fail "sgmilter did not start: $(cat "$WORK/milter.log")"
    mtest oversize part=spill pid="$MILTER_PID" tmpdir="$WORK/envtmp" hsize=102400 bmem=4096 bsize=67108864
    signature_ok "$WORK/saved/spill.eml"
    stop_milter
else
    FAILED="$FAILED limits.conf"
    echo "---- sgmilter refused the limits configuration: $(cat "$WORK/milter.log")" >&2
fi

[ -z "$FAILED" ] || fail "failed:$FAILED ($CHECKS checks passed)"
done_ok
