#!/bin/sh
# run-trackd-bench - sgtrackd's bar: click redirects per
#   second over keep-alive connections, beside nginx answering a static 302
#   on the same machine in the same run: at least 50 % of nginx's rate, with
#   every click recorded.
# Load: ApacheBench (Debian's apache2-utils) "ab -k -n N -c C URL": N (50000)
#   GET requests over C (20) keep-alive connections, the same URL path shape
#   for both servers, /c/TOKEN with one real click token: the pipeline's
#   (tests/integration/track_message) for a one-link HTML message with
#   clicktrack on, its link https://example.com/landing?utm=1.
#   sgtrackd decrypts the token, appends a "click" event to the event log
#   (STORE/events/YYYY-MM-DD.jsonl) and answers 302 to the link; nginx
#   (Debian's nginx-light/nginx, a private instance: its own prefix, conf,
#   pid and logs in the work directory) answers
#   "location /c/ { return 302 https://example.com/landing?utm=1; }" with
#   access_log off and keepalive_requests 100000.  sgtrackd's
#   tracker.threads and nginx's worker_processes are both THREADS (the CPU
#   count, which is what sgtrackd's threads = 0 means).
# Rounds: one untimed warm-up run of WARMUP (2000) requests each, then
#   ROUNDS (5) rounds of one run each, interleaved, the first server
#   alternating (odd rounds nginx first, even rounds sgtrackd first).
#   Figures: ab's "Requests per second" per run, the medians per server;
#   the bar holds the ratio of the medians, sgtrackd/nginx >= 0.50.
# Checked for every run: ab completed N requests, "Failed requests: 0",
#   "Non-2xx responses" = N (ab counts a 302 as non-2xx; one probe request
#   per server beforehand shows it is a 302 to the link), "Keep-Alive
#   requests" = N (the connections really were kept).  After every sgtrackd
#   run the event log holds exactly N more click events (each a JSON line
#   naming the recipient and the link; a torn or unparsable line fails),
#   and at the end exactly the number of requests sent to sgtrackd.
# Also printed: per run ab's 50 %, 99 % and longest request times, the
#   server's CPU time per request (/proc/PID/stat, all its processes and
#   threads; clock ticks, so coarse), the CPU count, sgtrackd's log
#   (stderr) lines and its peak resident memory.
# Usage: tests/bench/run-trackd-bench.sh   (from the build or the source
#   directory; any user, root is not needed; every file lives under one mktemp -d
#   directory, removed on exit; ports are free ones picked at run time)
# Environment: SGTRACKD, SGADMIN, TRACK_MESSAGE (default tracker/sgtrackd,
#   sgadmin/sgadmin, tests/integration/track_message under SG_TOP_BUILDDIR
#   or the top directory; the bench runs copies), NGINX (nginx on PATH or
#   /usr/sbin/nginx), AB (ab), N (50000), C (20), ROUNDS (5), WARMUP (2000),
#   THREADS (the CPU count), KEEP=1 keeps the work directory, PERF=1
#   profiles sgtrackd during its timed runs with perf record (DWARF call
#   graphs; the share of each library and the top user-space functions,
#   inclusive of what they call, are printed; perf's own load skews the
#   figures: use ROUNDS=1 N=200000).
# Output: "# " lines are commentary; the others are KEY=VALUE results: one
#   "run" line per run, then the medians and the ratio; the last lines are
#   bar_...=PASS|FAIL.  Exit status: 0 when the bars hold, 1 when one does
#   not, 2 when the bench could not run, 77 when ab, nginx or python3 is
#   missing (apt-get install apache2-utils nginx-light python3).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SG_TOP_BUILDDIR:-$top}
SGTRACKD=${SGTRACKD:-$build/tracker/sgtrackd}
SGADMIN=${SGADMIN:-$build/sgadmin/sgadmin}
TRACK_MESSAGE=${TRACK_MESSAGE:-$build/tests/integration/track_message}
N=${N:-50000}
C=${C:-20}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2000}
CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
THREADS=${THREADS:-$CPUS}
AB=${AB:-ab}
PY=${PY:-/usr/bin/python3}
LINK='https://example.com/landing?utm=1'
RCPT=bob@example.org
BAR=0.50

