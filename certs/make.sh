#!/usr/bin/env sh
# Regenerates the TEST-ONLY certificates in this folder (see README.md).
# Needs only `openssl` (1.1.1 or 3.x). Run from anywhere: ./certs/make.sh
#
#   ca.pem / ca.key                 "LLMObserve Test CA" (self-signed, CA:TRUE)
#   localhost.pem / localhost.key   leaf for localhost, 127.0.0.1, ::1 signed by the CA;
#                                   localhost.pem holds leaf + CA (the chain a server sends)
#   untrusted.pem / untrusted.key   self-signed leaf for the same names, NOT signed by the CA
#
# Validity is fixed (2026-01-01 .. 2046-01-01) so tests do not start failing in a year.
set -eu

cd "$(dirname "$0")"
START=20260101000000Z
END=20460101000000Z
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

cat > "$work/openssl.cnf" <<CNF
[ ca ]
default_ca = test_ca

[ test_ca ]
dir             = $work
database        = $work/index.txt
new_certs_dir   = $work
serial          = $work/serial
default_md      = sha256
policy          = policy_any
unique_subject  = no
email_in_dn     = no
copy_extensions = none

[ policy_any ]
commonName       = supplied
organizationName = optional

[ req ]
distinguished_name = req_dn
prompt             = no
[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ v3_leaf ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
CNF
: > "$work/index.txt"
openssl rand -hex 16 > "$work/serial"

sign() { # sign <csr> <out> <extensions> [ca args...]
    csr=$1 out=$2 ext=$3
    shift 3
    openssl ca -batch -notext -config "$work/openssl.cnf" -startdate "$START" -enddate "$END" \
        -extensions "$ext" -in "$csr" -out "$out" "$@" 2> "$work/ca.log" \
        || { cat "$work/ca.log" >&2; exit 1; }
}

# Test CA.
newkey ca.key
openssl req -new -config "$work/openssl.cnf" -key ca.key -subj "/O=LLMObserve tests/CN=LLMObserve Test CA" -out "$work/ca.csr"
sign "$work/ca.csr" ca.pem v3_ca -selfsign -keyfile ca.key

# localhost leaf, signed by the CA; the PEM carries the chain (leaf, then CA).
newkey localhost.key
openssl req -new -config "$work/openssl.cnf" -key localhost.key -subj "/O=LLMObserve tests/CN=localhost" -out "$work/localhost.csr"
sign "$work/localhost.csr" "$work/leaf.pem" v3_leaf -cert ca.pem -keyfile ca.key
cat "$work/leaf.pem" ca.pem > localhost.pem

# Untrusted leaf: same names, self-signed, unknown to every client that trusts only ca.pem.
newkey untrusted.key
openssl req -new -config "$work/openssl.cnf" -key untrusted.key -subj "/O=LLMObserve tests/CN=localhost (untrusted)" -out "$work/untrusted.csr"
sign "$work/untrusted.csr" untrusted.pem v3_leaf -selfsign -keyfile untrusted.key

chmod 644 ./*.pem ./*.key
openssl verify -CAfile ca.pem "$work/leaf.pem"
echo "wrote $(pwd)/{ca,localhost,untrusted}.{pem,key}"
