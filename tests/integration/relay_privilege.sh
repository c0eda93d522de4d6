#!/bin/sh
# relay_privilege - the privilege model of sgrelay(8), with the program
# installed set-group-ID as make install-sendmail does, and ordinary users
# (nobody, daemon) submitting through it with setpriv:
#  - a user's submission is queued (exit 0) in a spool the user cannot
#    enter, and the password file is out of the user's reach;
#  - a user lists only their own entries (-bp, and as mailq); root all;
#  - a user may not run the queue (exit 77);
#  - a configuration the user wrote (-C) costs the group: the system's spool
#    is then out of reach (exit 73) and nothing is queued; one that root
#    wrote for everyone keeps it;
#  - entries are created mode 0660, group sendguard's, and record the uid;
#  - two users' background deliveries both append to the one event file.
. "$(dirname "$0")/lib.sh"
: "${SGRELAY:?run through make check}"

if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null || ! command -v groupadd >/dev/null; then
    [ "${CI:-}" = true ] && fail "needs root, setpriv and groupadd (CI runs as root)"
    echo "relay_privilege: SKIP (needs root)"
    exit 77
fi

# a group of our own for this run, removed at the end
GRP="sgt$$"
groupadd --system "$GRP" || fail "cannot create group $GRP"
# the configuration lives where root keeps configurations (see below)
MADE_ETC=0
if [ ! -d /etc/sendguard ]; then
    install -d -m 755 /etc/sendguard
    MADE_ETC=1
