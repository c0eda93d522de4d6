# postfix.sh - a private Postfix instance and smtp-sink on loopback, for the
# integration tests and benchmarks (see /work/shared/TESTING.md, "A private
# Postfix on loopback").  Source it from a POSIX sh script:
#
#   . "$SG_TOP_SRCDIR/tests/postfix.sh"
#   trap 'pf_cleanup; ...' EXIT INT TERM
#   sink_start "$WORK/sink" "$SINKPORT"          # stores one file per message
#   pf_start "$WORK/pf" "$SMTPPORT" "$SINKPORT" "$WORK/milter.cf"
#   printf 'Subject: x\n\nhi\n' | pf_sendmail -f a@example.com b@example.org
#   sink_wait 1 30
#   pf_stop; sink_stop
#
# Must run as root (Postfix's master and smtp-sink -u need it).  Nothing is
# ever stopped by process name: Postfix by "postfix -c DIR stop" and then by
# the master's pid (its process group), smtp-sink by the pid this shell got.
# Each function returns non-zero with a message on standard error when it
# fails, so a caller under "set -e" stops there (and its trap cleans up).
#
# Postfix instance (DIR is created if missing and belongs to the test):
#   pf_start DIR SMTPPORT RELAYHOST [EXTRA_MAIN_CF_FILE]
#     DIR and the directories above it must be searchable by user postfix:
#     those under $TMPDIR or /tmp (a test's mktemp -d) get o+x; for others
#     pf_start fails and says so.
#       DIR/etc    config_directory: main.cf, master.cf (Debian's, with the
#                  "smtp inet" service on 127.0.0.1:SMTPPORT, no chroot)
#       DIR/queue  queue_directory (root, Postfix makes its subdirectories)
#       DIR/data   data_directory (owned by postfix)
#       DIR/maillog  maillog_file (maillog_file_prefixes = DIR)
#     RELAYHOST: a port number (relayhost = [127.0.0.1]:PORT), a literal
#     relayhost value such as "[127.0.0.1]:2525", or "" for none.
#     SMTPPORT: a port, or "-" for no smtpd listener on the network.
#     Extra main.cf lines (milters, hold rules, tuning) come from the file
#     EXTRA_MAIN_CF_FILE and/or the variable PF_EXTRA_MAIN_CF (text); they are
#     appended after the defaults, so they override them.  Milters, e.g.:
#       smtpd_milters = unix:/path/to/sock   (or inet:127.0.0.1:PORT)
#       non_smtpd_milters = $smtpd_milters
#       milter_default_action = tempfail
#     Sets PF_DIR, PF_CONF (the config directory), PF_QUEUE, PF_LOG, PF_PID
#     (the master) and PF_SENDMAIL (its sendmail_path).
#     /etc/postfix/main.cf (PF_MAIN_CF_DEFAULT) gets DIR/etc added to its
#     alternate_config_directories (under a lock, once), and pf_stop takes
#     it out again; a main.cf that did not exist is made for it, and removed
#     when the last test instance is gone.
#   pf_sendmail ARGS...   Postfix's sendmail -C PF_CONF ARGS (stdin passed on)
#   pf_postconf ARGS... / pf_postqueue ARGS... / pf_postsuper ARGS...
#                         the same tools on this instance
#   pf_queue_count [QUEUE...]  messages in the queues (default: maildrop
#                         incoming active deferred hold)
#   pf_wait_queue N QUEUES TIMEOUT  until pf_queue_count QUEUES is N
#   pf_log [LINES]        the maillog (the last LINES lines)
#   pf_stop [DIR]         stop the instance in DIR (default: PF_DIR)
#
# smtp-sink:
#   sink_start DIR PORT [SMTP-SINK-OPTION...]
#     Runs "smtp-sink -c [-d DIR/%M.] -u postfix OPTIONS 127.0.0.1:PORT
#     BACKLOG" in the background.  SINK_STORE=no counts without storing
#     (nothing written per message: use it for benchmarks); SINK_BACKLOG
#     (default 1024) is listen(2)'s backlog.  The running counters (-c) go to
#     DIR/sink.out.  Sets SINK_DIR, SINK_PID.
#   sink_count [DIR]      messages the sink received so far ("." received)
#   sink_wait N [TIMEOUT [DIR]]  until sink_count reaches N (default 60 s)
#   sink_stop [DIR]       stop the sink in DIR (default: the last started)
#
# pf_cleanup             stop every instance and sink this shell started;
#                        call it from the caller's EXIT trap.

