#!/bin/sh
# relay_policy - sgrelay with relay.policy = true against a real SMTP server:
# suppressed recipients (bounce, global unsubscribe, group unsubscribe)
# receive nothing and a "dropped" event says why; the others each receive
# their own copy, whose List-Unsubscribe token names them (sgadmin token
# decode), whose X-SMTPAPI is gone, and whose DKIM signature verifies with
# python3-dkim and covers List-Unsubscribe and List-Unsubscribe-Post.  Also:
# an invalid X-SMTPAPI refused at acceptance (exit 65, 554 5.6.0 in -bs), an
# application's own List-Unsubscribe kept, and no token key keeping the mail
# queued with the reason.
. "$(dirname "$0")/lib.sh"
: "${SGRELAY:?run through make check}"
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
$PY -c 'import dkim' 2>/dev/null || fail "python3-dkim is needed (tools/debian-setup installs it)"

PORT=$(free_port)
SINK="$WORK/sink"
CONF="$WORK/sendguard.conf"
{
    conf_common
    cat <<EOF
spool = { path = "$WORK/spool"; retry_min = "1s"; retry_max = "2s"; };
unsubscribe = { mailto = "unsub@lists.example.net"; };
relay = { smarthost = "127.0.0.1:$PORT"; domain = "relay.test"; starttls = "none";
          policy = true; };
EOF
} >"$CONF"
A="-c $CONF"
mkdir -p "$WORK/store"
expect 0 $A token generate
out_has "token key 1 is now current in $WORK/token.key"
# a rotation keeps the file's group and mode (0640 root:GROUP, as installed)
chgrp daemon "$WORK/token.key"
chmod 640 "$WORK/token.key"
expect 0 $A token generate
out_has "token key 2 is now current"
check "rotation kept 640 root:daemon" [ "$(stat -c '%a %U:%G' "$WORK/token.key")" = "640 root:daemon" ]
expect 0 $A --json groups create --name Newsletter
GID=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
expect 0 $A bounces add gone@example.org --reason "550 5.1.1 no such user"
expect 0 $A unsubscribes add quit@example.org
expect 0 $A group-suppressions add "$GID" left@example.org
expect 0 $A dkim generate --domain shop.example --selector s1
peer_start "$SINK" "$PORT"

# a bulk message in the group, to two allowed and three suppressed recipients
cat >"$WORK/in" <<EOF
From: Shop <news@shop.example>
To: undisclosed-recipients:;
Subject: November offers
X-SMTPAPI: {"asm_group_id": $GID, "category": ["newsletter"],
  "unique_args": {"campaign": "nov"}}
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello.
EOF
sgr -odi -f bounces@shop.example ok1@example.org gone@example.org ok2@example.org \
    quit@example.org left@example.org <"$WORK/in"
