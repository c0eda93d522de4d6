#!/bin/sh
# milter_wire - sgmilter's milter protocol engine (milter/mfengine.c) on the
# wire, where miltertest(8) cannot go: milter_wire.py, a raw MTA-side client,
# writes the packets itself (a 4-byte big-endian length, the command byte,
# the data) and the replies are compared here exactly.  One sgmilter on a
# loopback port, one bounce-suppressed address (gone@example.org); the
# messages come From a domain without a DKIM key, so that sgmilter needs
# nothing of them but the suppressed recipient removed:
#   negotiate     OPTNEG of version 6 offering every action and step:
#                 version 6, exactly ADDHDRS|CHGHDRS|DELRCPT|SETSYMLIST,
#                 its steps, the macro lists of stages 0 to 6 (MAIL
#                 {auth_authen}, RCPT, the end of the header and the end i, the others
#                 {sendguard_no_macro}: to Postfix an empty list means its
#                 default list); an MTA of version 2 gets 2 (no lists) and,
#                 waiting at every step, one reply at each; version 7 gets
#                 6; an MTA that cannot remove recipients, and a short
#                 OPTNEG, are closed
#   one_write     a whole message (macros, MAIL, a suppressed and an
#                 allowed RCPT, header, its end, body chunk, end) in one
#                 write: the end of the header continued, the body chunk
#                 answered SKIP, the end the removal and continue, nothing
#                 at the steps negotiated without a reply; two messages in
#                 one write answered in turn, the second (to the allowed
#                 address alone: it needs nothing) accepted at the end of
#                 its header
#   byte_by_byte  the negotiation and the same message one byte per write
#                 (TCP_NODELAY): the same replies
#   macros        the queue id as "{i}" at RCPT, as "i" at the end, among
#                 other macros in one packet: each found (the log line
#                 naming it); a message without one logs NOQUEUE (the last
#                 message's macros gone)
#   abort         ABORT after the header and after a body chunk: the next
#                 message on the connection decided afresh (nothing of the
#                 aborted one's recipients, X-SMTPAPI or queue id), the
#                 aborted ones never decided
#   quit_nc       QUIT_NC after a message and within one, then messages
#                 without a new negotiation, answered as negotiated (SKIP,
#                 no reply at MAIL, RCPT, header)
#   malformed     each on its own connection, closed without a reply and
#                 with a warning logged, the milter serving a new
#                 connection after each and a connection open all along: a
#                 length of 0, of 0x7fffffff, of 1 MiB + 65 (one over the
#                 largest packet; the largest, a 1 MiB + 63 body chunk, is
#                 taken), an unknown command 'Z', a MAIL not ending in NUL,
#                 a header packet of one string
#   drop          connections dropped after the header, in the middle of a
#                 packet, and reset (RST): the milter goes on (no read
#                 error logged), the next connection works, the dropped
#                 messages are never decided
#   percent       a refusal whose text quotes the message: the X-SMTPAPI
#                 value "50%s %n 100%" makes the 550 5.6.0 reply's reason
#                 quote it (lib/smtpapi.c quotes a short string value); each
#                 '%' doubled on the wire (the MTA reads the text as a
#                 format), the log line as it was
#   parallel      50 connections at once, 5 messages each (kept, removed,
#                 all removed: discarded, refused with the message's own
#                 text): every reply right, every decision logged once under
#                 its own queue id
#   drain         SIGTERM with a message in flight: a connection opened
#                 after it has its message refused (451 4.3.2), the one in
#                 flight is served to its end; once it is over sgmilter
#                 exits within 5 s, with status 0, having removed nothing
. "$(dirname "$0")/lib.sh"
: "${SGMILTER:?run through make check}"