PF_MAIN_CF_DEFAULT=${PF_MAIN_CF_DEFAULT:-/etc/postfix/main.cf}
PF_MASTER_CF=${PF_MASTER_CF:-/etc/postfix/master.cf}
PF_LOCK=${PF_LOCK:-/tmp/sg-test-postfix-main.cf.lock}
PF_POSTFIX=${PF_POSTFIX:-/usr/sbin/postfix}
PF_POSTCONF=${PF_POSTCONF:-/usr/sbin/postconf}
SINK_BIN=${SINK_BIN:-/usr/sbin/smtp-sink}
_PF_ALL=${_PF_ALL:-}
_PF_MARK="# made by sendguard's tests/postfix.sh for alternate_config_directories"
_SINK_ALL=${_SINK_ALL:-}

_pf_err() {
    echo "postfix.sh: $*" >&2
    return 1
}

# _pf_altdirs_edit add|del CONFDIR - alternate_config_directories in the
# default main.cf: add CONFDIR once, or remove it.  Called holding the lock (PF_LOCK).
_pf_altdirs_edit() {
    _pfa_dir=$(dirname "$PF_MAIN_CF_DEFAULT")
    if [ ! -f "$PF_MAIN_CF_DEFAULT" ]; then
        [ "$1" = add ] || return 0
        # Debian's postfix with "No configuration" has no main.cf at all;
        # one made here is removed again once no instance is listed
        echo "$_PF_MARK" >"$PF_MAIN_CF_DEFAULT" || return 1
        chmod 644 "$PF_MAIN_CF_DEFAULT"
    fi
    _pfa_old=$("$PF_POSTCONF" -c "$_pfa_dir" -h alternate_config_directories 2>/dev/null |
        tr ',' ' ') || _pfa_old=
    _pfa_new=
    _pfa_found=no
    for _pfa_d in $_pfa_old; do
        if [ "$_pfa_d" = "$2" ]; then
            _pfa_found=yes
            [ "$1" = del ] && continue
        fi
        _pfa_new="${_pfa_new:+$_pfa_new, }$_pfa_d"
    done
    if [ "$1" = add ]; then
        [ "$_pfa_found" = yes ] && return 0
        _pfa_new="${_pfa_new:+$_pfa_new, }$2"
    elif [ "$_pfa_found" = no ]; then
        return 0
    fi
    if [ -n "$_pfa_new" ]; then
        "$PF_POSTCONF" -c "$_pfa_dir" -e "alternate_config_directories = $_pfa_new"
    else
        "$PF_POSTCONF" -c "$_pfa_dir" -X alternate_config_directories || return 1
        if [ "$(grep -v '^[[:space:]]*$' "$PF_MAIN_CF_DEFAULT")" = "$_PF_MARK" ]; then
            rm -f "$PF_MAIN_CF_DEFAULT"
        fi
    fi
}

