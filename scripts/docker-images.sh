#!/usr/bin/env bash
# Local stand-ins for the images docker/Dockerfile and docker/docker-compose.yml name, for
# machines where no image registry is reachable. Each is built only when an image of that
# name and tag is missing, so real images (pulled or loaded) are always preferred.
#
#   scripts/docker-images.sh                 debian:bookworm-slim (+ debian:bookworm),
#                                            postgres:15, apache/kafka:4.1.1
#   scripts/docker-images.sh --with-builder  also rust:1-bookworm (for the default
#                                            `up --build`, which compiles inside the image)
#
# debian: a minbase bookworm rootfs from debootstrap, imported with `docker import`, with
#         the host's extra CA certificates (/usr/local/share/ca-certificates) installed so
#         apt and cargo work behind a TLS-inspecting proxy.
# postgres:15: Debian's PostgreSQL 15 (scripts/docker/postgres.Dockerfile).
# apache/kafka:4.1.1: the broker jars resolved by scripts/kafka/pom.xml on Debian's JDK 17
#         (scripts/docker/kafka.Dockerfile).
# rust:1-bookworm: the host's Rust toolchain (rustup's stable, or the one on PATH) plus
#         build-essential, pkg-config and zlib1g-dev.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA="${INFRA_DIR:-$ROOT/.infra}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WITH_BUILDER=0
for arg in "$@"; do
  case "$arg" in
    --with-builder) WITH_BUILDER=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--with-builder]" >&2; exit 2 ;;
  esac
done

log() { printf '[docker-images] %s\n' "$*" >&2; }
die() { printf '[docker-images] error: %s\n' "$*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

apt_install() {
  log "installing $* from the OS packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# docker build without BuildKit (the engine may be 20.10, with no buildx): layer caching
# only. The classic builder's deprecation notice is filtered out.
build() {
  local rc=0
  DOCKER_BUILDKIT=0 docker build -q "$@" 2>"$INFRA/docker/build.err" >/dev/null || rc=$?
  grep -v -e DEPRECATED -e 'legacy builder' -e 'BuildKit is currently' -e 'environment-variable' \
    -e '^ *$' "$INFRA/docker/build.err" >&2 || true
  return "$rc"
}

debian_base() {
  if have_image debian:bookworm-slim; then
    log "debian:bookworm-slim is there"
  else
    command -v debootstrap >/dev/null || apt_install debootstrap
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    local dir start=$SECONDS
    dir=$(mktemp -d "${TMPDIR:-/tmp}/bookworm-rootfs.XXXXXX")
    log "debootstrap minbase bookworm from $MIRROR"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" "$MIRROR" \
      >"$INFRA/docker/debootstrap.log" 2>&1 \
      || { tail -n 20 "$INFRA/docker/debootstrap.log" >&2; rm -rf "$dir"; die "debootstrap failed"; }
    local n=0
    for crt in /usr/local/share/ca-certificates/*.crt; do
      [ -f "$crt" ] || continue
      cp "$crt" "$dir/usr/local/share/ca-certificates/"
      n=$((n + 1))
    done
    chroot "$dir" update-ca-certificates >/dev/null 2>&1 || true
    # Like the official slim image: no apt lists or caches, no docs.
    chroot "$dir" apt-get clean
    # (the man page folders stay: some packages' scripts link into them)
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log
    find "$dir/usr/share/doc" "$dir/usr/share/man" -type f -delete
    # apt in a container: no prompts, no recommends unless asked.
    printf 'APT::Install-Recommends "false";\n' >"$dir/etc/apt/apt.conf.d/99docker-no-recommends"
    tar -C "$dir" --numeric-owner -c . | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV DEBIAN_FRONTEND=noninteractive' \
      --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
    rm -rf "$dir"
    log "built debian:bookworm-slim (stand-in, $n extra CA certificates) in $((SECONDS - start)) s"
  fi
  if ! have_image debian:bookworm; then
    docker tag debian:bookworm-slim debian:bookworm
    log "tagged debian:bookworm-slim as debian:bookworm"
  fi
}

postgres_image() {
  if have_image postgres:15; then log "postgres:15 is there"; return; fi
  local start=$SECONDS
  build -t postgres:15 -f "$ROOT/scripts/docker/postgres.Dockerfile" "$ROOT/scripts/docker"
  log "built postgres:15 (stand-in: Debian's PostgreSQL 15) in $((SECONDS - start)) s"
}

# The broker jars in $INFRA/kafka/libs, resolved (once) by infra.sh, which runs them too.
kafka_libs() { INFRA_DIR="$INFRA" "$ROOT/scripts/infra.sh" kafka-libs; }

kafka_image() {
  if have_image apache/kafka:4.1.1; then log "apache/kafka:4.1.1 is there"; return; fi
  local start=$SECONDS ctx
  kafka_libs
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/kafka-image.XXXXXX")
  mkdir "$ctx/libs"
  cp "$INFRA"/kafka/libs/*.jar "$ctx/libs/"
  cp "$ROOT"/scripts/docker/kafka-run.sh "$ROOT"/scripts/docker/kafka-tool.sh "$ctx/"
  cp "$ROOT/scripts/kafka/log4j2.properties" "$ctx/"
  build -t apache/kafka:4.1.1 -f "$ROOT/scripts/docker/kafka.Dockerfile" "$ctx"
  rm -rf "$ctx"
  log "built apache/kafka:4.1.1 (stand-in: Maven Central jars on OpenJDK 17) in $((SECONDS - start)) s"
}

rust_toolchain_dir() {
  local d
  if command -v rustup >/dev/null; then
    d=$(rustup run stable rustc --print sysroot 2>/dev/null) && { echo "$d"; return; }
  fi
  for d in "$HOME"/.rustup/toolchains/stable-* "$HOME"/.rustup/toolchains/*; do
    [ -x "$d/bin/cargo" ] && { echo "$d"; return; }
  done
  command -v rustc >/dev/null && rustc --print sysroot
}

builder_image() {
  if have_image rust:1-bookworm; then log "rust:1-bookworm is there"; return; fi
  local start=$SECONDS ctx sysroot
  sysroot=$(rust_toolchain_dir) || true
  [ -n "$sysroot" ] && [ -x "$sysroot/bin/cargo" ] || die "no Rust toolchain on this machine to make rust:1-bookworm from"
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/rust-image.XXXXXX")
  mkdir -p "$ctx/rust"
  # The compiler and the standard library only (no docs, no sources).
  cp -a "$sysroot/bin" "$ctx/rust/"
  mkdir -p "$ctx/rust/lib"
  cp -a "$sysroot"/lib/*.so* "$ctx/rust/lib/" 2>/dev/null || true
  mkdir -p "$ctx/rust/lib/rustlib"
  for d in "$sysroot"/lib/rustlib/*-linux-*; do cp -a "$d" "$ctx/rust/lib/rustlib/"; done
  [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$ctx/rust/"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY rust/ /usr/local/rust/
RUN mkdir -p /usr/local/cargo/bin \
 && for b in /usr/local/rust/bin/*; do ln -s "$b" /usr/local/cargo/bin/; done
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
  build -t rust:1-bookworm "$ctx"
  rm -rf "$ctx"
  log "built rust:1-bookworm (stand-in: $("$sysroot/bin/rustc" --version)) in $((SECONDS - start)) s"
}

command -v docker >/dev/null || die "no docker client"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (scripts/docker-test.sh starts one)"
mkdir -p "$INFRA/docker"
debian_base
postgres_image
kafka_image
[ "$WITH_BUILDER" = 1 ] && builder_image
log "stand-in images ready"
