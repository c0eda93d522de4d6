#!/bin/sh
# run-milter-bench - sgmilter's cost to a Postfix under SMTP load, beside
# Postfix alone and beside Debian's OpenDKIM, in one run:
#   smtp-source sends N (2000) messages of SIZE (4096) body bytes over
#   SESSIONS (20) parallel sessions into one private Postfix on loopback
#   (tests/postfix.sh), which relays them to one counting smtp-sink
#   (SINK_STORE=no).  Five configurations, the same main.cf apart from
#   smtpd_milters:
#     (1) nomilter  Postfix alone;
#     (2) supp      sgmilter, suppression checks only: a store with SUPP
#                   (5000) bounces, spam reports, global unsubscribes and
#                   group suppressions each (plus domain and digest entries);
#                   the message has no X-SMTPAPI and its From domain has no
#                   DKIM key and no default group, and its recipient is not
#                   suppressed: sgmilter accepts it at the end of its
#                   header, and Postfix sends it neither body nor end;
#     (3) full      sgmilter doing everything: the message carries
#                   X-SMTPAPI {"asm_group_id": GID}, its From domain has an
#                   rsa-2048 key ("sgadmin dkim generate --bits 2048"), a
#                   token key and tracker.url are set: each message gets
#                   List-Unsubscribe, List-Unsubscribe-Post and a DKIM
#                   signature, and loses X-SMTPAPI;
#     (4) opendkim  Debian's opendkim (Mode s, rsa-sha256, relaxed/relaxed),
#                   signing with the very key file of (3);
#     (5) track     sgmilter as in (3) with tracking on (issue "Tracking"):
#                   the message is multipart/alternative, its HTML part
#                   with 10 links, and X-SMTPAPI turns on clicktrack and
#                   opentrack: every link becomes a click token's URL, the
#                   pixel goes in, the body is replaced (SMFIR_REPLBODY).
#   Bars: (2)/(1) >= 0.90, (3)/(1) >= 0.70 (on these machines about 1.5x
#   OpenDKIM's rate; (3)/(4) is printed), (5)/(1) >= 0.60, sgmilter's peak resident memory
#   (VmHWM in /proc/PID/status, read after every run; the bar holds the
#   one after the last) <= 64 MiB.
# What is timed: from the start of smtp-source until the sink has counted all
#   N messages and no file is left in Postfix's maildrop, incoming, active,
#   deferred and hold queues (tests/bench/relay_timer.py deliver);
#   throughput = N / that time.  Untimed before each run: smtpd_milters is
#   set, "postfix reload", and one probe message (to a second, storing sink,
#   through transport_maps) proves the configuration is in effect: in (1)
#   and (4) a suppressed probe recipient still gets it, in (2) and (3) it
#   does not; (3) and (4) must carry a DKIM-Signature that python3-dkim
#   verifies with the key, (3) also List-Unsubscribe(-Post) and no X-SMTPAPI.
#   After each run sgmilter's event log must hold N new "processed" events
#   in (2) and (3) (in (3) each naming the group) and none in (1) and (4).
# smtp-source cannot combine -l with -F (a message file), and its own
#   generated message has no X-SMTPAPI: every configuration sends a prepared
#   file (From, To, Subject, Date, Message-ID, MIME fields, X-SMTPAPI or a
#   filler field of the same length, and a body of SIZE bytes in 76-byte
#   lines) with "smtp-source -s SESSIONS -m N -N -F FILE -f SENDER -t
#   rcpt@example.org" (one connection per message, as without -d; -N makes
#   every recipient distinct: 1rcpt@, 2rcpt@, ...; none is suppressed).
# Rounds: ROUNDS (5) rounds, each running all five configurations in turn,
#   the starting one rotating; per configuration the median msgs/s; the bars
#   hold the ratios of those medians (each round's own ratios are printed).
# Usage: tests/bench/run-milter-bench.sh   (as root; postfix, smtp-sink,
#   smtp-source, opendkim (apt-get install opendkim), python3-dkim
#   installed; the sinks, the Postfix instance, the milters and every file
#   live under one mktemp -d directory, removed on exit; ports are free ones
#   picked at run time)
# Environment: SGMILTER, SGADMIN (default milter/sgmilter, sgadmin/sgadmin
#   under SG_TOP_BUILDDIR or the top directory; the bench runs copies),
#   OPENDKIM (/usr/sbin/opendkim), MILTER_SOCKET (unix: both milters on
#   unix sockets, their defaults; inet: on loopback TCP ports), N (2000), SESSIONS (20), SIZE (4096),
#   ROUNDS (5), SUPP (5000), TIMEOUT (900 s per run), SMTP_SOURCE_OPTS
#   (more smtp-source options, e.g. -d: several messages per session; not
#   the requirement's load), KEEP=1 keeps the work directory, PERF=1
#   profiles the milter of each run with perf record (its top symbols are
#   printed; perf's own load skews the figures).
# Output: "# " lines are commentary; the others are KEY=VALUE results: one
#   "run" line per run (also when smtp-source was done, i.e. Postfix had
#   accepted all N, the milter process's CPU time per message from
#   /proc/PID/stat, and the whole machine's from /proc/stat: what the
#   configuration costs Postfix, the sinks and smtp-source besides), then
#   the medians, ratios and memory; the last lines
#   are bar_...=PASS|FAIL; the exit status is 1 when a bar fails,
#   2 when the bench could not run.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
SGMILTER=${SGMILTER:-${SG_TOP_BUILDDIR:-$top}/milter/sgmilter}
SGADMIN=${SGADMIN:-${SG_TOP_BUILDDIR:-$top}/sgadmin/sgadmin}
OPENDKIM=${OPENDKIM:-/usr/sbin/opendkim}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
N=${N:-2000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-5}
SUPP=${SUPP:-5000}
TIMEOUT=${TIMEOUT:-900}
SMTP_SOURCE_OPTS=${SMTP_SOURCE_OPTS:-}
PY=/usr/bin/python3
timer=$top/tests/bench/relay_timer.py
verify=$top/tests/integration/dkim_verify.py
. "$top/tests/postfix.sh"