# _pf_port_busy PORT - something listens on TCP PORT already.  Postfix's
# master and smtp-sink both bind with SO_REUSEPORT, so a second listener on a
# port in use starts without an error and steals half of the connections.
_pf_port_busy() {
    command -v ss >/dev/null 2>&1 || return 1
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# _pf_reachable DIR - make DIR reachable by Postfix's daemons and smtp-sink,
# which run as postfix: DIR gets mode 755, and the directories above it must
# be searchable by others.  A test's own temporary directory (under $TMPDIR
# or /tmp, as mktemp -d makes them, mode 0700) gets o+x; any other is the
# caller's to decide, and is an error.
_pf_reachable() {
    chmod 755 "$1" || return 1
    _pfr_d=$(dirname "$1")
    while [ "$_pfr_d" != / ]; do
        if [ -z "$(find "$_pfr_d" -maxdepth 0 -perm -o+x)" ]; then
            case $_pfr_d in
            "${TMPDIR:-/tmp}"/?* | /tmp/?*) chmod o+x "$_pfr_d" || return 1 ;;
            *) _pf_err "$_pfr_d is not searchable by others: Postfix's daemons and smtp-sink (user postfix) cannot reach $1"
               return 1 ;;
            esac
        fi
        _pfr_d=$(dirname "$_pfr_d")
    done
}

# _pf_running PID - the master with this pid is alive
_pf_running() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

pf_start() {
    [ $# -ge 3 ] || { _pf_err "usage: pf_start DIR SMTPPORT RELAYHOST [EXTRA_MAIN_CF_FILE]"; return 1; }
    [ "$(id -u)" -eq 0 ] || { _pf_err "pf_start needs root"; return 1; }
    [ -x "$PF_POSTFIX" ] || { _pf_err "no $PF_POSTFIX: install postfix"; return 1; }
    _pf_dir=$1
    _pf_port=$2
    _pf_relay=$3
    _pf_extra=${4:-}
    [ -z "$_pf_extra" ] || [ -r "$_pf_extra" ] || { _pf_err "cannot read $_pf_extra"; return 1; }
    mkdir -p "$_pf_dir" || return 1
    _pf_dir=$(cd "$_pf_dir" && pwd -P)
    _pf_reachable "$_pf_dir" || return 1
    mkdir -p "$_pf_dir/etc" "$_pf_dir/queue" "$_pf_dir/data" || return 1
    chown root:root "$_pf_dir/etc" "$_pf_dir/queue"
    chmod 755 "$_pf_dir/etc" "$_pf_dir/queue"
    chown postfix "$_pf_dir/data" || return 1
    case $_pf_relay in
    '') _pf_relayhost= ;;
    *[!0-9]*) _pf_relayhost=$_pf_relay ;;
    *) _pf_relayhost="[127.0.0.1]:$_pf_relay" ;;
    esac
    case $_pf_port in
    -) _pf_listen= ;;
    '' | *[!0-9]*) _pf_err "pf_start: bad SMTPPORT '$_pf_port'"; return 1 ;;
    *) _pf_listen=127.0.0.1:$_pf_port ;;
    esac
    if [ -n "$_pf_listen" ] && _pf_port_busy "$_pf_port"; then
        _pf_err "pf_start: TCP port $_pf_port is in use already: $(ss -Hltnp "sport = :$_pf_port" 2>/dev/null)"
        return 1
    fi
    # master.cf: Debian's, every service out of chroot (the private queue has
    # no etc/ for one), the smtpd inet service on loopback only
    awk -v addr="$_pf_listen" '
        /^[^#[:space:]]/ && NF >= 8 {
            if ($2 == "inet" && $1 == "smtp") {
                if (addr == "") { print "#" $0; skip = 1; next }
                $1 = addr
            }
            $5 = "n"
            skip = 0
        }
        /^[[:space:]]/ && skip { print "#" $0; next }
        /^[^[:space:]]/ { skip = 0 }
        { print }' "$PF_MASTER_CF" >"$_pf_dir/etc/master.cf" || return 1
    grep -q "^$_pf_listen " "$_pf_dir/etc/master.cf" || [ -z "$_pf_listen" ] ||
        { _pf_err "no 'smtp inet' service in $PF_MASTER_CF"; return 1; }
    cat >"$_pf_dir/etc/main.cf" <<EOF