CLIENT="$SG_TOP_SRCDIR/tests/integration/milter_wire.py"
MILTER_PID=
cleanup() {
    [ -z "$MILTER_PID" ] || kill "$MILTER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# wire SCENE ARGS... - milter_wire.py against the milter; its lines in $WORK/wire.out
wire() {
    set +e
    $PY "$CLIENT" "$MPORT" "$@" >"$WORK/wire.out" 2>"$WORK/wire.err"
    wire_rc=$?
    set -e
    [ "$wire_rc" -eq 0 ] || fail "milter_wire.py $*: exited $wire_rc: $(cat "$WORK/wire.err")"
}

# saw NAME WANT - the client's line "NAME: ..." says exactly WANT
saw() {
    CHECKS=$((CHECKS + 1))
    saw_got=$(sed -n "s/^$1: //p" "$WORK/wire.out")
    [ "$saw_got" = "$2" ] && return 0
    # printf: fail's echo would take the \0 of a reply for a NUL
    printf "FAIL (%s): %s: expected '%s', got '%s' %s\n" "$TESTNAME" "$1" "$2" \
        "${saw_got:-(no such line)}" "$(cat "$WORK/wire.err")" >&2
    exit 1
}

# log_has TEXT / log_lacks TEXT - in sgmilter's log
log_has() {
    CHECKS=$((CHECKS + 1))
    grep -qF -- "$1" "$WORK/milter.log" || fail "the log lacks '$1': $(tail -20 "$WORK/milter.log")"
}
log_lacks() {
    CHECKS=$((CHECKS + 1))
    ! grep -qF -- "$1" "$WORK/milter.log" || fail "the log has '$1': $(grep -F -- "$1" "$WORK/milter.log")"
}

# log_count TEXT - how many lines of the log have TEXT
log_count() {
    grep -cF -- "$1" "$WORK/milter.log" || true
}

# running PID - the process is alive (a zombie, dead and not yet reaped, is not)
running() {
    r_st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case $r_st in Z*) return 1 ;; esac
    return 0
}

# alive WHEN - sgmilter still runs
alive() {
    check "sgmilter still runs after $1: $(tail -5 "$WORK/milter.log")" running "$MILTER_PID"
}

# The replies (see milter_wire.py for their form)
NONE='{sendguard_no_macro}'
V6="version=6 actions=0x11b steps=0x3f783 lists=0:\"$NONE\" 1:\"$NONE\" 2:\"{auth_authen}\" 3:\"i\" 4:\"$NONE\" 5:\"i\" 6:\"i\""
# the end of the header continued (gone@ is to be removed), the body
# skipped, at the end gone@ removed and the message continued
DROP='c s -<gone@example.org>\0 c'
KEEP='a' # needs nothing: accepted at the end of the header
DROPPED='to=<gone@example.org>, status=dropped (bounce)'

MPORT=$(free_port)
CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/spool"; };
dkim = { key_dir = "$WORK/keys"; };
secrets = { token_key_file = "$WORK/token.key"; };
tracker = { url = "https://t.example.net"; };
milter = { socket = "inet:$MPORT@127.0.0.1"; pid_file = ""; };
EOF
mkdir -p "$WORK/store" "$WORK/keys" "$WORK/spool/tmp" "$WORK/spool/queue" "$WORK/spool/defer"
expect 0 -c "$CONF" bounces add gone@example.org
start_milter

# 1. negotiation
wire negotiate
saw optneg-v6 "$V6"
saw optneg-v6-end closed
saw optneg-v2 'version=2 actions=0x1b steps=0x3 lists=none'
saw optneg-v2-steps 'mail=c rcpt1=c rcpt2=c header1=c header2=c header3=c header4=c eoh=c body=c eom=-<gone@example.org>\0 c'
saw optneg-v2-end closed
saw optneg-v7 "$V6"
saw optneg-v7-end closed
saw optneg-no-delrcpt closed
saw optneg-short closed
log_has 'warning: milter protocol: a short option negotiation (8 bytes)'
log_has "Q1V2: $DROPPED"

# 2. a whole message in one write
wire one-write
saw one-write-optneg "$V6"
saw one-write "$DROP"
saw one-write-two "$DROP $KEEP"
saw one-write-end closed
log_has "Q2ONE: $DROPPED"
log_has "Q2TWO-A: $DROPPED"
log_lacks "Q2TWO-B: $DROPPED"

# 3. one byte per write
wire byte-by-byte
saw byte-by-byte-optneg "$V6"
saw byte-by-byte "$DROP"
saw byte-by-byte-end closed
log_has "Q3BYTE: $DROPPED"

# 4. macros: "{i}" and "i", at RCPT and at the end
noqueue=$(log_count "NOQUEUE: $DROPPED")
wire macros
saw macros-optneg "$V6"
saw macros-brace "$DROP"
saw macros-plain "$DROP"
saw macros-none "$DROP"
saw macros-several "$DROP"
saw macros-end closed
log_has "Q4BRACE: $DROPPED"
log_has "Q4PLAIN: $DROPPED"
log_has "Q4SEVERAL: $DROPPED"
check "a message without a queue id logged as NOQUEUE, once" [ "$(log_count "NOQUEUE: $DROPPED")" -eq $((noqueue + 1)) ]

