#!/bin/sh
# mkcerts.sh DIR - test certificates for the SMTP integration tests, made
# with the openssl command (RSA 2048, SHA-256, valid 30 days):
#   ca.pem, ca.key               a test CA
#   server.pem, server.key       server certificate for DNS:localhost and
#                                IP:127.0.0.1, signed by that CA
#   untrusted.pem, untrusted.key a self-signed certificate for the same
#                                names, not from that CA
# Quiet on success; on failure prints openssl's complaint and exits non-zero.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
cnf="$dir/.mkcerts.cnf"
csr="$dir/.server.csr"
err="$dir/.mkcerts.err"
trap 'rm -f "$cnf" "$csr" "$err"' EXIT

# run CMD... - run quietly; show its stderr only if it fails
run() {
    if ! "$@" >/dev/null 2>"$err"; then
        echo "mkcerts.sh: failed: $*" >&2
        cat "$err" >&2
        exit 1
    fi
}

# Our own configuration, so the result does not depend on the system's
# openssl.cnf.  Key identifiers and critical basicConstraints keep strict
# verifiers (e.g. Python 3.13's VERIFY_X509_STRICT) happy.
cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

newkey() {
    run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
    chmod 600 "$1"
}
serial() {
    echo "0x$(openssl rand -hex 8)"
}

# The CA
newkey "$dir/ca.key"
run openssl req -config "$cnf" -new -x509 -sha256 -days 30 \
    -key "$dir/ca.key" -subj "/O=sendguard tests/CN=sendguard test CA" \
    -extensions v3_ca -set_serial "$(serial)" -out "$dir/ca.pem"

# The server certificate, signed by the CA
newkey "$dir/server.key"
run openssl req -config "$cnf" -new -sha256 \
    -key "$dir/server.key" -subj "/O=sendguard tests/CN=localhost" -out "$csr"
run openssl x509 -req -sha256 -days 30 -in "$csr" \
    -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "$(serial)" \
    -extfile "$cnf" -extensions v3_server -out "$dir/server.pem"

# A self-signed certificate for the same names, not from the CA
newkey "$dir/untrusted.key"
run openssl req -config "$cnf" -new -x509 -sha256 -days 30 \
    -key "$dir/untrusted.key" -subj "/O=sendguard tests untrusted/CN=localhost" \
    -extensions v3_server -set_serial "$(serial)" -out "$dir/untrusted.pem"

# Check that what we made is what we meant
run openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem"
if openssl verify -CAfile "$dir/ca.pem" "$dir/untrusted.pem" >/dev/null 2>&1; then
    echo "mkcerts.sh: untrusted.pem verifies against ca.pem" >&2
    exit 1
fi