die() { echo "run-milter-bench: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (a private Postfix)"
for b in "$SGMILTER" "$SGADMIN"; do
    [ -x "$b" ] || die "no $b (build it first)"
done
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE: install postfix"
# OpenDKIM is the yardstick, not a dependency of sendguard: installed here
# when missing (Debian's package; the bench runs its own instance)
if [ ! -x "$OPENDKIM" ] && [ "$OPENDKIM" = /usr/sbin/opendkim ] && command -v apt-get >/dev/null; then
    echo "# installing Debian's opendkim for the comparison" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opendkim \
        >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends opendkim >/dev/null 2>&1; } || true
fi
[ -x "$OPENDKIM" ] || die "no $OPENDKIM: apt-get install opendkim"
$PY -c 'import dkim' 2>/dev/null || die "no python3-dkim for $PY: apt-get install python3-dkim"
{ [ -r "$timer" ] && [ -r "$verify" ]; } || die "no $timer or $verify"

work=$(mktemp -d /tmp/sg-milter-bench-XXXXXX)
MILTER_PID=
OPENDKIM_PID=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    pf_cleanup
    for p in $MILTER_PID $OPENDKIM_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "# kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"

# copies: a rebuild during the run must not change what is measured
mkdir "$work/bin"
cp "$SGMILTER" "$work/bin/sgmilter"
cp "$SGADMIN" "$work/bin/sgadmin"
id_of() { echo "$1 $(wc -c <"$1") bytes, sha256 $(sha256sum "$1" | cut -c1-12)"; }
sgmilter_id=$(id_of "$SGMILTER")
sgadmin_id=$(id_of "$SGADMIN")
SGMILTER=$work/bin/sgmilter
SGADMIN=$work/bin/sgadmin
rc=0
"$SGMILTER" -Z >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 64 ] || die "$SGMILTER -Z exited $rc, not 64: a broken binary (being rebuilt?)"

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# wait_port PORT|SOCKETPATH PID WHAT LOG - until it answers, while PID lives
wait_port() {
    for _ in $(seq 150); do
        $PY -c 'import socket,sys
a = sys.argv[1]
if a.isdigit():
    socket.create_connection(("127.0.0.1", int(a)), 1).close()
else:
    s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(a); s.close()' \
            "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 did not start: $(tail -n 20 "$4")"
        sleep 0.1
    done
    die "$3 does not listen on $1 after 15 s: $(tail -n 20 "$4")"
}

