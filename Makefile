# The platform's commands. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
export DB_HOST ?= 127.0.0.1
export DB_PORT ?= 5432
export DB_NAME ?= event_driven_db
export DB_USER ?= postgres
export DB_PASSWORD ?= postgres
export KAFKA_BROKERS ?= 127.0.0.1:9092

.PHONY: help setup build test lint fmt run dev migrate migrate-up migrate-down migrate-create migrate-status \
	infra-up infra-down infra-tls-up infra-tls-down infra-status health bench test-coverage docker-config docker-test

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## first time here: check the toolchain, infra-up, build, migrate, then say what to run next
	@command -v $(CARGO) >/dev/null || { echo "[setup] cargo not found: install Rust with rustup first" >&2; exit 1; }
	@need=$$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml); have=$$(rustc --version | awk '{print $$2}'); \
	if [ "$$(printf '%s\n' "$$need" "$$have" | sort -V | head -n 1)" != "$$need" ]; then \
	  echo "[setup] rustc $$have is older than the $$need this workspace needs: rustup update" >&2; exit 1; fi; \
	echo "[setup] rustc $$have (needs $$need or newer)"
	@$(MAKE) --no-print-directory infra-up
	@echo "[setup] building the workspace"
	@$(CARGO) build --workspace
	@echo "[setup] applying migrations to $(DB_NAME)"
	@$(MAKE) --no-print-directory migrate
	@printf '%s\n' "[setup] ready. Next:" \
	  "  make run      the four services in the foreground (Ctrl-C stops all); make health in another shell" \
	  "  make test     every test against the real PostgreSQL and Kafka" \
	  "  make help     every command"

build: ## build every crate (debug)
	@scripts/test-deps.sh --build
	$(CARGO) build --workspace --all-targets

test: infra-up infra-tls-up migrate ## THE test command: real PostgreSQL + Kafka (and the TLS fixture), then every test of the workspace
	@scripts/test-deps.sh
	@scripts/infra.sh clean-test-dbs
	@# The cross-service tests run the services' real binaries.
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --all-targets

lint: ## rustfmt check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

run: infra-up migrate ## infra, migrations, then all four services in the foreground (Ctrl-C stops all)
	@scripts/run-all.sh

dev: run ## the same as make run

migrate: ## apply the database migrations
	@scripts/test-deps.sh --build
	$(CARGO) run -q -p migrations --bin migrate -- up

migrate-up: migrate ## the same as make migrate

migrate-down: ## revert the last n applied migrations with their undo files (n=1 unless given, e.g. n=2)
	@scripts/migrate.sh down $(or $(n),1)

migrate-create: ## write the next migration and its undo file: make migrate-create name=add_xxx
	@[ -n "$(name)" ] || { echo "usage: make migrate-create name=add_xxx (lower-case snake_case)" >&2; exit 2; }
	@scripts/migrate.sh create "$(name)"

migrate-status: ## list migrations and whether each is applied
	$(CARGO) run -q -p migrations --bin migrate -- status

infra-up: ## start (or install) PostgreSQL and Kafka; reuses what already runs
	@scripts/infra.sh up

infra-down: ## stop the PostgreSQL and Kafka that infra-up started (and the TLS fixture)
	@scripts/infra.sh down

infra-tls-up: ## the TLS fixture on other ports: TLS-only PostgreSQL (5433), SASL_SSL Kafka (9094), a test CA
	@scripts/infra.sh tls-up

infra-tls-down: ## stop the TLS fixture
	@scripts/infra.sh tls-down

infra-status: ## is each piece of infrastructure up?
	@scripts/infra.sh status

health: ## curl every service's /health
	@for p in 8080 8081 8082 8083; do printf '%s ' ":$$p"; curl -s -m 3 http://127.0.0.1:$$p/health || printf 'not answering'; echo; done

bench: infra-up migrate ## the benchmark harness: target/bench/report.json and a table
	@# Earlier runs' scratch databases would keep autovacuum busy during this one.
	@scripts/infra.sh clean-test-dbs
	$(CARGO) run --release -p tests --bin bench

test-coverage: infra-up migrate ## line coverage (cargo-tarpaulin): a table and target/coverage/tarpaulin-report.html; packages="a b" limits it
	@scripts/infra.sh clean-test-dbs
	@scripts/coverage.sh $(packages)

docker-config: ## validate docker/docker-compose.yml
	docker-compose -f docker/docker-compose.yml config -q

docker-test: ## the stack in Docker: compose up --build, the end-to-end scenario through the BFF, down -v
	@scripts/docker-test.sh
