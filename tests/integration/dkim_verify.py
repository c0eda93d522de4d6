#!/usr/bin/python3
"""dkim_verify MESSAGE KEYSPEC... - verify every DKIM-Signature of MESSAGE
with python3-dkim (dkimpy), a verifier nobody here wrote.  KEYSPEC is
SELECTOR,DOMAIN,PRIVATE-KEY-PEM or SELECTOR,DOMAIN,txt=RECORD (the TXT
record as sgadmin dkim dns prints it); the public key is served to dkimpy
from a dnsfunc instead of DNS.  Exit 0 only if there is a signature and all verify;
prints one line per signature."""
import base64
import subprocess
import sys

import dkim


def txt_record(pem):
    der = subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    key = subprocess.run(["openssl", "pkey", "-in", pem, "-noout", "-text"],
                         capture_output=True, check=True).stdout
    if key.startswith(b"ED25519"):
        return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def main():
    records = {}
    for spec in sys.argv[2:]:
        sel, dom, key = spec.split(",", 2)
        name = ("%s._domainkey.%s." % (sel, dom)).encode()
        if key.startswith("txt="):
            records[name] = key[4:].encode()
        else:
            records[name] = txt_record(key)

    def dnsfunc(name, timeout=5):
        return records.get(name if name.endswith(b".") else name + b".")

    msg = open(sys.argv[1], "rb").read()
    d = dkim.DKIM(msg)
    count = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
    results = []
    for i in range(count):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.ValidationError as e:  # e.g. "body hash mismatch"
            print("signature %d: %s" % (i, e))
            ok = False
        results.append(ok)
        print("signature %d: %s" % (i, "pass" if ok else "FAIL"))
    sys.exit(0 if results and all(results) else 1)


main()