# MILTER_SOCKET=unix (the default, as sgmilter's and Debian's opendkim's
# defaults are) or inet: how Postfix reaches both milters
MILTER_SOCKET=${MILTER_SOCKET:-unix}
SOCKDIR=$work/sock
mkdir -p "$SOCKDIR"
chmod 755 "$SOCKDIR"
# milter_listen NAME - the milter's own spelling of where it listens
milter_listen() {
    case $MILTER_SOCKET/$1 in
    unix/sgmilter) echo "unix:$SOCKDIR/sgmilter.sock" ;;
    unix/opendkim) echo "local:$SOCKDIR/opendkim.sock" ;;
    inet/sgmilter) echo "inet:$MPORT@127.0.0.1" ;;
    inet/opendkim) echo "inet:$OPORT@127.0.0.1" ;;
    esac
}
# milter_addr NAME - Postfix's spelling of it; milter_wait NAME - for wait_port
milter_addr() {
    case $MILTER_SOCKET/$1 in
    unix/*) echo "unix:$SOCKDIR/$1.sock" ;;
    inet/sgmilter) echo "inet:127.0.0.1:$MPORT" ;;
    inet/opendkim) echo "inet:127.0.0.1:$OPORT" ;;
    esac
}
milter_wait() {
    case $MILTER_SOCKET/$1 in
    unix/*) echo "$SOCKDIR/$1.sock" ;;
    inet/sgmilter) echo "$MPORT" ;;
    inet/opendkim) echo "$OPORT" ;;
    esac
}

SMTPPORT=$(free_port)
SINKPORT=$(free_port)
STOREPORT=$(free_port)
MPORT=$(free_port)
OPORT=$(free_port)
[ "$(printf '%s\n' "$SMTPPORT" "$SINKPORT" "$STOREPORT" "$MPORT" "$OPORT" | sort -u | wc -l)" -eq 5 ] ||
    die "free_port gave the same port twice; run again"

# --- sendguard: configuration, store, keys ----------------------------------
SG=$work/sg
mkdir -p "$SG/store" "$SG/spool/tmp" "$SG/spool/queue" "$SG/spool/defer" "$SG/keys"
CONF=$SG/sendguard.conf
cat >"$CONF" <<EOF
store = { path = "$SG/store"; };
spool = { path = "$SG/spool"; };
dkim = { key_dir = "$SG/keys"; };
secrets = { token_key_file = "$SG/token.key"; };
tracker = { url = "https://t.example.net"; };
relay = { smarthost = "127.0.0.1:$SINKPORT"; domain = "relay.test"; starttls = "none"; };
milter = { socket = "$(milter_listen sgmilter)"; pid_file = "$SG/sgmilter.pid"; };
EOF
sga() { "$SGADMIN" -c "$CONF" "$@"; }
SEL=bench2048
DOMAIN=shop.example      # (3) and (4): has the key
PLAIN=plain.example      # (2): no key, no default group
sga --json groups create --name Newsletter >"$work/group.json" || die "groups create failed"
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/group.json")
sga token generate >/dev/null || die "token generate failed"
sga dkim generate --domain "$DOMAIN" --selector "$SEL" --algorithm rsa --bits 2048 >"$work/dns.txt" ||
    die "dkim generate failed"
KEY=$SG/keys/$DOMAIN/$SEL.pem
[ -f "$KEY" ] || die "no key file $KEY after dkim generate: $(sga dkim list)"
KEYBITS=$(openssl pkey -in "$KEY" -noout -text 2>/dev/null | sed -n '1s/.*(\([0-9]*\) bit.*/\1/p')
[ "$KEYBITS" = 2048 ] || die "the key $KEY is not rsa-2048 ($KEYBITS bits)"

# suppressions: SUPP of each kind; none matches a bench recipient
# (NNNrcpt@example.org), the probe's gone@sample.test is a bounce
$PY - "$work" "$SUPP" <<'EOF'
import hashlib, sys
work, n = sys.argv[1], int(sys.argv[2])
def rows(prefix):
    out = []
    for i in range(n):
        if i % 100 == 0:
            out.append("@%s-%d.example" % (prefix, i))        # a domain entry
        elif i % 100 == 1:
            a = "%s-digest-%d@example.net" % (prefix, i)        # a digest entry
            out.append(hashlib.md5(a.encode()).hexdigest())
        elif i % 3 == 0:
            out.append("%s%d@example.org" % (prefix, i))       # the bench's domain
        else:
            out.append("%s%d@d%d.example.com" % (prefix, i, i % 97))
    return out
for kind in ("bounce", "spam", "unsub", "group"):
    with open("%s/%s.csv" % (work, kind), "w") as f:
        for r in rows(kind):
            f.write(r + "\n")
EOF
echo gone@sample.test >>"$work/bounce.csv"
t0=$(date +%s)
sga bounces import "$work/bounce.csv" >/dev/null || die "bounces import failed"
sga spam-reports import "$work/spam.csv" >/dev/null || die "spam-reports import failed"
sga unsubscribes import "$work/unsub.csv" >/dev/null || die "unsubscribes import failed"
xargs -n 500 "$SGADMIN" -c "$CONF" group-suppressions add "$GID" <"$work/group.csv" >/dev/null ||
    die "group-suppressions add failed"
sga allow-list add vip@example.net @allowed.example >/dev/null
t1=$(date +%s)
sga --json groups get "$GID" >"$work/gget.json" 2>/dev/null || true
gcount=$($PY -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("unsubscribes", "?"))
except Exception: print("?")' "$work/gget.json")

# --- the messages -------------------------------------------------------------
# msg-full: (1), (3), (4); msg-plain: (2).  Same size; LF line ends
# (smtp-source -F sends each line with CRLF)
$PY - "$work" "$SIZE" "$DOMAIN" "$PLAIN" "$GID" <<'EOF'
import sys
work, size, dom, plain, gid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
line = "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopq\n"
body = ""
while len(body) + len(line) <= size:
    body += line
body += "x" * (size - len(body) - 1) + "\n"
api = 'X-SMTPAPI: {"asm_group_id": %s}' % gid
for name, d, extra in (("full", dom, api), ("plain", plain, "X-Filler: " + "f" * (len(api) - 10))):
    hdr = ("From: Bench News <news@%s>\nTo: <rcpt@example.org>\n"
           "Subject: sendguard milter bench\n"
           "Date: Mon, 23 Nov 2026 12:00:00 +0000\n"
           "Message-ID: <bench-%s@%s>\nMIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=us-ascii\n%s\n\n") % (d, name, d, extra)
    open("%s/msg-%s" % (work, name), "w").write(hdr + body)
# msg-track: about the same size, a text part and an HTML part with 10 links
links = "".join('<p><a href="https://%s/item/%d?ref=news&amp;n=%d">Item %d</a></p>\n'
                % (dom, i, i, i) for i in range(10))
html = "<html><body>\n" + links
while len(html) + len(line) + 30 <= size - 400:
    html += "<p>" + line.strip() + "</p>\n"
html += "</body></html>\n"
track_api = ('X-SMTPAPI: {"asm_group_id": %s, "filters": {"clicktrack": {"settings": '
             '{"enable": 1}}, "opentrack": {"settings": {"enable": 1}}}}' % gid)
hdr = ("From: Bench News <news@%s>\nTo: <rcpt@example.org>\n"
       "Subject: sendguard milter bench\n"
       "Date: Mon, 23 Nov 2026 12:00:00 +0000\n"
       "Message-ID: <bench-track@%s>\nMIME-Version: 1.0\n%s\n"
       "Content-Type: multipart/alternative; boundary=\"bench\"\n\n") % (dom, dom, track_api)
body_t = ("--bench\nContent-Type: text/plain; charset=us-ascii\n\nThe items: https://%s/items\n"
          "--bench\nContent-Type: text/html; charset=us-ascii\n\n%s--bench--\n") % (dom, html)
open("%s/msg-track" % work, "w").write(hdr + body_t)
EOF

# --- the milters ----------------------------------------------------------------
# umask 0: Postfix's smtpd and cleanup (user postfix) connect to its socket
(umask 0 && exec "$SGMILTER" -c "$CONF" -f) >"$work/sgmilter.log" 2>&1 &
MILTER_PID=$!
wait_port "$(milter_wait sgmilter)" "$MILTER_PID" sgmilter "$work/sgmilter.log"

mkdir -p "$work/opendkim"
cat >"$work/opendkim/opendkim.conf" <<EOF
# Debian's opendkim as a signer only, on loopback, sgmilter's key file
Syslog                  no
Background              no
Mode                    s
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
Domain                  $DOMAIN
Selector                $SEL
KeyFile                 $KEY
# the key is safe (0600, root's) but lies under /tmp, which others may write
RequireSafeKeys         false
OversignHeaders         From
Socket                  $(milter_listen opendkim)
PidFile                 $work/opendkim/opendkim.pid
UMask                   000
EOF
"$OPENDKIM" -f -x "$work/opendkim/opendkim.conf" >"$work/opendkim/log" 2>&1 &
OPENDKIM_PID=$!
wait_port "$(milter_wait opendkim)" "$OPENDKIM_PID" opendkim "$work/opendkim/log"

# --- Postfix and the sinks --------------------------------------------------------
SINK_STORE=no sink_start "$work/sink" "$SINKPORT"
COUNT_SINK=$SINK_DIR
sink_start "$work/store-sink" "$STOREPORT"
STORE_SINK=$SINK_DIR
# everything but smtpd_milters is the same for all five configurations
cat >"$work/pf-extra.cf" <<EOF
milter_protocol = 6
milter_default_action = tempfail
smtpd_milters =
non_smtpd_milters = \$smtpd_milters
transport_maps = texthash:$work/transport
EOF
echo "sample.test smtp:[127.0.0.1]:$STOREPORT" >"$work/transport"
pf_start "$work/pf" "$SMTPPORT" "$SINKPORT" "$work/pf-extra.cf"
QDIRS="$PF_QUEUE/maildrop,$PF_QUEUE/incoming,$PF_QUEUE/active,$PF_QUEUE/deferred,$PF_QUEUE/hold"

milters_of() {
    case $1 in
    nomilter) echo "" ;;
    supp | full | track) milter_addr sgmilter ;;
    opendkim) milter_addr opendkim ;;
    esac
}
msg_of() { case $1 in supp) echo "$work/msg-plain" ;; track) echo "$work/msg-track" ;; *) echo "$work/msg-full" ;; esac; }
sender_of() { case $1 in supp) echo "news@$PLAIN" ;; *) echo "news@$DOMAIN" ;; esac; }
pid_of() { case $1 in supp | full | track) echo "$MILTER_PID" ;; opendkim) echo "$OPENDKIM_PID" ;; *) echo "" ;; esac; }
label_of() {
    case $1 in
    nomilter) echo "(1) Postfix alone" ;;
    supp) echo "(2) sgmilter suppressions only" ;;
    full) echo "(3) sgmilter suppr.+unsub+DKIM" ;;
    opendkim) echo "(4) OpenDKIM rsa-2048" ;;
    track) echo "(5) sgmilter (3) + tracking" ;;
    esac
}

