#!/bin/sh
# bounce_corpus - the bounce, feedback-report, auto-reply and unsubscribe
# fixtures (tests/fixtures/bounces) through "sgadmin ingest": each one's
# actions as its .expect file says, and each read the same as Sisimai
# (Debian's libsisimai-perl, the reference bounce parser) reads it, or the
# fixture says why sendguard is right.  Then what the actions did to the
# store: the hard bounce listed, the block listed but not dropped, soft
# bounces counted, the complaint and the unsubscribes listed.  Last the
# command's edges: a 30 MB message (only feedback.max_size parsed, all of it
# read), a store or configuration that cannot be used (exit 75, EX_TEMPFAIL,
# so that Postfix retries), a bad command line (64).
. "$(dirname "$0")/lib.sh"
perl -MSisimai -e 1 2>/dev/null || fail "needs libsisimai-perl (tools/debian-setup installs it)"
PY=/usr/bin/python3

CONF="$WORK/sendguard.conf"
cat >"$CONF" <<EOF
store = { path = "$STORE"; };
secrets = { token_key_file = "$WORK/token.key"; };
EOF
A="-c $CONF"
expect 0 $A token generate
# the groups the unsubscribe tokens name (3)
for g in One Two Three; do expect 0 $A groups create --name "$g"; done

$PY "$SG_TOP_SRCDIR/tests/integration/bounce_corpus.py" "$SG_TOP_SRCDIR/tests/fixtures/bounces" \
    "$WORK" "$CONF" "$SGADMIN" "$SG_TOP_BUILDDIR/tests/integration/token_make" "$WORK/token.key" \
    "$SG_TOP_SRCDIR/tests/integration/bounce_sisimai.pl" >"$WORK/corpus.out" 2>&1 ||
    fail "$(cat "$WORK/corpus.out")"
cat "$WORK/corpus.out"
CHECKS=$((CHECKS + $(sed -n 's/.* \([0-9]*\) checks.*/\1/p' "$WORK/corpus.out")))

# what those actions left in the store
expect 0 $A --json lookup alice@example.org
json 'j["decision"] == "drop" and j["reason"] == "bounce" and j["matches"][0]["bounce_type"] == "hard"'
expect 0 $A --json lookup carl@example.com
json 'j["decision"] == "deliver" and j["matches"][0]["bounce_type"] == "block"'
expect 0 $A --json lookup erin@example.net
json 'j["decision"] == "deliver" and j["matches"] == []'
expect 0 $A --json lookup alice@yahoo.example
json 'j["decision"] == "drop" and j["reason"] == "spam_report"'
expect 0 $A --json lookup bob@hotmail.example
json 'j["decision"] == "drop" and j["reason"] == "spam_report"'
expect 0 $A --json lookup erin@example.com
json 'j["decision"] == "drop" and j["reason"] == "global_unsubscribe"'
expect 0 $A --json lookup dave@example.org --group 3
json 'j["decision"] == "drop" and j["reason"] == "group_unsubscribe"'
expect 0 $A --json spam-reports list
json 'len(j) == 6 and all(r["source"] for r in j) and not any(r["email"].startswith(("xxx", "redacted")) for r in j)'

# a huge message: only feedback.max_size of it is parsed, all of it is read
# (pipe(8) sees it taken), and what lies in that part counts
cat >"$WORK/small.conf" <<EOF
store = { path = "$STORE"; };
secrets = { token_key_file = "$WORK/token.key"; };
feedback = { max_size = "1M"; };
EOF
$PY - "$SG_TOP_SRCDIR/tests/fixtures/bounces/postfix-user-unknown.eml" "$WORK/huge.eml" \
    "$WORK/late.eml" <<'PY'
import sys
dsn = open(sys.argv[1], "rb").read()
filler = (b"X" * 76 + b"\n") * (30 * 1024 * 1024 // 77)
# the report first, then 30 MB of epilogue
open(sys.argv[2], "wb").write(dsn + filler)
# 30 MB of a human's text first, the report after it: beyond the limit
open(sys.argv[3], "wb").write(b"From: someone@example.net\nSubject: big\n\n" + filler + dsn)
PY
expect 0 -c "$WORK/small.conf" --json ingest --recipient bounces@shop.example "$WORK/huge.eml"
json 'j[0]["actions"][0]["action"] == "bounce" and j[0]["actions"][0]["email"] == "bob@example.org"'
expect 0 -c "$WORK/small.conf" --json ingest --recipient bounces@shop.example < "$WORK/late.eml"
json 'j[0]["actions"][0]["action"] == "unmatched" and j[0]["actions"][0]["kind"] == "none"'
# a store that cannot be used now: EX_TEMPFAIL (75), so that Postfix retries
: >"$WORK/not-a-dir"
cat >"$WORK/broken.conf" <<EOF
store = { path = "$WORK/not-a-dir"; };
secrets = { token_key_file = "$WORK/token.key"; };
EOF
# (sgadmin itself: lib.sh's sga gives --store, which would override store.path)
ingest_rc() {
    set +e
    "$SGADMIN" -c "$1" ingest --recipient bounces@shop.example <"$2" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
    CHECKS=$((CHECKS + 1))
}
ingest_rc "$WORK/broken.conf" "$WORK/huge.eml"
check "a store that is a file: exit 75 ($RC, $(cat "$WORK/err"))" [ "$RC" -eq 75 ]
err_has "not-a-dir"
# a configuration that does not load: the same
printf 'store = { path = 42; };\n' >"$WORK/bad.conf"
ingest_rc "$WORK/bad.conf" "$SG_TOP_SRCDIR/tests/fixtures/bounces/postfix-user-unknown.eml"
check "a configuration that does not load: exit 75 ($RC, $(cat "$WORK/err"))" [ "$RC" -eq 75 ]
# a bad command line is the administrator's: EX_USAGE
expect 64 -c "$CONF" ingest --no-such-option
done_ok
