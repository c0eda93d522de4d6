#!/bin/sh
# sgadmin_import - CSV imports: a header row naming columns, RFC 4180
# quoting, bad rows reported with their line and the good ones imported,
# --strict importing nothing, standard input, and errors of the file.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"

cat >"$WORK/bounces.csv" <<'CSV'
email,reason,status,type,created
good1@example.com,"550 5.1.1 <good1@example.com>: user unknown, sorry",5.1.1,hard,1700000001
not an address,whatever,5.0.0,hard,1700000002
good2@example.com,"mailbox ""full""",5.2.2,soft,1700000003
good3@example.com,blocked,5.7.1,sometimes,1700000004
"good4@example.com","multi
line reason",5.1.1,hard,1700000005
bad"quote@example.com,x,5.1.1,hard,1700000006
@domain.example,domain bounce,5.1.2,hard,1700000007
CSV
expect 65 bounces import "$WORK/bounces.csv"
err_has "bounces.csv:3:"
err_has "bounces.csv:5: bounce type 'sometimes'"
err_has "bounces.csv:8:"
out_has "imported 4 rows: 4 added"
out_has "3 rows rejected"
expect 0 --json bounces get good2@example.com
json 'j["reason"]=="mailbox \"full\"" and j["bounce_type"]=="soft" and j["created"]==1700000003'
expect 0 --json bounces get good4@example.com
json 'j["reason"]=="multi\nline reason"'
expect 0 --json bounces get @domain.example
json 'j["status"]=="5.1.2"'

# --strict: one bad row and nothing is imported
expect 65 --json unsubscribes import --strict "$WORK/bounces.csv"
err_has "nothing imported (--strict)"
expect 0 --json unsubscribes list
json 'j==[]'

# no header: positional columns (spam reports: email, source); from stdin
printf 'x@example.com,192.0.2.1\r\ny@example.com,fbl.example\r\n' >"$WORK/spam.csv"
sga spam-reports import - <"$WORK/spam.csv"
[ "$RC" -eq 0 ] || fail "stdin import exited $RC: $(cat "$WORK/err")"
expect 0 --json spam-reports list
json 'sorted((e["email"],e["source"]) for e in j)==[("x@example.com","192.0.2.1"),("y@example.com","fbl.example")]'
# importing again keeps the first created and counts them as kept
expect 0 spam-reports import "$WORK/spam.csv"
out_has "2 already listed (kept)"

# an unterminated quote at the end of the file is a reported row
printf 'ok@example.com\n"open@example.com\n' >"$WORK/open.csv"
expect 65 unsubscribes import "$WORK/open.csv"
err_has "open.csv:2: unterminated"
out_has "imported 1 row:"

# an import longer than a second shows progress on a terminal, and only there
awk 'BEGIN { for (i = 0; i < 300000; i++) printf "p%d@progress.example\n", i }' >"$WORK/big.csv"
script -qec "'$SGADMIN' --store '$STORE' unsubscribes import '$WORK/big.csv'" /dev/null >"$WORK/tty.out" 2>&1 ||
    fail "import on a terminal: $(tail -c 300 "$WORK/tty.out")"
CHECKS=$((CHECKS + 1))
grep -q 'read [0-9]* rows\|imported [0-9]* of 300000 rows' "$WORK/tty.out" ||
    fail "no progress on a terminal: $(tail -c 300 "$WORK/tty.out")"
expect 0 unsubscribes import "$WORK/big.csv"
out_has "300000 already listed (kept)"
CHECKS=$((CHECKS + 1))
! grep -q 'imported [0-9]* of' "$WORK/err" || fail "progress written to a non-terminal"

expect 66 bounces import "$WORK/missing.csv"
err_has "cannot open"
expect 64 bounces import
done_ok
