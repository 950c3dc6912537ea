#!/bin/sh
# fuzz/make_seeds.sh: regenerates the generated part of the seed corpus in fuzz/corpus/.
# The files are checked in; run this only to change them. Needs cc, openssl, and keytool
# (Java) for the Java-written keystore (skipped when keytool is missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

p12=$here/corpus/p12
mkdir -p "$here/corpus/record" "$p12"

# Foreign files: a certificate and its EC key, as `openssl pkcs12 -export` writes them
# (encrypted, and in the clear), with low iteration counts so that the fuzzer stays fast.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fuzz \
    -days 3650 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
openssl pkcs12 -export -in "$tmp/cert.pem" -inkey "$tmp/key.pem" -name server -iter 1 \
    -passout pass: -out "$p12/openssl-cert-key"
openssl pkcs12 -export -in "$tmp/cert.pem" -inkey "$tmp/key.pem" -name server \
    -keypbe NONE -certpbe NONE -nomaciter -passout pass:fuzz-password \
    -out "$p12/openssl-cert-key-clear"

# Java's own PKCS#12 with a secret key entry, as the reference tool's keystore holds.
if command -v keytool >/dev/null 2>&1; then
    keytool -J-Dkeystore.pkcs12.macIterationCount=1 \
        -J-Dkeystore.pkcs12.keyPbeIterationCount=1 \
        -J-Dkeystore.pkcs12.certPbeIterationCount=1 \
        -genseckey -keyalg AES -keysize 128 -alias api-key-alias -storetype PKCS12 \
        -storepass fuzz-password -keystore "$tmp/java.p12" >/dev/null 2>&1
    cp "$tmp/java.p12" "$p12/java-secret-key"
fi

# Ours: records, keystores written by p12_save, and SafeContents mixing our bags with others.
core=$(ls "$root"/csrc/*.c | grep -v '/binding\.c$')
# shellcheck disable=SC2086 # one word per file
"${CC:-cc}" -D_GNU_SOURCE -I"$root/csrc" "$here/seeds.c" $core -lcrypto -luuid -o "$tmp/seeds"
"$tmp/seeds" "$here/corpus/record" "$p12" "$p12/openssl-cert-key"
ls "$here/corpus/record" "$p12"