expect_rc 0 "sgrelay -odi with the pipeline"
check "nothing left queued ($(ls "$WORK/spool/queue"))" [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ]
check "two copies arrived" [ "$(count_files "$SINK" '*.eml')" -eq 2 ]
for m in "$SINK"/*.eml; do
    j="${m%.eml}.json"
    to=$($PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["rcpt_tos"]; print(r[0] if len(r)==1 else "SEVERAL")' "$j")
    case "$to" in ok1@example.org | ok2@example.org) ;; *) fail "a copy went to '$to'" ;; esac
    check_not "X-SMTPAPI gone ($to)" grep -qi '^X-SMTPAPI' "$m"
    check "List-Unsubscribe-Post ($to)" grep -q '^List-Unsubscribe-Post: List-Unsubscribe=One-Click' "$m"
    # each URI a token naming this recipient and the group (the https one
    # also carries the message's metadata, the mailto one is kept short)
    tok=$($PY - "$m" <<'PY'
import email, re, sys
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
v = re.sub(r"\s+", "", msg["List-Unsubscribe"])
m = re.fullmatch(r"<https://t\.example\.net/u/([A-Za-z0-9_-]+)>,<mailto:unsub\+([A-Za-z0-9_-]+)@lists\.example\.net>", v)
print(m.group(1) + " " + m.group(2) if m else "BAD:" + v)
PY
)
    case "$tok" in BAD:*) fail "List-Unsubscribe of $to is not as expected: $tok" ;; esac
    check_not "the address is not in the clear ($to)" grep -q "$to>" "$m"
    for t in $tok; do
        expect 0 $A --json token decode "$t"
        json "j['recipient']=='$to' and j['group']==$GID and j['purpose']=='unsubscribe' and j['tenant']=='default'"
    done
    check "the copy's marker first ($to)" sh -c "head -1 '$m' | grep -q '^X-Sendguard-Copy: t='"
    check "then the DKIM signature ($to)" sh -c "sed -n 2p '$m' | grep -q '^DKIM-Signature: v=1; a=rsa-sha256'"
    $PY "$VERIFY" "$m" "s1,shop.example,$WORK/keys/shop.example/s1.pem" >"$WORK/verify" 2>&1 ||
        fail "DKIM of the copy for $to does not verify: $(cat "$WORK/verify")"
    CHECKS=$((CHECKS + 1))
    hval=$($PY -c 'import sys,dkim,re; m=open(sys.argv[1],"rb").read(); s=dkim.DKIM(m); print([v for k,v in s.headers if k.lower()==b"dkim-signature"][0].decode())' "$m" | tr -d ' \t\r\n')
    case "$hval" in *List-Unsubscribe:List-Unsubscribe-Post*) CHECKS=$((CHECKS + 1)) ;; *) fail "h= does not cover the unsubscribe fields: $hval" ;; esac
done

# every suppressed recipient has a dropped event with its reason; the sent ones
# were processed and delivered, with the category and unique_args
expect 0 $A --json events list
json "sorted((e['email'], e['reason']) for e in j if e['event']=='dropped') == [('gone@example.org','bounce'), ('left@example.org','group_unsubscribe'), ('quit@example.org','global_unsubscribe')]"
json "sorted(e['email'] for e in j if e['event']=='delivered') == ['ok1@example.org','ok2@example.org']"
json "len([e for e in j if e['event']=='processed']) == 5"
json "all(e.get('category')==['newsletter'] and e.get('campaign')=='nov' for e in j)"
json "all(e.get('asm_group_id')==$GID for e in j if e['event'] in ('dropped','delivered'))"

# an invalid X-SMTPAPI is refused when the application can still be told
printf 'From: news@shop.example\nSubject: bad\nX-SMTPAPI: {"asm_group_id": \n\nbody\n' >"$WORK/bad"
sgr -odq -f s@shop.example ok1@example.org <"$WORK/bad"
expect_rc 65 "invalid X-SMTPAPI"
grep -q 'X-SMTPAPI' "$WORK/err" || fail "the reason does not name X-SMTPAPI: $(cat "$WORK/err")"
CHECKS=$((CHECKS + 1))
check "nothing queued for it" [ "$(count_files "$WORK/spool/queue" '*')" -eq 0 ]
printf 'EHLO me\r\nMAIL FROM:<s@shop.example>\r\nRCPT TO:<ok1@example.org>\r\nDATA\r\nFrom: s@shop.example\r\nX-SMTPAPI: [1,\r\n\r\nb\r\n.\r\nQUIT\r\n' >"$WORK/bs"
sgr -bs -odq <"$WORK/bs"
check "-bs answers 554 5.6.0 ($(tr -d '\r' <"$WORK/out" | grep '^5' || true))" grep -q '^554 5.6.0 .*X-SMTPAPI' "$WORK/out"

# an application's own List-Unsubscribe is kept (unsubscribe.keep_existing)
printf 'From: news@shop.example\nSubject: own\nList-Unsubscribe: <https://shop.example/u?x=1>\nX-SMTPAPI: {"asm_group_id": %s}\n\nbody\n' "$GID" >"$WORK/own"
rm -f "$SINK"/*.eml "$SINK"/*.json
sgr -odi -f s@shop.example ok1@example.org <"$WORK/own"
expect_rc 0 "own List-Unsubscribe"
M=$(ls "$SINK"/*.eml | head -1)
check "the application's List-Unsubscribe kept" grep -q '^List-Unsubscribe: <https://shop.example/u?x=1>' "$M"
check "only one List-Unsubscribe" [ "$(grep -ci '^List-Unsubscribe:' "$M")" -eq 1 ]
check_not "X-SMTPAPI gone" grep -qi '^X-SMTPAPI' "$M"

# a message needing nothing, from a domain without keys, leaves as queued
printf 'From: a@other.example\nSubject: plain\n\nbody\n' >"$WORK/plain"
rm -f "$SINK"/*.eml "$SINK"/*.json
sgr -odq -f a@other.example ok1@example.org <"$WORK/plain"
Q=$(ls "$WORK/spool/queue")
awk 'f{print} /^$/ && !f{f=1}' "$WORK/spool/queue/$Q" >"$WORK/queued.eml"
sgr -q
M=$(ls "$SINK"/*.eml | head -1)
# its one addition: the marker of a copy the pipeline ran on, first
check "the copy carries the marker first" grep -q '^X-Sendguard-Copy: t=[0-9]*; m=[0-9]*\.[A-Za-z0-9_-]\{22\}' "$M"
check "and only that" [ "$(head -1 "$M" | cut -c1-17)" = "X-Sendguard-Copy:" ]
sed 1d "$M" >"$WORK/sent.eml"
check "a message needing nothing is otherwise sent byte for byte" cmp -s "$WORK/sent.eml" "$WORK/queued.eml"

# no token key: mail that needs one stays queued, and the queue says why
mv "$WORK/token.key" "$WORK/token.key.away"
rm -f "$SINK"/*.eml "$SINK"/*.json
sgr -odi -f s@shop.example ok1@example.org <"$WORK/in"
expect_rc 0 "queued without a token key"
check "nothing sent without an unsubscribe link" [ "$(count_files "$SINK" '*.eml')" -eq 0 ]
sgr -bp
out_has "no unsubscribe token key"
mv "$WORK/token.key.away" "$WORK/token.key"
sleep 1.2
sgr -q
check "delivered once the key is back" [ "$(count_files "$SINK" '*.eml')" -eq 1 ]

# the store cannot be opened: mail stays queued, nothing goes out unchecked
mv "$WORK/store" "$WORK/store.away"
rm -f "$SINK"/*.eml "$SINK"/*.json
sgr -odi -f s@shop.example ok2@example.org <"$WORK/in"
expect_rc 0 "queued without a store"
check "nothing sent unchecked" [ "$(count_files "$SINK" '*.eml')" -eq 0 ]
check "still queued" [ "$(count_files "$WORK/spool/queue" '*')" -eq 1 ]
mv "$WORK/store.away" "$WORK/store"
sgr -q
check "delivered once the store is back" [ "$(count_files "$SINK" '*.eml')" -eq 1 ]
done_ok
