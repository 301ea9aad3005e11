#!/usr/bin/env bash
# What building and testing need besides Rust, PostgreSQL and Kafka (which `make infra-up`
# brings), installed on demand from the OS packages so that `make run` and `make test` work
# on a fresh Debian/Ubuntu machine with only Rust on it:
#   scripts/test-deps.sh --build   to build: a C toolchain and cmake (aws-lc, librdkafka),
#                                  pkg-config and OpenSSL's headers (librdkafka's TLS/SASL)
#   scripts/test-deps.sh           to test, too: a headless Chromium (the Swagger UI test)
#                                  and curl
set -euo pipefail

log() { printf '[test-deps] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
if command -v dpkg >/dev/null; then
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
fi
if [ "${1:-}" != --build ]; then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
fi
if ((${#need[@]})); then
  command -v apt-get >/dev/null || { log "install ${need[*]} yourself (no apt-get here)"; exit 1; }
  log "installing ${need[*]} from the OS packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