die() { echo "run-trackd-bench: $*" >&2; exit 2; }
skip() { echo "run-trackd-bench: SKIP: $*" >&2; exit 77; }

# --- the tools ------------------------------------------------------------------
if [ -z "${NGINX:-}" ]; then
    NGINX=$(command -v nginx 2>/dev/null || true)
    [ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
fi
if [ -z "$NGINX" ] || [ ! -x "$NGINX" ]; then
    skip "no nginx command (NGINX=${NGINX:-unset}): apt-get install nginx-light (or nginx)"
fi
AB_PATH=$(command -v "$AB" 2>/dev/null || true)
[ -n "$AB_PATH" ] || skip "no ab command (AB=$AB): apt-get install apache2-utils"
[ -x "$PY" ] || skip "no $PY (free ports, the probe, the event count): apt-get install python3"
for t in awk sed sort grep cp sha256sum; do
    command -v "$t" >/dev/null 2>&1 || skip "no $t command"
done
x=
for v in N C ROUNDS WARMUP THREADS; do
    eval "x=\$$v"
    case $x in '' | *[!0-9]*) die "$v=$x is not a number" ;; esac
done
if [ "$N" -lt 1 ] || [ "$C" -lt 1 ] || [ "$C" -gt "$N" ] || [ "$ROUNDS" -lt 1 ] || [ "$THREADS" -lt 1 ]; then
    die "need N >= C >= 1, ROUNDS >= 1, THREADS >= 1"
fi

# the sendguard binaries: another build may be replacing them, wait a little
for b in "$SGTRACKD" "$SGADMIN" "$TRACK_MESSAGE"; do
    i=0
    while [ ! -x "$b" ] && [ "$i" -lt 30 ]; do
        sleep 1
        i=$((i + 1))
    done
    [ -x "$b" ] || die "no $b (build it first: make, make check builds track_message)"
done