# cpu_ticks PID - user + system clock ticks of the process, all its threads
cpu_ticks() {
    [ -n "$1" ] || { echo 0; return; }
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
# machine_ticks - clock ticks every CPU spent busy (user, nice, system, irq, softirq)
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# processed_events [PATTERN] - "processed" events in sgmilter's event log
# (that also match PATTERN)
processed_events() {
    cat "$SG/store/events/"*.jsonl 2>/dev/null | grep '"event":"processed"' |
        grep -c -- "${1:-.}" || true
}

# switch_to CONFIG - smtpd_milters for it, reload, and wait for the reload
switch_to() {
    _n0=$(grep -c 'postfix/master.*: reload ' "$PF_LOG" || true)
    pf_postconf -e "smtpd_milters = $(milters_of "$1")"
    "$PF_POSTFIX" -c "$PF_CONF" reload >"$work/reload.out" 2>&1 ||
        die "postfix reload failed: $(cat "$work/reload.out")"
    for _ in $(seq 100); do
        [ "$(grep -c 'postfix/master.*: reload ' "$PF_LOG" || true)" -gt "$_n0" ] && break
        sleep 0.1
    done
    # the old smtpd processes go at their earliest convenience
    sleep 1
}

# probe CONFIG TAG - one message like the bench's, to probe@sample.test and
# gone@sample.test (a bounce), into the storing sink; checks that CONFIG is
# in effect
probe() {
    _c=$1
    _subj="probe $_c $2"
    if ! $PY - "$SMTPPORT" "$(msg_of "$_c")" "$(sender_of "$_c")" "$_subj" >"$work/probe.reply" 2>&1 <<'EOF'
import smtplib, sys
port, path, sender, subj = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
text = open(path).read().replace("Subject: sendguard milter bench", "Subject: " + subj, 1)
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.sendmail(sender, ["probe@sample.test", "gone@sample.test"], text.replace("\n", "\r\n"))
s.quit()
EOF
    then
        die "probe for $_c: $(cat "$work/probe.reply")"
    fi
    _f=
    for _ in $(seq 300); do
        _f=$(grep -l "^Subject: $_subj\$" "$STORE_SINK"/*.* 2>/dev/null | head -1) || true
        [ -n "$_f" ] && break
        sleep 0.1
    done
    [ -n "$_f" ] || die "probe for $_c did not arrive: $(pf_log 20)"
    # what a recipient's server would see: without smtp-sink's own lines
    grep -v '^X-\(Client-Addr\|Client-Proto\|Helo-Args\|Mail-Args\|Rcpt-Args\):' "$_f" >"$work/probe.eml"
    _hdr=$(sed '/^$/q' "$work/probe.eml")
    _rcpts=$(sed -n 's/^X-Rcpt-Args: <\(.*\)>.*/\1/p' "$_f" | sort | tr '\n' ' ')
    has() { printf '%s\n' "$_hdr" | grep -qi "^$1:"; }
    _bad=
    case $_c in
    nomilter | opendkim)
        [ "$_rcpts" = "gone@sample.test probe@sample.test " ] || _bad="$_bad; recipients '$_rcpts' (no suppression expected)"
        has X-SMTPAPI || _bad="$_bad; X-SMTPAPI removed"
        ! has List-Unsubscribe || _bad="$_bad; has List-Unsubscribe" ;;
    supp | full | track)
        [ "$_rcpts" = "probe@sample.test " ] || _bad="$_bad; recipients '$_rcpts' (gone@ should be suppressed)"
        ! has X-SMTPAPI || _bad="$_bad; X-SMTPAPI left" ;;
    esac
    case $_c in
    nomilter | supp)
        ! has DKIM-Signature || _bad="$_bad; has a DKIM-Signature"
        ! has List-Unsubscribe || _bad="$_bad; has List-Unsubscribe" ;;
    full | opendkim | track)
        [ "$(printf '%s\n' "$_hdr" | grep -ci '^DKIM-Signature:')" -eq 1 ] || _bad="$_bad; not one DKIM-Signature"
        printf '%s\n' "$_hdr" | sed -n '/^DKIM-Signature:/,/^[^ 	]/p' | tr -d ' \t\n' |
            grep -q "a=rsa-sha256;" || _bad="$_bad; the signature is not a=rsa-sha256"
        if ! $PY "$verify" "$work/probe.eml" "$SEL,$DOMAIN,$KEY" >"$work/probe.verify" 2>&1; then
            _bad="$_bad; the signature does not verify with $KEY: $(cat "$work/probe.verify")"
        fi ;;
    esac
    if [ "$_c" = full ] || [ "$_c" = track ]; then
        has List-Unsubscribe || _bad="$_bad; no List-Unsubscribe"
        has List-Unsubscribe-Post || _bad="$_bad; no List-Unsubscribe-Post"
    fi
    if [ "$_c" = track ]; then
        [ "$(grep -c 'href="https://t.example.net/c/' "$work/probe.eml")" -eq 10 ] ||
            _bad="$_bad; not 10 links through the tracker"
        grep -q '<img src="https://t.example.net/o/' "$work/probe.eml" || _bad="$_bad; no pixel"
    fi
    if [ -n "$_bad" ]; then
        cp "$work/probe.eml" "$work/probe-failed-$_c.eml"
        die "configuration $_c is not in effect${_bad}; the probe's header:
$_hdr"
    fi
    rm -f "$_f"
}