# written by tests/postfix.sh for a private test instance
compatibility_level = 3.6
queue_directory = $_pf_dir/queue
data_directory = $_pf_dir/data
maillog_file = $_pf_dir/maillog
maillog_file_prefixes = $_pf_dir
myhostname = postfix.sg-test.invalid
mydomain = sg-test.invalid
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = $_pf_relayhost
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
append_dot_mydomain = no
delay_warning_time = 0
EOF
    [ -z "$_pf_extra" ] || cat "$_pf_extra" >>"$_pf_dir/etc/main.cf"
    [ -z "${PF_EXTRA_MAIN_CF:-}" ] || printf '%s\n' "$PF_EXTRA_MAIN_CF" >>"$_pf_dir/etc/main.cf"
    if command -v flock >/dev/null 2>&1; then
        (
            flock 9
            _pf_altdirs_edit add "$_pf_dir/etc"
        ) 9>>"$PF_LOCK" || { _pf_err "cannot add $_pf_dir/etc to alternate_config_directories in $PF_MAIN_CF_DEFAULT"; return 1; }
    else
        _pf_altdirs_edit add "$_pf_dir/etc" || { _pf_err "cannot edit $PF_MAIN_CF_DEFAULT"; return 1; }
    fi
    _PF_ALL="$_PF_ALL $_pf_dir"
    PF_DIR=$_pf_dir
    PF_CONF=$_pf_dir/etc
    PF_QUEUE=$_pf_dir/queue
    PF_LOG=$_pf_dir/maillog
    PF_PID=
    if ! "$PF_POSTCONF" -c "$PF_CONF" >/dev/null 2>"$_pf_dir/postconf.err"; then
        _pf_err "the configuration in $PF_CONF does not parse: $(cat "$_pf_dir/postconf.err")"
        return 1
    fi
    if [ -s "$_pf_dir/postconf.err" ]; then
        echo "postfix.sh: postconf warnings for $PF_CONF:" >&2
        cat "$_pf_dir/postconf.err" >&2
    fi
    if ! "$PF_POSTFIX" -c "$PF_CONF" start >"$_pf_dir/start.out" 2>&1; then
        {
            echo "postfix.sh: 'postfix -c $PF_CONF start' failed (SMTP port $_pf_port, relayhost '$_pf_relayhost'):"
            sed 's/^/  | /' "$_pf_dir/start.out"
            echo "postfix.sh: $PF_LOG (last 30 lines):"
            tail -n 30 "$PF_LOG" 2>/dev/null | sed 's/^/  | /'
            # postfix(1) writes its fatal errors to standard error only when
            # that is a terminal, and some come before it reads maillog_file:
            # ask again through a pseudo-terminal
            if command -v script >/dev/null 2>&1; then
                echo "postfix.sh: 'postfix -c $PF_CONF check' says:"
                script -qec "$PF_POSTFIX -c '$PF_CONF' check" /dev/null 2>&1 |
                    tr -d '\r' | sed 's/^/  | /'
            fi
        } >&2
        # a master that started but failed later (e.g. port in use) may linger
        pf_stop "$_pf_dir" >/dev/null 2>&1 || true
        return 1
    fi
    PF_PID=$(awk '{ print $1; exit }' "$PF_QUEUE/pid/master.pid" 2>/dev/null)
    _pf_running "$PF_PID" || {
        _pf_err "Postfix in $PF_DIR reported a start but its master is not running; $PF_LOG: $(tail -n 20 "$PF_LOG" 2>/dev/null)"
        return 1
    }
    echo "$PF_PID" >"$_pf_dir/master.pid"
    PF_SENDMAIL=$("$PF_POSTCONF" -c "$PF_CONF" -h sendmail_path)
    return 0
}

pf_sendmail() {
    "${PF_SENDMAIL:-/usr/sbin/sendmail}" -C "$PF_CONF" "$@"
}
pf_postconf() {
    "$PF_POSTCONF" -c "$PF_CONF" "$@"
}
pf_postqueue() {
    /usr/sbin/postqueue -c "$PF_CONF" "$@"
}
pf_postsuper() {
    /usr/sbin/postsuper -c "$PF_CONF" "$@"
}