work=$(mktemp -d /tmp/sg-trackd-bench-XXXXXX)
TRACKD_PID=
NGINX_PID=
PERF_PID=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    for p in $PERF_PID $TRACKD_PID $NGINX_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "# kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copies: a rebuild during the run must not change what is measured
mkdir "$work/bin"
id_of() { echo "$1 $(wc -c <"$1") bytes, sha256 $(sha256sum "$1" | cut -c1-12)"; }
copy_bin() {
    # copy_bin SRC NAME - a copy that runs (usage error 64 on a bad option)
    for _try in 1 2 3; do
        cp "$1" "$work/bin/$2" 2>/dev/null && {
            _rc=0
            "$work/bin/$2" -Z >/dev/null 2>&1 </dev/null || _rc=$?
            [ "$_rc" -ne 64 ] || return 0
        }
        sleep 2
    done
    die "$1 -Z did not exit 64 (usage): a broken binary (being rebuilt?)"
}
sgtrackd_id=$(id_of "$SGTRACKD")
copy_bin "$SGTRACKD" sgtrackd
cp "$SGADMIN" "$work/bin/sgadmin"
cp "$TRACK_MESSAGE" "$work/bin/track_message"
SGTRACKD=$work/bin/sgtrackd
SGADMIN=$work/bin/sgadmin
TRACK_MESSAGE=$work/bin/track_message

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
median() {
    sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f\n", a / b }'; }
# probe PORT - GET /c/TOKEN once: "STATUS LOCATION", or "ERR why"
probe() {
    $PY - "$1" "/c/$TOKEN" <<'EOF'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
    c.request("GET", sys.argv[2], headers={"User-Agent": "run-trackd-bench probe"})
    r = c.getresponse()
    r.read()
    print(r.status, r.getheader("Location", "-"))
except Exception as e:
    print("ERR", repr(e))
EOF
}
# wait_http PORT PID WHAT LOG - until a GET is answered, while PID lives
wait_http() {
    for _ in $(seq 150); do
        _a=$(probe "$1")
        case $_a in ERR*) ;; *) echo "$_a"; return 0 ;; esac
        kill -0 "$2" 2>/dev/null || die "$3 did not start: $(tail -n 20 "$4")"
        sleep 0.1
    done
    die "$3 does not answer on 127.0.0.1:$1 after 15 s ($_a): $(tail -n 20 "$4")"
}
# clicks - "COUNT BAD": click events for RCPT and LINK in the event log, and
# lines that are not such (torn, unparsable, or another event)
clicks() {
    $PY - "$SG/store/events" "$RCPT" "$LINK" <<'EOF'
import glob, json, os, sys
d, rcpt, link = sys.argv[1:]
n = bad = 0
for f in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
    with open(f, "rb") as fh:
        for line in fh:
            try:
                e = json.loads(line)
                ok = (e.get("event") == "click" and e.get("email") == rcpt and e.get("url") == link)
            except ValueError:
                ok = False
            if ok:
                n += 1
            else:
                bad += 1
print(n, bad)
EOF
}
CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID... - user + system clock ticks of the processes, all threads
cpu_ticks() {
    _t=0
    for _p; do
        _x=$(sed 's/.*) //' "/proc/$_p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || _x=0
        _t=$((_t + ${_x:-0}))
    done
    echo "$_t"
}
# the nginx master and its workers
nginx_pids() { echo "$NGINX_PID $(pgrep -P "$NGINX_PID" 2>/dev/null | tr '\n' ' ')"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# --- sendguard: configuration, token key, sgtrackd, a click token -------------------
SG=$work/sg
mkdir -p "$SG/store"
TPORT=$(free_port)
NPORT=$(free_port)
[ "$TPORT" != "$NPORT" ] || die "free_port gave the same port twice; run again"
CONF=$SG/sendguard.conf
cat >"$CONF" <<EOF
store = { path = "$SG/store"; };
secrets = { token_key_file = "$SG/token.key"; };
tracker = { url = "https://track.test"; listen = "127.0.0.1:$TPORT"; pid_file = "";
            threads = $THREADS; max_connections = 1000; };
EOF
"$SGADMIN" -c "$CONF" token generate >"$work/token.out" 2>&1 ||
    die "sgadmin token generate failed: $(cat "$work/token.out")"
"$SGTRACKD" -c "$CONF" -f >"$work/sgtrackd.log" 2>&1 &
TRACKD_PID=$!
# sgtrackd creates the store; track_message reads it
for _ in $(seq 150); do
    [ -e "$SG/store/store.lock" ] && break
    kill -0 "$TRACKD_PID" 2>/dev/null || die "sgtrackd did not start: $(tail -n 20 "$work/sgtrackd.log")"
    sleep 0.1
done
cat >"$work/msg.eml" <<EOF
From: Shop <news@shop.example>
To: $RCPT
Subject: hello
X-SMTPAPI: {"category": ["promo"], "unique_args": {"user_id": "42"}, "filters": {"clicktrack": {"settings": {"enable": 1}}}}
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><a href="$LINK">go</a></body></html>
EOF
"$TRACK_MESSAGE" "$CONF" "$work/msg.eml" "$RCPT" >"$work/tracked.eml" 2>"$work/track_message.err" ||
    die "track_message failed: $(cat "$work/track_message.err")"
TOKEN=$(sed -n 's|.*href="https://track\.test/c/\([A-Za-z0-9_-]*\)".*|\1|p' "$work/tracked.eml" | head -n 1)
[ -n "$TOKEN" ] || die "no https://track.test/c/TOKEN link in track_message's output: $(cat "$work/tracked.eml")"
a=$(wait_http "$TPORT" "$TRACKD_PID" sgtrackd "$work/sgtrackd.log")
[ "$a" = "302 $LINK" ] || die "sgtrackd answers the probe with \"$a\", not \"302 $LINK\": $(tail -n 20 "$work/sgtrackd.log")"
SG_SENT=1   # requests sent to sgtrackd: the probe

# --- nginx ------------------------------------------------------------------------
NG=$work/nginx
mkdir -p "$NG/tmp" "$NG/logs"
# temp paths in the prefix for the modules this binary has (not /var/lib/nginx)
temps=
for m in client_body proxy fastcgi uwsgi scgi; do
    case $m in client_body) mod=;; *) mod=$m;; esac
    if [ -z "$mod" ] || ! "$NGINX" -V 2>&1 | grep -q -- "--without-http_${mod}_module"; then
        temps="$temps    ${m}_temp_path $NG/tmp/$m;