fi
CONF="/etc/sendguard/sgtest-$$.conf"
ETC2="/etc/sendguard/sgtest2-$$.conf"
cleanup() {
    stop_peers
    rm -f "$CONF" "$ETC2"
    [ "$MADE_ETC" -eq 0 ] || rmdir /etc/sendguard 2>/dev/null || true
    groupdel "$GRP" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
chmod 755 "$WORK" # the users must reach the program and the configuration

# the installation: sgrelay setgid, the spool and the password file the group's
install -d -m 755 "$WORK/bin"
install -m 2755 -g "$GRP" "$SGRELAY" "$WORK/bin/sgrelay"
ln -s "$WORK/bin/sgrelay" "$WORK/bin/mailq"
install -d -o root -g "$GRP" -m 2770 "$WORK/spool" "$WORK/spool/tmp" "$WORK/spool/queue" \
    "$WORK/spool/defer"
install -d -o root -g "$GRP" -m 2770 "$WORK/store"
printf 's3cret\n' >"$WORK/password"
chgrp "$GRP" "$WORK/password"
chmod 640 "$WORK/password"
cat >"$CONF" <<EOF
store = { path = "$WORK/store"; };
spool = { path = "$WORK/spool"; };
relay = { smarthost = "127.0.0.1:9"; domain = "relay.test"; starttls = "none";
          auth_user = "app"; password_file = "$WORK/password"; };
EOF
chmod 644 "$CONF"
printf 'Subject: from a user\n\nbody\n' >"$WORK/in"
chmod 644 "$WORK/in"

# as USER: ARGS... - run a command as an ordinary user, output in out/err
as() {
    u=$1
    shift
    set +e
    setpriv --reuid="$u" --regid=nogroup --clear-groups --reset-env "$@" \
        <"$WORK/in" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
}

as nobody "$WORK/bin/sgrelay" -C "$CONF" -odq -f n@example.org to@example.org
expect_rc 0 "nobody submits with -odq"
as daemon "$WORK/bin/sgrelay" -C "$CONF" -odq -f d@example.org other@example.org
expect_rc 0 "daemon submits with -odq"
check "two entries queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq 2 ]
for f in "$WORK"/spool/queue/*; do
    check "entry $f is mode 660" [ "$(stat -c %a "$f")" = 660 ]
    check "entry $f is the group's" [ "$(stat -c %G "$f")" = "$GRP" ]
done
NQ=$(grep -l '^F n@example.org' "$WORK"/spool/queue/* | head -1)
check "nobody's entry found" [ -n "$NQ" ]
check "the entry records nobody's uid" grep -q '^C [0-9]* 65534$' "$NQ"

# the spool and the password file are out of the users' reach
as nobody ls "$WORK/spool/queue"
check "nobody cannot list the queue directory" [ "$RC" -ne 0 ]
as nobody cat "$NQ"
check "nobody cannot read a queue file, even their own" [ "$RC" -ne 0 ]
as daemon sh -c "echo x >>'$NQ'"
check "daemon cannot change nobody's entry" [ "$RC" -ne 0 ]
as nobody cat "$WORK/password"
check "nobody cannot read the password file" [ "$RC" -ne 0 ]

# listing: one's own entries only; root sees all
as nobody "$WORK/bin/sgrelay" -C "$CONF" -bp
expect_rc 0 "nobody -bp"
out_has "to@example.org"
out_lacks "other@example.org"
as daemon "$WORK/bin/mailq" -C "$CONF"
expect_rc 0 "daemon as mailq"
out_has "other@example.org"
out_lacks "to@example.org"
sgr -bp
out_has "to@example.org"
out_has "other@example.org"

# running the queue is root's (or the spool owner's)
as nobody "$WORK/bin/sgrelay" -C "$CONF" -q
expect_rc 77 "nobody -q"
grep -q "only root or the spool's owner may run the queue" "$WORK/err" ||
    fail "no reason for the refused -q: $(cat "$WORK/err")"

# background delivery by two users' processes: both record their events in
# the one day file, whoever created it (the group's, mode 0660)
as nobody "$WORK/bin/sgrelay" -C "$CONF" -odi -f n@example.org ev1@example.org
expect_rc 0 "nobody -odi"
as daemon "$WORK/bin/sgrelay" -C "$CONF" -odi -f d@example.org ev2@example.org
expect_rc 0 "daemon -odi"
EV=$(ls "$WORK"/store/events/*.jsonl | head -1)
check "the event file is the group's ($(stat -c '%a %U:%G' "$EV"))" [ "$(stat -c %a:%G "$EV")" = "660:$GRP" ]
# has_event FILE EMAIL TYPE - a record of that type for that address
has_event() {
    $PY -c 'import json,sys; sys.exit(not any(e.get("email") == sys.argv[2] and e.get("event") == sys.argv[3] for e in map(json.loads, open(sys.argv[1]))))' "$@"
}
check "nobody's events recorded" has_event "$EV" ev1@example.org deferred
check "daemon's events recorded too" has_event "$EV" ev2@example.org deferred

# a configuration the user could have written costs the group
NQUEUED=$(count_files "$WORK/spool/queue" '*')
cp "$CONF" "$WORK/user.conf"
chown nobody "$WORK/user.conf"
as nobody "$WORK/bin/sgrelay" -C "$WORK/user.conf" -odq -f n@example.org to@example.org
expect_rc 73 "nobody with their own -C"
check "nothing more queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq "$NQUEUED" ]
# /proc/self/cmdline is root's and world-readable in a setgid process, with
# the caller's argv as contents: a "configuration" of the caller's choosing
# that must not keep the group (it would name the caller's smarthost and
# hand it the password)
cat >"$WORK/cmdline.py" <<'PY'
import os, sys
conf = 'spool = { path = "%s"; }; /*' % sys.argv[2]
# the NULs between the arguments fall inside comments; the last is left open
os.execv(sys.argv[1], [conf, "-C", "/proc/self/cmdline", "-odq", "-f", "n@example.org",
                       "-F", "*/ /*", "to@example.org"])
PY
as nobody $PY "$WORK/cmdline.py" "$WORK/bin/sgrelay" "$WORK/spool"
check "-C /proc/self/cmdline costs the group (rc $RC: $(cat "$WORK/err"))" [ "$RC" -ne 0 ]
check "nothing queued through /proc/self/cmdline" [ "$(count_files "$WORK/spool/queue" '*')" -eq "$NQUEUED" ]

# root-owned and world-readable is not enough elsewhere either: only a file
# root keeps beside the default configuration, in /etc/sendguard
chown root "$WORK/user.conf"
chmod 644 "$WORK/user.conf"
as nobody "$WORK/bin/sgrelay" -C "$WORK/user.conf" -odq -f n@example.org to@example.org
expect_rc 73 "a root file outside /etc/sendguard is not trusted"
install -m 664 -o root -g root "$CONF" "$ETC2"
as nobody "$WORK/bin/sgrelay" -C "$ETC2" -odq -f n@example.org to@example.org
expect_rc 73 "a file in /etc/sendguard that its group may change is not trusted"
chmod 640 "$ETC2"
as nobody "$WORK/bin/sgrelay" -C "$ETC2" -bp
check "a file others may not read is not trusted (rc $RC)" [ "$RC" -ne 0 ]
chmod 644 "$ETC2"
as nobody "$WORK/bin/sgrelay" -C "$ETC2" -odq -f n@example.org to@example.org
expect_rc 0 "a file root keeps in /etc/sendguard for everyone keeps the group"
as nobody "$WORK/bin/sgrelay" -C "/etc/sendguard/../sendguard/sgtest2-$$.conf" -odq -f n@example.org to@example.org
expect_rc 73 "only a plain name in /etc/sendguard"
done_ok
