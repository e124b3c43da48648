#!/usr/bin/env bash
# Makes a certificate authority and certificates for an mlfleet cluster with openssl: enough
# for a test cluster or a small fleet (a real PKI can issue the same kind of certificates).
#
#   scripts/make-certs.sh DIR [NAME…]
#
# DIR/ca.pem, DIR/ca-key.pem  the CA, created unless DIR already has one
# DIR/NAME.pem, NAME-key.pem   for each NAME, a key and a certificate the CA signed, unless
#                              DIR already has them
#
# Every certificate names DNS:NAME, DNS:localhost and IP:127.0.0.1 and is good for both
# serverAuth and clientAuth, so one works for a coordinator (--tls-cert), an agent or a
# mlfleetctl user (--tls-cert for mutual TLS). A coordinator's NAME must be the host name
# agents and clients dial (its --advertise address); extra SANs can be added with
# MLFLEET_CERT_SANS="DNS:coord1.example,IP:10.0.0.10". Keys are written with mode 0600.
# Running it again is harmless: nothing that exists is replaced (delete files to reissue).
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: scripts/make-certs.sh DIR [NAME...]

Creates a CA in DIR (ca.pem, ca-key.pem) unless present, and for each NAME a key and a
certificate signed by it (NAME.pem, NAME-key.pem), with SANs DNS:NAME, DNS:localhost,
IP:127.0.0.1 (plus $MLFLEET_CERT_SANS) and both server and client use.

example: scripts/make-certs.sh /etc/mlfleet/tls coord1.example agent-1 alice
EOF
  exit 2
}

[[ $# -ge 1 && $1 != -h && $1 != --help ]] || usage
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is not installed" >&2; exit 1; }

dir=$1
shift
for name in "$@"; do
  if [[ ! $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
    echo "make-certs.sh: \"$name\" is not a host name (letters, digits, dots and dashes)" >&2
    exit 2
  fi
done
days=${MLFLEET_CERT_DAYS:-825}
umask 077
mkdir -p "$dir"

# openssl is quiet unless it fails; then its own words say why.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    echo "make-certs.sh: $1 $2 failed:" >&2
    echo "$out" >&2
    exit 1
  fi
}

if [[ -e $dir/ca.pem || -e $dir/ca-key.pem ]]; then
  [[ -e $dir/ca.pem && -e $dir/ca-key.pem ]] || { echo "make-certs.sh: $dir has only one of ca.pem and ca-key.pem; remove it or restore the other" >&2; exit 1; }
else
  # A random suffix keeps two CAs (two clusters, or a test's rogue CA) from sharing a name.
  quiet openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days "$days" -sha256 \
    -subj "/O=mlfleet/CN=mlfleet CA $(openssl rand -hex 4)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  chmod 0600 "$dir/ca-key.pem"
  chmod 0644 "$dir/ca.pem"
  echo "created CA $dir/ca.pem"
fi

for name in "$@"; do
  cert=$dir/$name.pem
  key=$dir/$name-key.pem
  if [[ -e $cert && -e $key ]]; then
    echo "kept $cert"
    continue
  fi
  sans="DNS:$name,DNS:localhost,IP:127.0.0.1${MLFLEET_CERT_SANS:+,$MLFLEET_CERT_SANS}"
  ext=$(mktemp)
  csr=$(mktemp)
  trap 'rm -f "$ext" "$csr"' EXIT
  cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EOF
  quiet openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$key" -out "$csr" -subj "/O=mlfleet/CN=$name"
  quiet openssl x509 -req -in "$csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -out "$cert" -days "$days" -sha256 -extfile "$ext"
  chmod 0600 "$key"
  chmod 0644 "$cert"
  rm -f "$ext" "$csr"
  trap - EXIT
  echo "created $cert ($sans)"
done