"
    fi
done
cat >"$NG/nginx.conf" <<EOF
# a private nginx for run-trackd-bench: a static 302 for /c/
worker_processes $THREADS;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 75s;
$temps    server {
        listen 127.0.0.1:$NPORT;
        server_name bench;
        location /c/ { return 302 $LINK; }
        location / { return 404; }
    }
}
EOF
"$NGINX" -p "$NG/" -c "$NG/nginx.conf" -e "$NG/logs/error.log" -t >"$work/nginx-t.out" 2>&1 ||
    die "nginx -t refuses $NG/nginx.conf: $(cat "$work/nginx-t.out")"
"$NGINX" -p "$NG/" -c "$NG/nginx.conf" -e "$NG/logs/error.log" -g 'daemon off;' >"$work/nginx.out" 2>&1 &
NGINX_PID=$!
a=$(wait_http "$NPORT" "$NGINX_PID" nginx "$work/nginx.out")
[ "$a" = "302 $LINK" ] || die "nginx answers the probe with \"$a\", not \"302 $LINK\""
sleep 0.2
nworkers=$(pgrep -P "$NGINX_PID" 2>/dev/null | wc -l || true)

# --- the runs -----------------------------------------------------------------------
fs() { df -PT "$1" | awk 'NR == 2 { print $1 "(" $2 ")" }'; }
mhd=$(dpkg-query -W -f '${Version}' libmicrohttpd12 2>/dev/null || echo "?")
echo "# bench: sgtrackd click redirects beside nginx's static 302, ab -k, $(date -u +%FT%TZ)"
echo "# machine: cpus=$CPUS ($(uname -m), $(uname -r)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# sgtrackd: $sgtrackd_id, libmicrohttpd $mhd; $(head -n 1 "$work/sgtrackd.log")"
echo "# nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //') ($NGINX), master $NGINX_PID with $nworkers workers"
echo "# ab: $("$AB_PATH" -V 2>&1 | head -n 1 | sed 's/This is //; s/ <.*//') ($AB_PATH)"
echo "# threads: sgtrackd tracker.threads=$THREADS, nginx worker_processes=$THREADS" \
    "(THREADS; the CPU count is $CPUS)"
echo "# load: ab -k -n $N -c $C http://127.0.0.1:PORT/c/TOKEN (token of ${#TOKEN} characters);" \
    "warm-up $WARMUP each; $ROUNDS round(s); store on $(fs "$SG/store")"

