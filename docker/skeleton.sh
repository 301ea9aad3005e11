#!/bin/sh
# skeleton.sh SRC DEST: copies the workspace's manifests (Cargo.toml, Cargo.lock) from SRC
# to DEST and puts a stub at every target source cargo would find (src/lib.rs, src/main.rs,
# src/bin, examples, tests, benches, build.rs). The Dockerfile builds the dependencies from
# that skeleton in a layer of its own: it changes only when a manifest or the set of
# targets changes, so editing code reuses every compiled dependency.
set -eu
src=$1 dest=$2
cd "$src"
find . -path ./target -prune -o -name Cargo.toml -print -o -name Cargo.lock -print \
  | while read -r f; do mkdir -p "$dest/$(dirname "$f")"; cp "$f" "$dest/$f"; done
# one-level target dirs: a file there is a target; in a subfolder only main.rs is
target_stub() {
  case "$1" in
    */*/main.rs) case "${1%/main.rs}" in */*) return 1 ;; esac ;;
    */*) return 1 ;;
  esac
}
find . -path ./target -prune -o -name '*.rs' -print | while read -r f; do
  case "$f" in
    */src/lib.rs) stub='' ;;
    */src/main.rs|*/build.rs) stub='fn main() {}' ;;
    */src/bin/*) target_stub "${f##*/src/bin/}" || continue; stub='fn main() {}' ;;
    */examples/*) target_stub "${f##*/examples/}" || continue; stub='fn main() {}' ;;
    */benches/*) target_stub "${f##*/benches/}" || continue; stub='fn main() {}' ;;
    */tests/*) target_stub "${f##*/tests/}" || continue; stub='fn main() {}' ;;
    *) continue ;;
  esac
  mkdir -p "$dest/$(dirname "$f")"
  printf '%s\n' "$stub" >"$dest/$f"
done
