#!/bin/sh
# dkim_corpus - lib/dkim's signatures, checked by python3-dkim (a verifier
# nobody here wrote) for rsa-sha256 and ed25519-sha256, every pair of
# canonicalisations and a corpus of messages; altered messages must fail.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"
SIGN="$SG_TOP_BUILDDIR/tests/integration/dkim_sign"
VERIFY="$SG_TOP_SRCDIR/tests/integration/dkim_verify.py"
/usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null ||
    fail "python3-dkim and python3-nacl are needed (tools/debian-setup installs them)"
K="$WORK/keys"
mkdir -p "$K" "$WORK/m"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$K/ed.pem" 2>/dev/null
KEYS="$K/rsa.pem example.com rsa $K/ed.pem example.com ed"
SPECS="rsa,example.com,$K/rsa.pem ed,example.com,$K/ed.pem"

crlf() { sed 's/$/\r/'; }
hdr='From: Alice Example <alice@example.com>
To: bob@example.net,
  carol@example.org
Subject: A subject	with  tabs   and
 a folded continuation
Date: Mon, 23 Nov 2026 10:00:00 +0000
Message-ID: <corpus@example.com>
MIME-Version: 1.0'

# plain, with trailing white space, inner runs of it and blank lines at the end
{ echo "$hdr"; echo 'Content-Type: text/plain'; echo; printf 'Hello  Bob,  \n\n\tindented\t line\n\n\n\n'; } | crlf >"$WORK/m/plain.eml"
# multipart with an 8-bit part
{ echo "$hdr"; echo 'Content-Type: multipart/alternative; boundary="b1"'; echo;
  echo '--b1'; echo 'Content-Type: text/plain; charset=utf-8'; echo 'Content-Transfer-Encoding: 8bit'; echo;
  echo 'Grüße aus Köln — ünïcödé'; echo '--b1'; echo 'Content-Type: text/html; charset=utf-8'; echo;
  echo '<p>Grüße</p>'; echo '--b1--'; } | crlf >"$WORK/m/multipart.eml"
# repeated fields (signed bottom-up), an 8-bit header field (RFC 6532)
{ echo "$hdr"; echo 'Received: from a'; echo 'Subject: second subject'; echo 'Cc: one@example.com';
  echo 'Cc: two@example.com'; echo 'Reply-To: Zoë <zoe@example.com>'; echo;
  echo 'body'; } | crlf >"$WORK/m/repeated.eml"
# an empty body, and none at all
{ echo "$hdr"; echo; } | crlf >"$WORK/m/empty-body.eml"
echo "$hdr" | crlf >"$WORK/m/no-body.eml"
# a body without a final line end
{ echo "$hdr" | crlf; echo; printf 'no newline at the end'; } >"$WORK/m/unterminated.eml"
# LF line ends (what PHP hands to sendmail): signed as it will travel, CRLF
{ echo "$hdr"; echo; printf 'lf only\n\n'; } >"$WORK/m/lf.lfeml"
# a bare CR inside a body line is data
{ echo "$hdr" | crlf; printf '\r\nbare\rCR inside\r\n'; } >"$WORK/m/bare-cr.eml"
# white space in long header values and bodies at every offset of the
# 16-byte blocks the signer scans at once: runs of spaces and tabs, a space
# before a fold or a line end, trailing white space, control bytes
/usr/bin/python3 - "$WORK/m/whitespace.eml" <<'PY'
import sys
gaps = [" ", "  ", "\t", " \t ", "    ", "\x01", " \x02"]
out = ["From: Alice <alice@example.com>", "To: bob@example.net",
       "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <ws@example.com>"]
for k in range(12):
    v = "".join(chr(97 + (k + i) % 26) + (gaps[(k + i) % 7] if (k + i) % 3 == 0 else "")
                for i in range(20 + 7 * k))
    out.append("Subject: " + v + ("   " if k % 2 else "") +
               ("\r\n\t" + v[:17] + " \r\n  end" if k % 3 == 0 else ""))
out.append("")
for k in range(60):
    line = "".join(chr(65 + (k * i) % 26) + (gaps[(k + i) % 7] if (k * i) % 5 == 1 else "")
                   for i in range(k % 41))
    out.append(line + (" " * (k % 3)))
    if k % 13 == 0:
        out.append("")
out += ["", " ", "\t", ""]
open(sys.argv[1], "wb").write("\r\n".join(out).encode("latin-1") + b"\r\n")
PY

n=0
for canon in relaxed/relaxed simple/simple relaxed/simple simple/relaxed; do
    for m in "$WORK"/m/*; do
        name=$(basename "$m")
        # shellcheck disable=SC2086
        "$SIGN" -c "$canon" $KEYS <"$m" >"$WORK/signed" || fail "$name ($canon): signing failed"
        case "$name" in
        *.lfeml) sed 's/\r*$/\r/' "$WORK/signed" >"$WORK/sent" ;; # the MTA sends CRLF
        *) cp "$WORK/signed" "$WORK/sent" ;;
        esac
        # shellcheck disable=SC2086
        /usr/bin/python3 "$VERIFY" "$WORK/sent" $SPECS >"$WORK/v.out" 2>&1 ||
            fail "$name ($canon) does not verify: $(cat "$WORK/v.out")"
        CHECKS=$((CHECKS + 1))
        n=$((n + 1))
    done
done
echo "verified $n dual-signed messages"

# Altered after signing: a changed body byte, an added From, a changed
# signed header.  Each must fail, for both algorithms.
"$SIGN" $KEYS <"$WORK/m/plain.eml" >"$WORK/good.eml"
sed 's/Hello  Bob/Hello  Rob/' "$WORK/good.eml" >"$WORK/bad1.eml"
awk 'NR==1 { print "From: Mallory <mallory@example.com>\r" } { print }' "$WORK/good.eml" >"$WORK/bad2.eml"
sed 's/^Subject: A subject/Subject: B subject/' "$WORK/good.eml" >"$WORK/bad3.eml"
for b in bad1 bad2 bad3; do
    cmp -s "$WORK/good.eml" "$WORK/$b.eml" && fail "$b was not altered"
    # shellcheck disable=SC2086
    if /usr/bin/python3 "$VERIFY" "$WORK/$b.eml" $SPECS >"$WORK/v.out" 2>&1; then
        fail "$b verified after being altered: $(cat "$WORK/v.out")"
    fi
    [ "$(grep -c FAIL "$WORK/v.out")" -eq 2 ] || fail "$b: not both signatures failed: $(cat "$WORK/v.out")"
    CHECKS=$((CHECKS + 1))
done

# What cannot be signed is refused with a reason.
printf 'To: bob@example.net\r\n\r\nno From\r\n' | "$SIGN" $KEYS >/dev/null 2>"$WORK/err" && fail "signed without From"
err_has "no From"
printf 'From: a@example.com\r\nNot a header\r\n\r\nx\r\n' | "$SIGN" $KEYS >/dev/null 2>"$WORK/err" && fail "signed a field without colon"
err_has "without a colon"
long=$(head -c 1200 /dev/zero | tr '\0' x)
printf 'From: a@example.com\r\nSubject: %s\r\n\r\nx\r\n' "$long" | "$SIGN" $KEYS >/dev/null 2>"$WORK/err" && fail "signed a 1200-byte line"
err_has "over 998 bytes"
done_ok