# run CONFIG ROUND - switch, probe, then the timed run; appends to $work/results
run() {
    _c=$1
    switch_to "$_c"
    probe "$_c" "$2"
    pf_wait_queue 0 "maildrop incoming active deferred hold" 120 >/dev/null ||
        die "Postfix's queue is not empty before the $_c run"
    _pid=$(pid_of "$_c")
    _ev0=$(processed_events)
    _gev0=$(processed_events "\"asm_group_id\":$GID,")
    _cpu0=$(cpu_ticks "$_pid")
    _all0=$(machine_ticks)
    _perf=
    if [ -n "${PERF:-}" ] && [ -n "$_pid" ]; then
        perf record -q -F 499 -g -p "$_pid" -o "$work/perf-$_c-$2.data" >/dev/null 2>&1 &
        _perf=$!
        sleep 0.5
    fi
    # when smtp-source is done (Postfix has accepted all N): for the
    # commentary only, the figures are the deliveries'
    rm -f "$work/source.end"
    _t0=$(date +%s.%N)
    # shellcheck disable=SC2016,SC2086  # sh -c's script; SMTP_SOURCE_OPTS: words
    $PY "$timer" deliver "$COUNT_SINK/sink.out" "$N" "$TIMEOUT" "$QDIRS" -- \
        sh -c '"$@"; rc=$?; date +%s.%N >"$0"; exit $rc' "$work/source.end" \
        "$SMTP_SOURCE" -s "$SESSIONS" -m "$N" -N $SMTP_SOURCE_OPTS -F "$(msg_of "$_c")" \
        -f "$(sender_of "$_c")" -t rcpt@example.org "127.0.0.1:$SMTPPORT" \
        >"$work/run.out" 2>"$work/run.err" ||
        die "the $_c run (round $2) failed: $(cat "$work/run.err"); $(pf_log 10)"
    _cpu1=$(cpu_ticks "$_pid")
    _all1=$(machine_ticks)
    if [ -n "$_perf" ]; then
        kill -INT "$_perf" 2>/dev/null || true
        wait "$_perf" 2>/dev/null || true
        perf report -i "$work/perf-$_c-$2.data" --stdio --no-children --percent-limit 2 \
            --sort dso,symbol -g none 2>/dev/null | grep -v '^#' | grep . | head -n 15 |
            sed "s/^/# perf $_c: /"
    fi
    _ev1=$(processed_events)
    _gev1=$(processed_events "\"asm_group_id\":$GID,")
    _s=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$work/run.out")
    _got=$(sed -n 's/.*msgs=\([0-9]*\).*/\1/p' "$work/run.out")
    [ "$_got" -eq "$N" ] || die "the $_c run (round $2): the sink counted $_got, not $N"
    _want=0
    case $_c in supp | full | track) _want=$N ;; esac
    [ $((_ev1 - _ev0)) -eq "$_want" ] ||
        die "the $_c run (round $2): sgmilter recorded $((_ev1 - _ev0)) processed events, not $_want"
    { [ "$_c" != full ] && [ "$_c" != track ]; } || [ $((_gev1 - _gev0)) -eq "$N" ] ||
        die "the $_c run (round $2): $((_gev1 - _gev0)) processed events name group $GID, not $N"
    _rate=$(echo "scale=1; $N / $_s" | bc -l)
    _acc=$(printf "%.3f" "$(echo "$(cat "$work/source.end") - $_t0" | bc -l)")
    # milter CPU per message, ms (clock ticks are 1/CLK_TCK s)
    _cpu=-
    [ -z "$_pid" ] || _cpu=$(echo "scale=2; ($_cpu1 - $_cpu0) * 1000 / $CLK_TCK / $N" | bc -l | sed 's/^\./0./')
    _hwm=-
    [ "$_pid" != "$MILTER_PID" ] || _hwm=$(hwm_kib "$MILTER_PID")
    _all=$(echo "scale=2; ($_all1 - $_all0) * 1000 / $CLK_TCK / $N" | bc -l | sed 's/^\./0./')
    echo "$2 $_c $_s $_rate $_cpu $_hwm $_all" >>"$work/results"
    echo "run round=$2 config=$_c seconds=$_s msgs_per_s=$_rate smtp_source_done_s=$_acc" \
        "milter_cpu_ms_per_msg=$_cpu sgmilter_vmhwm_kib=$_hwm machine_cpu_ms_per_msg=$_all"
}

