#!/bin/sh
# sgadmin_dkim - DKIM keys through sgadmin: generate (RSA and Ed25519),
# add, list, show, dns, delete [--purge]; signing a message with the keys of
# its From domain, a parent domain or the default domain, checked by
# python3-dkim against the DNS records sgadmin prints; refused key files.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
/usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null ||
    fail "python3-dkim and python3-nacl are needed (tools/debian-setup installs them)"
cat >"$WORK/sg.conf" <<CONF
dkim = { key_dir = "$WORK/keys"; };
CONF
cat >"$WORK/def.conf" <<CONF
dkim = { key_dir = "$WORK/keys"; default_domain = "example.com"; };
CONF
C="-c $WORK/sg.conf"

# generate: the file is the owner's alone, the record is printed split
expect 0 $C dkim generate --domain Example.COM --selector rsa1
out_has "generated rsa key example.com/rsa1 (2048 bits) in $WORK/keys/example.com/rsa1.pem"
out_has 'rsa1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=MII'
out_has '" "'
CHECKS=$((CHECKS + 1))
[ "$(stat -c %a "$WORK/keys/example.com/rsa1.pem")" = 600 ] || fail "key file mode is not 600"
expect 0 $C --json dkim generate --domain example.com --selector ed1 --algorithm ed25519
json 'j["name"]=="ed1._domainkey.example.com" and j["value"].startswith("v=DKIM1; k=ed25519; p=") and len(j["strings"])==1'
expect 0 $C --json dkim generate --domain example.com --selector rsa3 --bits 3072
json 'all(len(s)<=255 for s in j["strings"]) and "".join(j["strings"])==j["value"]'
expect 73 $C dkim generate --domain example.com --selector rsa1
err_has "already has a key with selector rsa1"
expect 64 $C dkim generate --domain example.com --algorithm dsa
expect 64 $C dkim generate --domain example.com --bits 512
expect 65 $C dkim generate --domain example.com --selector 'bad selector'
expect 65 $C dkim generate --domain 'not a domain'
expect 0 $C dkim delete example.com rsa3 --purge
out_has "and its file"

# list and show
expect 0 $C --json dkim list
json 'len(j)==2 and [k["selector"] for k in j]==["ed1","rsa1"] and all(k["status"]=="ok" for k in j)'
expect 0 $C dkim show example.com rsa1
out_has "rsa-sha256"
out_has "v=DKIM1; k=rsa;"
expect 67 $C dkim show example.com nosuch

# sign, and verify with the records sgadmin publishes
expect 0 $C --json dkim dns example.com rsa1
RSA_TXT=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["value"])' "$WORK/out")
expect 0 $C --json dkim dns example.com ed1
ED_TXT=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["value"])' "$WORK/out")
verify() {
    /usr/bin/python3 "$VERIFY" "$1" "rsa1,example.com,txt=$RSA_TXT" "ed1,example.com,txt=$ED_TXT"
}
printf 'From: Joe <joe@example.com>\r\nTo: a@b.example\r\nSubject: hi\r\n\r\nHello.\r\n' >"$WORK/m1.eml"
sga $C dkim sign <"$WORK/m1.eml"
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] || fail "dkim sign exited $RC: $(cat "$WORK/err")"
[ "$(grep -c '^DKIM-Signature:' "$WORK/out")" -eq 2 ] || fail "not two signatures: $(cat "$WORK/out")"
cp "$WORK/out" "$WORK/s1.eml"
verify "$WORK/s1.eml" >"$WORK/v" || fail "python3-dkim: $(cat "$WORK/v")"
# altered after signing: fails
sed 's/Hello\./Hallo./' "$WORK/s1.eml" >"$WORK/bad.eml"
! verify "$WORK/bad.eml" >/dev/null || fail "a changed body verified"
{ printf 'From: evil@example.net\r\n'; cat "$WORK/s1.eml"; } >"$WORK/bad2.eml"
! verify "$WORK/bad2.eml" >/dev/null || fail "an added From verified"

# a subdomain falls back to its parent's keys; LF input gets LF fields
printf 'From: "News" <news@mail.news.example.com>\nSubject: x\n\nbody\n' | "$SGADMIN" --store "$STORE" $C dkim sign >"$WORK/s2.eml" || fail "sign subdomain"
grep -q 'd=example.com;' "$WORK/s2.eml" || fail "no d=example.com: $(cat "$WORK/s2.eml")"
CHECKS=$((CHECKS + 1))
! grep -q "$(printf '\r')" "$WORK/s2.eml" || fail "CR in the output of an LF message"
verify "$WORK/s2.eml" >"$WORK/v" || fail "python3-dkim (LF): $(cat "$WORK/v")"

# no key: not signed, unchanged, exit 0; with --domain it is an error
printf 'From: a@other.example\r\n\r\nx\r\n' >"$WORK/m3.eml"
sga $C dkim sign <"$WORK/m3.eml"
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] && cmp -s "$WORK/out" "$WORK/m3.eml" || fail "unsigned message changed or failed ($RC)"
err_has "no DKIM key for other.example"
expect 67 $C dkim sign --domain other.example <"$WORK/m3.eml"
# ... unless a default domain is configured
sga -c "$WORK/def.conf" dkim sign <"$WORK/m3.eml"
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] && grep -q 'd=example.com;' "$WORK/out" || fail "default domain not used: $(cat "$WORK/err")"
cp "$WORK/out" "$WORK/s3.eml"
verify "$WORK/s3.eml" >"$WORK/v" || fail "python3-dkim (default): $(cat "$WORK/v")"
# no From at all
printf 'Subject: x\r\n\r\nx\r\n' >"$WORK/m4.eml"
sga $C dkim sign <"$WORK/m4.eml"
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 65 ] || fail "a message without From: exit $RC"

# add: an existing key; refused when others may read it or it is not a key
openssl genpkey -algorithm ED25519 -out "$WORK/ext.pem" 2>/dev/null
chmod 644 "$WORK/ext.pem"
expect 77 $C dkim add --domain example.org --selector ext --key "$WORK/ext.pem"
err_has "readable by other users"
chmod 600 "$WORK/ext.pem"
expect 0 $C dkim add --domain example.org --selector ext --key "$WORK/ext.pem"
out_has "added ed25519-sha256 key example.org/ext"
echo "not a key" >"$WORK/junk.pem"
chmod 600 "$WORK/junk.pem"
expect 65 $C dkim add --domain example.org --selector junk --key "$WORK/junk.pem"
err_has "not a PEM private key"
expect 66 $C dkim add --domain example.org --selector none --key "$WORK/missing.pem"
# a key file that went world-readable is reported, and not used
chmod 644 "$WORK/ext.pem"
expect 0 $C --json dkim list example.org
json 'j[0]["status"].endswith("chmod 600 it")'
printf 'From: a@example.org\r\n\r\nx\r\n' >"$WORK/m5.eml"
sga $C dkim sign <"$WORK/m5.eml"
CHECKS=$((CHECKS + 1))
[ "$RC" -eq 0 ] && ! grep -q DKIM-Signature "$WORK/out" || fail "signed with a world-readable key"
err_has "not signing with it"

# delete keeps the file unless --purge
expect 0 $C dkim delete example.org ext
out_has "stays"
[ -f "$WORK/ext.pem" ] || fail "delete removed the key file"
expect 67 $C dkim delete example.org ext
expect 0 $C --json dkim list example.org
json 'j==[]'
done_ok
