#!/usr/bin/env bash
# The seed's migration commands, run by the workspace's `migrate` binary.
#
#   scripts/migrate.sh up            apply every pending migration
#   scripts/migrate.sh down [N]      revert the last N applied migrations (default 1)
#   scripts/migrate.sh create NAME   write migrations/sql/V{next}__NAME.sql and its undo file
#   scripts/migrate.sh status        list the migrations and whether each is applied
#
# The database comes from DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD (defaults: the
# development database on 127.0.0.1:5432).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

migrate() { "${CARGO:-cargo}" run -q -p migrations --bin migrate -- "$@"; }

case "${1:-}" in
  up) [ $# -eq 1 ] || usage; migrate up ;;
  down)
    [ $# -le 2 ] || usage
    n="${2:-1}"
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "down takes a count of migrations (1 or more), not '$n'" >&2; exit 2; }
    migrate down "$n"
    ;;
  create) [ $# -eq 2 ] || usage; migrate create "$2" ;;
  status) [ $# -eq 1 ] || usage; migrate status ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