CLK_TCK=$(getconf CLK_TCK)
fs() { df -PT "$1" | awk 'NR == 2 { print $1 "(" $2 ")" }'; }
echo "# bench: sgmilter under smtp-source load into Postfix $(pf_postconf -h mail_version)," \
    "$(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "# sgmilter: $sgmilter_id"
echo "# sgadmin: $sgadmin_id"
echo "# opendkim: $("$OPENDKIM" -V 2>&1 | head -1), $(openssl version)"
echo "# key: $KEY, rsa $KEYBITS bits, selector $SEL, domain $DOMAIN (the same file for sgmilter and opendkim)"
echo "# store: $SUPP bounces, spam reports, global unsubscribes, and suppressions in group $GID" \
    "(it reports $gcount), 1 % domain and 1 % digest entries each; loaded in $((t1 - t0)) s"
echo "# load: smtp-source -s $SESSIONS -m $N -N${SMTP_SOURCE_OPTS:+ $SMTP_SOURCE_OPTS} -F MSG (body $SIZE bytes, message" \
    "$(wc -c <"$work/msg-full") bytes with LF ends) -f news@DOMAIN -t rcpt@example.org;" \
    "queue on $(fs "$PF_QUEUE")"
echo "# milters: on $MILTER_SOCKET sockets (MILTER_SOCKET): sgmilter $(milter_addr sgmilter), opendkim $(milter_addr opendkim)"
echo "# postfix: default_process_limit=$(pf_postconf -h default_process_limit)" \
    "smtpd_client_connection_count_limit=$(pf_postconf -h smtpd_client_connection_count_limit)" \
    "default_destination_concurrency_limit=$(pf_postconf -h default_destination_concurrency_limit)" \
    "in_flow_delay=$(pf_postconf -h in_flow_delay) milter_protocol=$(pf_postconf -h milter_protocol)" \
    "milter_default_action=$(pf_postconf -h milter_default_action)"