# ab_run SERVER PORT REQUESTS ROUND - one ab run; "run" line, results file
ab_run() {
    _s=$1
    _n=$3
    if [ "$_s" = sgtrackd ]; then _pids=$TRACKD_PID; else _pids=$(nginx_pids); fi
    kill -0 "$TRACKD_PID" 2>/dev/null || sg_died
    _ev0=
    [ "$_s" != sgtrackd ] || _ev0=$(clicks)
    _perf=
    if [ "${PERF:-0}" = 1 ] && [ "$_s" = sgtrackd ] && [ "$4" != warmup ]; then
        perf record -q -F 499 --call-graph dwarf,16384 -p "$TRACKD_PID" -o "$work/perf-$4.data" \
            >/dev/null 2>&1 &
        _perf=$!
        PERF_PID=$_perf
        sleep 0.5
    fi
    # shellcheck disable=SC2086  # a list of pids
    _c0=$(cpu_ticks $_pids)
    _rc=0
    "$AB_PATH" -k -n "$_n" -c "$C" -H "User-Agent: run-trackd-bench" \
        "http://127.0.0.1:$2/c/$TOKEN" >"$work/ab.out" 2>"$work/ab.err" || _rc=$?
    # shellcheck disable=SC2086  # a list of pids
    _c1=$(cpu_ticks $_pids)
    if [ -n "$_perf" ]; then
        kill -INT "$_perf" 2>/dev/null || true
        wait "$_perf" 2>/dev/null || true
        PERF_PID=
    fi
    [ "$_s" != sgtrackd ] || SG_SENT=$((SG_SENT + _n))
    cat "$work/ab.out" >>"$work/ab-all.out"
    field() { sed -n "s/^$1:[ 	]*\([0-9.]*\).*/\1/p" "$work/ab.out" | head -n 1; }
    _rps=$(field 'Requests per second')
    _done=$(field 'Complete requests')
    _failed=$(field 'Failed requests')
    _non2xx=$(field 'Non-2xx responses')
    _ka=$(field 'Keep-Alive requests')
    _p50=$(sed -n 's/^ *50% *\([0-9]*\).*/\1/p' "$work/ab.out")
    _p99=$(sed -n 's/^ *99% *\([0-9]*\).*/\1/p' "$work/ab.out")
    _max=$(sed -n 's/^ *100% *\([0-9]*\).*/\1/p' "$work/ab.out")
    _cpu=$(awk -v t="$((_c1 - _c0))" -v k="$CLK_TCK" -v n="$_n" 'BEGIN { printf "%.1f", t * 1e6 / k / n }')
    _bad=
    [ "$_rc" -eq 0 ] || _bad="$_bad; ab exited $_rc: $(tail -n 3 "$work/ab.err" | tr '\n' ' ')"
    [ -n "$_rps" ] || _bad="$_bad; no Requests per second"
    [ "${_done:-0}" = "$_n" ] || _bad="$_bad; ${_done:-0} complete requests, not $_n"
    [ "${_failed:-x}" = 0 ] || _bad="$_bad; ${_failed:-?} failed requests"
    [ "${_non2xx:-0}" = "$_n" ] || _bad="$_bad; ${_non2xx:-0} non-2xx (302) answers, not $_n"
    [ "${_ka:-0}" = "$_n" ] || _bad="$_bad; ${_ka:-0} keep-alive requests, not $_n"
    _rec=-
    if [ "$_s" = sgtrackd ]; then
        kill -0 "$TRACKD_PID" 2>/dev/null || sg_died
        _ev1=$(clicks)
        _rec=$((${_ev1% *} - ${_ev0% *}))
        [ "$_rec" -eq "$_n" ] || _bad="$_bad; $_rec click events recorded, not $_n"
        [ "${_ev1#* }" -eq 0 ] || _bad="$_bad; ${_ev1#* } event log lines that are not its clicks"
    fi
    echo "run round=$4 server=$_s requests=$_n req_per_s=${_rps:--} failed=${_failed:--}" \
        "non2xx=${_non2xx:--} keepalive=${_ka:--} p50_ms=${_p50:--} p99_ms=${_p99:--}" \
        "max_ms=${_max:--} cpu_us_per_req=$_cpu clicks_recorded=$_rec"
    if [ -n "$_perf" ]; then
        # where the time goes: by library, then sgtrackd's own functions and
        # what they call (inclusive: "children"), kernel and unnamed frames left out
        perf report -i "$work/perf-$4.data" --stdio --no-children --sort dso -g none 2>/dev/null |
            grep -v '^#' | grep . | head -n 8 | awk '{ printf "%s %s %s; ", "", $1, $2 } END { print "" }' |
            sed "s/^/# perf sgtrackd round $4 by object:/" || true
        perf report -i "$work/perf-$4.data" --stdio --children --percent-limit 2 --sort symbol -g none \
            2>/dev/null | grep -v '^#' | grep '\[\.\]' | grep -v '\] 0x0\|clone3\|start_thread' |
            head -n 25 | awk '{ printf "# perf sgtrackd round %s: %7s incl %7s self  %s\n", r, $1, $2, $4 }' r="$4" ||
            true
    fi
    if [ -n "$_bad" ]; then
        echo "# round $4, $_s:${_bad#;}"
        if [ "$_s" = sgtrackd ]; then SG_BAD=$((SG_BAD + 1)); else die "nginx run failed:${_bad#;}"; fi
    fi
    [ "$4" = warmup ] || [ -z "$_rps" ] || echo "$4 $_s $_rps $_cpu $_p99 $_max" >>"$work/results"
}
sg_died() {
    echo "# sgtrackd (pid $TRACKD_PID) is gone; its log:"
    tail -n 20 "$work/sgtrackd.log" | sed 's/^/#   /'
    TRACKD_PID=
    echo "bar_sgtrackd_alive=FAIL"
    exit 1
}