# 5. ABORT and QUIT_NC
noqueue=$(log_count "NOQUEUE: $DROPPED")
wire abort
saw abort-optneg "$V6"
saw abort-header "$DROP"
check "the message after ABORT logged as NOQUEUE" [ "$(log_count "NOQUEUE: $DROPPED")" -eq $((noqueue + 1)) ]
saw abort-body-chunk 'c s'
saw abort-body "$DROP"
saw abort-end closed
log_lacks Q5ABORTED
log_has "Q5AGAIN: $DROPPED"
wire quit-nc
saw quit-nc-optneg "$V6"
saw quit-nc-first "$DROP"
# the steps negotiated hold after QUIT_NC (SKIP, no reply at MAIL)
saw quit-nc-after "$DROP"
saw quit-nc-within "$KEEP"
saw quit-nc-end closed
log_has "Q5AFTERK: $DROPPED"
log_lacks Q5ABORTEDK
alive "ABORT and QUIT_NC"

# 6. malformed packets
wire malformed
saw bystander-optneg "$V6"
for bad in zero-length huge-length over-max unknown-command mail-no-nul header-one-string; do
    saw "bad-$bad-optneg" "$V6"
    saw "bad-$bad" closed
    saw "bad-$bad-next" "$V6"
    saw "bad-$bad-next-end" closed
done
log_has 'warning: milter protocol: a packet of 0 bytes'
log_has 'warning: milter protocol: a packet of 2147483647 bytes'
log_has 'warning: milter protocol: a packet of 1048641 bytes'
log_has 'warning: milter protocol: unknown command 0x5a (6 bytes)'
log_has "warning: milter protocol: a malformed 'M' packet (20 bytes)"
log_has "warning: milter protocol: a malformed 'L' packet (5 bytes)"
log_lacks Q6BAD
saw largest-optneg "$V6"
saw largest-packet "$DROP"
saw largest-packet-end closed
saw bystander "$DROP"
saw bystander-end closed
log_has "Q6BYSTANDER: $DROPPED"
alive "malformed packets"

# 7. connections dropped in the middle of a message
wire drop
for d in header mid-packet reset; do
    saw "drop-$d-optneg" "$V6"
    saw "drop-$d-next-optneg" "$V6"
done
saw drop-header-next "$DROP"
saw drop-mid-packet-next "$DROP"
saw drop-reset-next "$DROP"
log_lacks Q7DROP
log_lacks 'milter connection: read'
alive "dropped connections"

# 8. '%' in a reply text
wire percent
saw percent-optneg "$V6"
saw percent 'c c y550 5.6.0 invalid X-SMTPAPI header: the value must be a JSON object, not "50%%s %%n 100%%"\0'
saw percent-end closed
log_has 'Q8PERCENT: reject: invalid X-SMTPAPI header: the value must be a JSON object, not "50%s %n 100%"'

# 9. many connections at once, then SIGTERM
wire parallel 50 5 "$WORK/milter.log"
saw parallel-optneg '50 of 50 connections negotiated at once'
saw parallel '250 of 250 messages answered right'
saw parallel-log '187 of 187 decisions logged once under their queue id'
alive "50 connections at once"
find "$WORK" ! -name 'wire.*' ! -name milter.log | sort >"$WORK/files.before"
wire drain "$MILTER_PID" "$WORK/milter.log"
saw drain-optneg "$V6"
saw drain-stopping logged
saw drain-new-optneg "$V6"
saw drain-new 'y451 4.3.2 the mail filter is restarting, try again\0'
saw drain-new-end closed
saw drain "$DROP"
saw drain-end closed
stopped() { ! running "$MILTER_PID"; }
CHECKS=$((CHECKS + 1))
wait_until 5 "sgmilter to exit after SIGTERM" stopped
CHECKS=$((CHECKS + 1))
set +e
wait "$MILTER_PID"
rc=$?
set -e
MILTER_PID=
[ "$rc" -eq 0 ] || fail "sgmilter exited $rc after SIGTERM: $(tail -5 "$WORK/milter.log")"
log_has "Q9DRAIN: $DROPPED"
log_has 'sgmilter: stopped'
log_lacks 'still busy'
find "$WORK" ! -name 'wire.*' ! -name milter.log | sort >"$WORK/files.after"
check "sgmilter removed nothing: $(comm -23 "$WORK/files.before" "$WORK/files.after")" \
    [ -z "$(comm -23 "$WORK/files.before" "$WORK/files.after")" ]

done_ok