echo "# timed: smtp-source start .. sink counted N and the queue is empty; $ROUNDS round(s)"

CONFIGS="nomilter supp full opendkim track"
: >"$work/results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    # the starting configuration rotates from round to round
    # shellcheck disable=SC2086  # a list of words
    set -- $CONFIGS
    k=$(( (r - 1) % 5 ))
    while [ "$k" -gt 0 ]; do
        first=$1
        shift
        set -- "$@" "$first"
        k=$((k - 1))
    done
    for c; do run "$c" "$r"; done
    r=$((r + 1))
done

HWM=$(hwm_kib "$MILTER_PID")
RSS=$(rss_kib "$MILTER_PID")
OD_HWM=$(hwm_kib "$OPENDKIM_PID")
kill -0 "$MILTER_PID" 2>/dev/null || die "sgmilter is gone: $(tail -n 20 "$work/sgmilter.log")"

med_of() { awk -v c="$1" '$2 == c { print $4 }' "$work/results" | median; }
cpu_med_of() { awk -v c="$1" '$2 == c && $5 != "-" { print $5 }' "$work/results" | median; }
all_med_of() { awk -v c="$1" '$2 == c { print $7 }' "$work/results" | median; }
rounds_of() { awk -v c="$1" '$2 == c { printf "%s%8s", sep, $4; sep = " " }' "$work/results"; }
m1=$(med_of nomilter)
m2=$(med_of supp)
m3=$(med_of full)
m4=$(med_of opendkim)
m5=$(med_of track)
r21=$(ratio "$m2" "$m1")
r31=$(ratio "$m3" "$m1")
r34=$(ratio "$m3" "$m4")
r51=$(ratio "$m5" "$m1")