pf_queue_count() {
    [ $# -gt 0 ] || set -- maildrop incoming active deferred hold
    _pfq_n=0
    for _pfq_q; do
        [ -d "$PF_QUEUE/$_pfq_q" ] || continue
        _pfq_n=$((_pfq_n + $(find "$PF_QUEUE/$_pfq_q" -type f | wc -l)))
    done
    echo "$_pfq_n"
}

# pf_wait_queue N "QUEUE..." TIMEOUT - until those queues hold N messages
pf_wait_queue() {
    _pfw_end=$(($(date +%s) + ${3:-60}))
    while :; do
        # shellcheck disable=SC2086
        _pfw_n=$(pf_queue_count $2)
        [ "$_pfw_n" -eq "$1" ] && return 0
        if [ "$(date +%s)" -ge "$_pfw_end" ]; then
            _pf_err "Postfix queue ($2) holds $_pfw_n messages, not $1, after ${3:-60} s; $PF_LOG: $(tail -n 20 "$PF_LOG" 2>/dev/null)"
            return 1
        fi
        sleep 0.1
    done
}

pf_log() {
    if [ -n "${1:-}" ]; then tail -n "$1" "$PF_LOG"; else cat "$PF_LOG"; fi
}

pf_stop() {
    _pfs_dir=${1:-${PF_DIR:-}}
    [ -n "$_pfs_dir" ] || return 0
    _pfs_pid=$(cat "$_pfs_dir/master.pid" 2>/dev/null ||
        awk '{ print $1; exit }' "$_pfs_dir/queue/pid/master.pid" 2>/dev/null) || _pfs_pid=
    if [ -f "$_pfs_dir/etc/main.cf" ] && _pf_running "$_pfs_pid"; then
        "$PF_POSTFIX" -c "$_pfs_dir/etc" stop >"$_pfs_dir/stop.out" 2>&1 || true
    fi
    if [ -n "$_pfs_pid" ]; then
        # the master leads its own process group: wait for every process of
        # that group (smtp, cleanup, ...) to go, then force it
        _pfs_i=0
        while kill -0 "-$_pfs_pid" 2>/dev/null && [ "$_pfs_i" -lt 50 ]; do
            [ "$_pfs_i" -eq 20 ] && kill -TERM "-$_pfs_pid" 2>/dev/null
            sleep 0.1
            _pfs_i=$((_pfs_i + 1))
        done
        kill -0 "-$_pfs_pid" 2>/dev/null && kill -KILL "-$_pfs_pid" 2>/dev/null
        rm -f "$_pfs_dir/master.pid"
    fi
    if command -v flock >/dev/null 2>&1 && [ -f "$PF_MAIN_CF_DEFAULT" ]; then
        (
            flock 9
            _pf_altdirs_edit del "$_pfs_dir/etc"
        ) 9>>"$PF_LOCK" || true
    else
        _pf_altdirs_edit del "$_pfs_dir/etc" || true
    fi
    _pfs_rest=
    for _pfs_d in $_PF_ALL; do
        [ "$_pfs_d" = "$_pfs_dir" ] || _pfs_rest="$_pfs_rest $_pfs_d"
    done
    _PF_ALL=$_pfs_rest
    return 0
}

# --- smtp-sink ---

sink_start() {
    [ $# -ge 2 ] || { _pf_err "usage: sink_start DIR PORT [SMTP-SINK-OPTION...]"; return 1; }
    [ -x "$SINK_BIN" ] || { _pf_err "no $SINK_BIN: install postfix"; return 1; }
    _sk_dir=$1
    _sk_port=$2
    shift 2
    if _pf_port_busy "$_sk_port"; then
        _pf_err "sink_start: TCP port $_sk_port is in use already: $(ss -Hltnp "sport = :$_sk_port" 2>/dev/null)"
        return 1
    fi
    mkdir -p "$_sk_dir" || return 1
    _sk_dir=$(cd "$_sk_dir" && pwd -P)
    chown postfix "$_sk_dir" || return 1
    _pf_reachable "$_sk_dir" || return 1
    set -- -c -u postfix "$@"
    [ "${SINK_STORE:-yes}" = no ] || set -- -d "$_sk_dir/%M." "$@"
    : >"$_sk_dir/sink.out"
    "$SINK_BIN" "$@" "127.0.0.1:$_sk_port" "${SINK_BACKLOG:-1024}" \
        >"$_sk_dir/sink.out" 2>"$_sk_dir/sink.err" </dev/null &
    SINK_PID=$!
    SINK_DIR=$_sk_dir
    echo "$SINK_PID" >"$_sk_dir/sink.pid"
    _SINK_ALL="$_SINK_ALL $_sk_dir"
    _sk_i=0
    while [ "$_sk_i" -lt 100 ]; do
        if ! kill -0 "$SINK_PID" 2>/dev/null; then
            _pf_err "smtp-sink on 127.0.0.1:$_sk_port did not start: $(cat "$_sk_dir/sink.err")"
            return 1
        fi
        if command -v ss >/dev/null 2>&1; then
            ss -Hltn "sport = :$_sk_port" 2>/dev/null | grep -q . && return 0
        else
            /usr/bin/python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
                "$_sk_port" 2>/dev/null && return 0
        fi
        sleep 0.05
        _sk_i=$((_sk_i + 1))
    done
    _pf_err "smtp-sink on 127.0.0.1:$_sk_port not listening after 5 s: $(cat "$_sk_dir/sink.err")"
    return 1
}

sink_count() {
    # the counters line is rewritten after "\r": "sess=N quit=N mesg=N"
    tail -c 200 "${1:-$SINK_DIR}/sink.out" | tr '\r' '\n' |
        sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1 | grep . || echo 0
}

sink_wait() {
    _skw_end=$(($(date +%s) + ${2:-60}))
    while :; do
        _skw_n=$(sink_count "${3:-$SINK_DIR}")
        [ "$_skw_n" -ge "$1" ] && return 0
        if [ "$(date +%s)" -ge "$_skw_end" ]; then
            _pf_err "the sink in ${3:-$SINK_DIR} received $_skw_n messages, not $1, in ${2:-60} s"
            return 1
        fi
        sleep 0.05
    done
}

sink_stop() {
    _sks_dir=${1:-${SINK_DIR:-}}
    [ -n "$_sks_dir" ] || return 0
    _sks_pid=$(cat "$_sks_dir/sink.pid" 2>/dev/null) || _sks_pid=
    if [ -n "$_sks_pid" ]; then
        kill "$_sks_pid" 2>/dev/null || true
        # reaps it when it is this shell's child; else wait for it to go
        wait "$_sks_pid" 2>/dev/null || true
        _sks_i=0
        while kill -0 "$_sks_pid" 2>/dev/null && [ "$_sks_i" -lt 50 ]; do
            # a zombie (not our child, parent gone) counts as gone
            case $(ps -o stat= -p "$_sks_pid" 2>/dev/null) in Z*) break ;; esac
            sleep 0.1
            _sks_i=$((_sks_i + 1))
        done
        kill -0 "$_sks_pid" 2>/dev/null && kill -KILL "$_sks_pid" 2>/dev/null
        rm -f "$_sks_dir/sink.pid"
    fi
    _sks_rest=
    for _sks_d in $_SINK_ALL; do
        [ "$_sks_d" = "$_sks_dir" ] || _sks_rest="$_sks_rest $_sks_d"
    done
    _SINK_ALL=$_sks_rest
    return 0
}

pf_cleanup() {
    for _pfc_d in $_PF_ALL; do pf_stop "$_pfc_d"; done
    for _pfc_d in $_SINK_ALL; do sink_stop "$_pfc_d"; done
    return 0
}
