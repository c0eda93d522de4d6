#!/bin/sh
# track_corpus - the tracking rewrite over a corpus of messages
# (tests/fixtures/messages/NAME.eml, each saying what it exercises in its
# X-Test-Note field and turning its filters on in X-SMTPAPI), each through
# track_message (the pipeline's copy for one recipient) and taken apart by
# track_corpus.py with Python's email package and html.parser against
# NAME.expect:
#   structure  the same MIME tree, the same bytes outside the rewritten
#              bodies (part headers, preambles, delimiters, epilogues),
#              each part's Content-Transfer-Encoding kept, the parts named
#              identical (attachments, signed or forwarded content) byte
#              for byte, X-SMTPAPI gone, List-Unsubscribe when expected
#   links      each tracked link TRACKER/c/TOKEN, the token (sgadmin token
#              decode) a click for the recipient and the group giving back
#              the original URL (entities decoded, utm_* added under
#              ganalytics); the links left alone as they were; the ASM and
#              replace tags, the pixel and the footers where they belong,
#              and nothing else of the text changed
#   encoding   no line over 998 octets, quoted-printable valid and within
#              76, base64 within 76
#   dkim       the copy's signature verifies (dkim_verify.py, dkimpy)
# Fixtures with "@GID@" get the id of the group this test creates.
. "$(dirname "$0")/lib.sh"
TM="$SG_TOP_BUILDDIR/tests/integration/track_message"
FIX="$SG_TOP_SRCDIR/tests/fixtures/messages"
CHECKER="$SG_TOP_SRCDIR/tests/integration/track_corpus.py"
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
RCPT=reader@example.org
[ -x "$TM" ] || fail "no $TM (make check builds it)"

CONF="$WORK/sendguard.conf"
conf_common >"$CONF"
mkdir -p "$STORE"

expect 0 -c "$CONF" --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 -c "$CONF" token generate
expect 0 -c "$CONF" dkim generate --domain shop.example --selector s1
KEY="$WORK/keys/shop.example/s1.pem"

n=0
bad=0
for f in "$FIX"/*.eml; do
    name=$(basename "$f" .eml)
    n=$((n + 1))
    CHECKS=$((CHECKS + 1))
    if [ ! -f "$FIX/$name.expect" ]; then
        echo "FAIL ($TESTNAME): no $name.expect beside $name.eml" >&2
        bad=$((bad + 1))
        continue
    fi
    LC_ALL=C sed "s/@GID@/$GID/g" "$f" >"$WORK/$name.eml"
    if ! "$TM" "$CONF" "$WORK/$name.eml" "$RCPT" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
        echo "FAIL ($TESTNAME): $name: track_message failed: $(cat "$WORK/$name.err")" >&2
        bad=$((bad + 1))
        continue
    fi
    if $PY "$CHECKER" "$WORK/$name.eml" "$WORK/$name.out" "$FIX/$name.expect" "$RCPT" \
        "$SGADMIN" -c "$CONF" >"$WORK/$name.check" 2>&1; then
        # "NAME: N checks"
        CHECKS=$((CHECKS + $(sed -n 's/.*: \([0-9][0-9]*\) checks$/\1/p' "$WORK/$name.check")))
    else
        echo "FAIL ($TESTNAME): $(cat "$WORK/$name.check")" >&2
        bad=$((bad + 1))
    fi
    CHECKS=$((CHECKS + 1))
    if ! $PY "$VERIFY" "$WORK/$name.out" "s1,shop.example,$KEY" >"$WORK/$name.dkim" 2>&1; then
        echo "FAIL ($TESTNAME): $name: the DKIM signature does not verify: $(cat "$WORK/$name.dkim")" >&2
        bad=$((bad + 1))
    fi
done
check "at least 14 fixtures (found $n)" [ "$n" -ge 14 ]
[ "$bad" -eq 0 ] || fail "$bad failed checks over $n messages (kept: see above)"
echo "$TESTNAME: $n messages"
done_ok