echo "#"
printf '# %-32s %s  %8s  %s\n' "configuration" "$(r=1; sep=; while [ "$r" -le "$ROUNDS" ]; do
    printf '%s%8s' "$sep" "round$r"; sep=' '; r=$((r + 1)); done)" "median" \
    "CPU ms/msg (medians): milter, machine"
echo "#   (msgs/s: N / (smtp-source start .. all N at the sink, queue empty))"
for c in $CONFIGS; do
    cm=$(cpu_med_of "$c")
    printf '# %-32s %s  %8s  %6s %6s\n' "$(label_of "$c")" "$(rounds_of "$c")" "$(med_of "$c")" \
        "${cm:--}" "$(all_med_of "$c")"
done
echo "# per-round ratios (supp/nomilter full/nomilter full/opendkim track/nomilter):"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    a=$(awk -v r="$r" '$1 == r && $2 == "nomilter" { print $4 }' "$work/results")
    b=$(awk -v r="$r" '$1 == r && $2 == "supp" { print $4 }' "$work/results")
    c=$(awk -v r="$r" '$1 == r && $2 == "full" { print $4 }' "$work/results")
    d=$(awk -v r="$r" '$1 == r && $2 == "opendkim" { print $4 }' "$work/results")
    e=$(awk -v r="$r" '$1 == r && $2 == "track" { print $4 }' "$work/results")
    echo "#   round $r: $(ratio "$b" "$a") $(ratio "$c" "$a") $(ratio "$c" "$d") $(ratio "$e" "$a")"
    r=$((r + 1))
done
echo "# sgmilter log: $(wc -l <"$work/sgmilter.log") lines, $(grep -ci 'error\|warn\|fatal' "$work/sgmilter.log" || true) with error/warning"
grep -i 'error\|warn\|fatal' "$work/sgmilter.log" | head -5 | sed 's/^/#   /' || true
echo "# postfix log: $(grep -c 'status=sent' "$PF_LOG" || true) sent," \
    "$(grep -c 'status=deferred' "$PF_LOG" || true) deferred," \
    "$(grep -c 'warning:.*milter' "$PF_LOG" || true) milter warnings"
echo "msgs_per_s_median nomilter=$m1 supp=$m2 full=$m3 opendkim=$m4 track=$m5 rounds=$ROUNDS n=$N sessions=$SESSIONS size=$SIZE"
echo "ratio supp/nomilter=$r21 full/nomilter=$r31 full/opendkim=$r34 track/nomilter=$r51"
echo "sgmilter_vmhwm_kib=$HWM sgmilter_vmrss_kib=$RSS opendkim_vmhwm_kib=$OD_HWM"

fail=0
v=PASS
[ "$(echo "$r21 >= 0.90" | bc -l)" = 1 ] || { v=FAIL; fail=1; }
echo "bar_supp_ratio_ge_0.90=$v"
v=PASS
[ "$(echo "$r31 >= 0.70" | bc -l)" = 1 ] || { v=FAIL; fail=1; }
echo "bar_full_ratio_ge_0.70=$v"
v=PASS
[ "$(echo "$r51 >= 0.60" | bc -l)" = 1 ] || { v=FAIL; fail=1; }
echo "bar_track_ratio_ge_0.60=$v"
v=PASS
[ "$HWM" -le 65536 ] || { v=FAIL; fail=1; }
echo "bar_sgmilter_vmhwm_le_64MiB=$v"
exit $fail
