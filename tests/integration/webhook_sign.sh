#!/bin/sh
# webhook_sign - the event webhook's signatures (lib/webhook, as "sgadmin
# webhook key" makes the key) checked by SendGrid's own verifier, the npm
# package @sendgrid/eventwebhook (pinned in webhook_peer/package.json,
# installed into this test's directory from the npm registry, run with
# Debian's nodejs): good signatures verify, and a changed byte of the body,
# another timestamp or another key's signature do not.
. "$(dirname "$0")/lib.sh"
command -v node >/dev/null && command -v npm >/dev/null || {
    [ "${CI:-}" = true ] && fail "needs nodejs and npm (tools/debian-setup installs them)"
    echo "webhook_sign: SKIP (no nodejs or npm)"
    exit 77
}
PEER="$SG_TOP_SRCDIR/tests/integration/webhook_peer"
SIGN="$SG_TOP_BUILDDIR/tests/integration/webhook_sign"
mkdir -p "$WORK/peer"
cp "$PEER/package.json" "$WORK/peer/"
(cd "$WORK/peer" && npm install --no-audit --no-fund --silent >"$WORK/npm.log" 2>&1) ||
    fail "npm install @sendgrid/eventwebhook failed: $(tail -5 "$WORK/npm.log")"
verify() { NODE_PATH="$WORK/peer/node_modules" node "$PEER/verify.js"; }

expect 0 --json webhook key --file "$WORK/a.key"
KEY=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$WORK/out")
check "a new key is 0600" [ "$(stat -c %a "$WORK/a.key")" = 600 ]
expect 0 --json webhook key --file "$WORK/a.key"
json 'j["made"] is False and j["public_key"] == "'"$KEY"'"'
expect 0 webhook key --file "$WORK/b.key"

# the payloads: events as the hosted services post them, one byte changed
$PY - "$WORK" <<'PY'
import json, random, sys
w = sys.argv[1]
rnd = random.Random(5)
for i in range(40):
    evs = [{"email": f"u{i}.{k}@example.org", "timestamp": 1796600000 + k, "event": "open",
            "sg_event_id": f"id{i}-{k}", "sg_message_id": f"M{i}", "category": ["news"],
            "useragent": "Mozilla/5.0 \u00e9t\u00e9", "ip": "192.0.2.7"} for k in range(rnd.randint(1, 50))]
    body = json.dumps(evs, ensure_ascii=False).encode() + b"\r\n"
    open(f"{w}/body{i}", "wb").write(body)
    changed = bytearray(body)
    changed[rnd.randrange(len(changed))] ^= 0x01
    open(f"{w}/bad{i}", "wb").write(bytes(changed))
PY
: >"$WORK/good.tsv"
: >"$WORK/badl.tsv"
i=0
while [ "$i" -lt 40 ]; do
    ts=$((1796600000 + i))
    sig=$("$SIGN" "$WORK/a.key" "$ts" <"$WORK/body$i") || fail "webhook_sign failed"
    other=$("$SIGN" "$WORK/b.key" "$ts" <"$WORK/body$i")
    printf '%s\t%s\t%s\t%s\n' "$KEY" "$ts" "$sig" "$WORK/body$i" >>"$WORK/good.tsv"
    printf '%s\t%s\t%s\t%s\n' "$KEY" "$ts" "$sig" "$WORK/bad$i" >>"$WORK/badl.tsv"
    printf '%s\t%s\t%s\t%s\n' "$KEY" "$((ts + 1))" "$sig" "$WORK/body$i" >>"$WORK/badl.tsv"
    printf '%s\t%s\t%s\t%s\n' "$KEY" "$ts" "$other" "$WORK/body$i" >>"$WORK/badl.tsv"
    i=$((i + 1))
done
verify <"$WORK/good.tsv" >"$WORK/good.out"
check "SendGrid's verifier accepts all 40 signatures ($(sort "$WORK/good.out" | uniq -c | tr '\n' ' '))" \
    [ "$(grep -c '^true$' "$WORK/good.out")" -eq 40 ]
CHECKS=$((CHECKS + 39))
verify <"$WORK/badl.tsv" >"$WORK/bad.out"
check "and refuses all 120 with a changed byte, timestamp or key ($(sort "$WORK/bad.out" | uniq -c | tr '\n' ' '))" \
    [ "$(grep -c '^false$' "$WORK/bad.out")" -eq 120 ]
CHECKS=$((CHECKS + 119))
# a key file that is not one, or readable by others, is refused
printf 'not a key\n' >"$WORK/junk.key"
chmod 600 "$WORK/junk.key"
expect 78 webhook key --file "$WORK/junk.key"
chmod 644 "$WORK/a.key"
expect 78 webhook key --file "$WORK/a.key"
err_has "other users"
done_ok
