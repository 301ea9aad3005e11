#!/bin/sh
# secrets-init: the compose stack's one-shot first step. Writes every secret the services
# read (as NAME_FILE) into the `secrets` volume, mounted at /run/secrets:
#
#   db_password                      PostgreSQL's superuser password (postgres; migrate)
#   db_password.user_service         the password of each service's own database role
#   db_password.outbox_relay         (set on the roles by `migrate passwords`)
#   db_password.event_consumer
#   db_password.bff
#   token_secret_key                 bff's PASETO signing key (k4.secret...)
#   token_public_keys                its verification keys (k4.public..., comma-separated)
#   user_service_api_key.bff         the key bff presents to user-service
#   user_service_api_key.event_consumer   the key event-consumer presents to user-service
#   user_service_api_key.ops         for operators calling user-service
#   event_consumer_api_key.bff       the key bff presents to event-consumer
#   event_consumer_api_key.ops       for operators calling event-consumer
#   user_service_internal_api_keys   user-service's INTERNAL_API_KEYS (caller:key,...)
#   event_consumer_internal_api_keys event-consumer's INTERNAL_API_KEYS
#
# A value given in the environment (DB_PASSWORD, TOKEN_SECRET_KEY + TOKEN_PUBLIC_KEYS,
# INTERNAL_API_KEY for every internal key at once) is written on every start, so it
# overrides; anything else is generated on the first start and kept in the volume from then
# on. Prints what it did, never a secret.
set -eu
dir=${SECRETS_DIR:-/run/secrets}
umask 077
cd "$dir"

random_hex() { head -c "${1:-32}" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# put NAME VALUE SOURCE: (over)write a secret file atomically
put() {
  printf '%s\n' "$2" >".$1.tmp"
  chmod "${MODE:-0400}" ".$1.tmp"
  mv -f ".$1.tmp" "$1"
  echo "secrets-init: $1: $3"
}

# ensure NAME: generate a random key unless the file is there already
ensure() {
  if [ -s "$1" ]; then echo "secrets-init: $1: kept"; else put "$1" "$(random_hex 32)" generated; fi
}

# PostgreSQL reads its password file as its own user, so this one is readable by all.
if [ -n "${DB_PASSWORD:-}" ]; then
  MODE=0444 put db_password "$DB_PASSWORD" "from DB_PASSWORD"
elif [ -s db_password ]; then
  echo "secrets-init: db_password: kept"
else
  MODE=0444 put db_password "$(random_hex 24)" generated
fi

if [ -n "${TOKEN_SECRET_KEY:-}" ]; then
  [ -n "${TOKEN_PUBLIC_KEYS:-}" ] || {
    echo "secrets-init: TOKEN_SECRET_KEY is set, so set TOKEN_PUBLIC_KEYS too (its public key, plus any older ones being rotated out; \`bff keygen\` prints a pair)" >&2
    exit 1
  }
  put token_secret_key "$TOKEN_SECRET_KEY" "from TOKEN_SECRET_KEY"
  put token_public_keys "$TOKEN_PUBLIC_KEYS" "from TOKEN_PUBLIC_KEYS"
elif [ -s token_secret_key ] && [ -s token_public_keys ]; then
  echo "secrets-init: token_secret_key, token_public_keys: kept"
else
  pair=$(bff keygen)
  secret=$(printf '%s\n' "$pair" | sed -n 's/^TOKEN_SECRET_KEY=//p')
  public=$(printf '%s\n' "$pair" | sed -n 's/^TOKEN_PUBLIC_KEYS=//p')
  [ -n "$secret" ] && [ -n "$public" ] || { echo "secrets-init: \`bff keygen\` printed no key pair" >&2; exit 1; }
  put token_secret_key "$secret" "generated (bff keygen)"
  put token_public_keys "$public" "generated (bff keygen)"
fi

for role in user_service outbox_relay event_consumer bff; do
  ensure "db_password.$role"
done

for name in user_service_api_key.bff user_service_api_key.event_consumer user_service_api_key.ops \
  event_consumer_api_key.bff event_consumer_api_key.ops; do
  if [ -n "${INTERNAL_API_KEY:-}" ]; then
    put "$name" "$INTERNAL_API_KEY" "from INTERNAL_API_KEY"
  else
    ensure "$name"
  fi
done
put user_service_internal_api_keys \
  "bff:$(cat user_service_api_key.bff),event-consumer:$(cat user_service_api_key.event_consumer),ops:$(cat user_service_api_key.ops)" \
  "bff, event-consumer, ops"
put event_consumer_internal_api_keys \
  "bff:$(cat event_consumer_api_key.bff),ops:$(cat event_consumer_api_key.ops)" \
  "bff, ops"
echo "secrets-init: done ($dir)"
