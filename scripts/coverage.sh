#!/usr/bin/env bash
# Line coverage of the tests, with cargo-tarpaulin (installed on first use).
#
#   scripts/coverage.sh                  the whole workspace (slow: every test, real infra)
#   scripts/coverage.sh migrations bff   only these packages' tests
#
# Prints a per-file table and the total; writes target/coverage/tarpaulin-report.html
# (and .json). The tests need PostgreSQL and Kafka: `make test-coverage` starts them first.
#
# Why tarpaulin: cargo-llvm-cov needs llvm-tools of the same LLVM version as rustc, which
# neither rustup (offline here) nor the OS packages provide for every toolchain; tarpaulin's
# ptrace engine reads the debug line tables and needs no LLVM tools.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARGO="${CARGO:-cargo}"
OUT=target/coverage

if ! "$CARGO" tarpaulin --version >/dev/null 2>&1; then
  echo "[coverage] installing cargo-tarpaulin (once; a few minutes)" >&2
  "$CARGO" install --locked cargo-tarpaulin
fi

# Test code and generated code are not what the percentage is about.
scope=(--exclude-files 'target/*' --exclude-files '*/tests/*')
if [ $# -eq 0 ]; then
  scope+=(--workspace)
else
  for p in "$@"; do
    scope+=(--packages "$p")
    # Count only the chosen crates' files (every crate here lives in the folder of its name).
    [ -d "$p" ] && scope+=(--include-files "$p/*")
  done
fi

mkdir -p "$OUT"
# Its own target dir: tarpaulin's RUSTFLAGS differ, and sharing target/ would rebuild
# every normal build from scratch afterwards.
"$CARGO" tarpaulin "${scope[@]}" \
  --engine ptrace \
  --all-targets \
  --skip-clean \
  --target-dir "$OUT/build" \
  --output-dir "$OUT" \
  --out Html --out Json --out Stdout \
  --timeout 600
echo "[coverage] HTML report: $OUT/tarpaulin-report.html" >&2