SG_BAD=0
: >"$work/results"
t_start=$(date +%s)
if [ "$WARMUP" -gt 0 ]; then
    ab_run nginx "$NPORT" "$WARMUP" warmup
    ab_run sgtrackd "$TPORT" "$WARMUP" warmup
fi
r=1
while [ "$r" -le "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 1 ]; then
        ab_run nginx "$NPORT" "$N" "$r"
        ab_run sgtrackd "$TPORT" "$N" "$r"
    else
        ab_run sgtrackd "$TPORT" "$N" "$r"
        ab_run nginx "$NPORT" "$N" "$r"
    fi
    r=$((r + 1))
done
t_end=$(date +%s)

kill -0 "$TRACKD_PID" 2>/dev/null || sg_died
HWM=$(hwm_kib "$TRACKD_PID")
ev=$(clicks)
CLICKS=${ev% *}
OTHER=${ev#* }

med_of() { awk -v s="$1" '$2 == s { print $3 }' "$work/results" | median; }
col_med() { awk -v s="$1" -v c="$2" '$2 == s { print $c }' "$work/results" | median; }
rounds_of() { awk -v s="$1" '$2 == s { printf "%s%10s", sep, $3; sep = " " }' "$work/results"; }
mn=$(med_of nginx)
ms=$(med_of sgtrackd)
RATIO=$(ratio "$ms" "$mn")

echo "#"
printf '# %-9s %s  %10s  %s\n' "server" "$(r=1; sep=; while [ "$r" -le "$ROUNDS" ]; do
    printf '%s%10s' "$sep" "round$r"; sep=' '; r=$((r + 1)); done)" "median" "CPU us/req, p99 ms, max ms (medians)"
echo "#   (requests/s: ab's Requests per second)"
for s in nginx sgtrackd; do
    printf '# %-9s %s  %10s  %s\n' "$s" "$(rounds_of "$s")" "$(med_of "$s")" \
        "$(col_med "$s" 4) $(col_med "$s" 5) $(col_med "$s" 6)"
done
printf '# per-round ratios sgtrackd/nginx:'
r=1
while [ "$r" -le "$ROUNDS" ]; do
    a=$(awk -v r="$r" '$1 == r && $2 == "nginx" { print $3 }' "$work/results")
    b=$(awk -v r="$r" '$1 == r && $2 == "sgtrackd" { print $3 }' "$work/results")
    printf ' %s' "$(ratio "${b:-0}" "${a:-0}")"
    r=$((r + 1))
done
echo
nlog=$(grep -vc 'listening on' "$work/sgtrackd.log" || true)
echo "# sgtrackd log: $(wc -l <"$work/sgtrackd.log") line(s), $nlog besides \"listening on\""
grep -v 'listening on' "$work/sgtrackd.log" | head -n 5 | sed 's/^/#   /' || true
[ ! -s "$NG/logs/error.log" ] ||
    echo "# nginx error log: $(wc -l <"$NG/logs/error.log") line(s): $(tail -n 2 "$NG/logs/error.log" | tr '\n' ' ')"
echo "# timed runs took $((t_end - t_start)) s"
echo "cpus=$CPUS threads=$THREADS n=$N c=$C rounds=$ROUNDS"
echo "req_per_s_median nginx=$mn sgtrackd=$ms"
echo "ratio sgtrackd/nginx=$RATIO"
echo "clicks_recorded=$CLICKS requests_to_sgtrackd=$SG_SENT other_event_lines=$OTHER"
echo "sgtrackd_vmhwm_kib=$HWM"

fail=0
v=PASS
if [ "$RATIO" = - ] || [ "$(awk -v r="$RATIO" -v b="$BAR" 'BEGIN { print (r >= b) }')" != 1 ]; then
    v=FAIL
    fail=1
fi
echo "bar_ratio_ge_$BAR=$v"
v=PASS
{ [ "$SG_BAD" -eq 0 ] && [ "$CLICKS" -eq "$SG_SENT" ] && [ "$OTHER" -eq 0 ]; } || { v=FAIL; fail=1; }
echo "bar_every_click_recorded_and_302=$v"
exit $fail
