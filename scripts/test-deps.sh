#!/usr/bin/env bash
# What `make test` needs besides PostgreSQL and Kafka (which `make infra-up` brings):
# a headless Chromium for the Swagger UI browser test. Installed on demand from the OS
# packages, so `make test` works on a fresh Debian/Ubuntu machine with only Rust on it.
set -euo pipefail

log() { printf '[test-deps] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

need=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
command -v cc >/dev/null || need+=(build-essential)
command -v cmake >/dev/null || need+=(cmake)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  command -v apt-get >/dev/null || { log "install ${need[*]} yourself (no apt-get here)"; exit 1; }
  log "installing ${need[*]} from the OS packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
