# The platform's commands. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
export DB_HOST ?= 127.0.0.1
export DB_PORT ?= 5432
export DB_NAME ?= event_driven_db
export DB_USER ?= postgres
export DB_PASSWORD ?= postgres
export KAFKA_BROKERS ?= 127.0.0.1:9092

.PHONY: help build test lint fmt run migrate migrate-status infra-up infra-down infra-status health bench docker-config

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

build: ## build every crate (debug)
	$(CARGO) build --workspace --all-targets

test: infra-up migrate ## THE test command: real PostgreSQL + Kafka, then every test of the workspace
	@scripts/infra.sh clean-test-dbs
	$(CARGO) test --workspace --all-targets

lint: ## rustfmt check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

run: infra-up migrate ## infra, migrations, then all four services in the foreground (Ctrl-C stops all)
	@scripts/run-all.sh

migrate: ## apply the database migrations
	$(CARGO) run -q -p migrations --bin migrate -- up

migrate-status: ## list migrations and whether each is applied
	$(CARGO) run -q -p migrations --bin migrate -- status

infra-up: ## start (or install) PostgreSQL and Kafka; reuses what already runs
	@scripts/infra.sh up

infra-down: ## stop the PostgreSQL and Kafka that infra-up started
	@scripts/infra.sh down

infra-status: ## is each piece of infrastructure up?
	@scripts/infra.sh status

health: ## curl every service's /health
	@for p in 8080 8081 8082 8083; do printf '%s ' ":$$p"; curl -s -m 3 http://127.0.0.1:$$p/health || printf 'not answering'; echo; done

bench: infra-up migrate ## the benchmark harness: target/bench/report.json and a table
	@# Earlier runs' scratch databases would keep autovacuum busy during this one.
	@scripts/infra.sh clean-test-dbs
	$(CARGO) run --release -p tests --bin bench

docker-config: ## validate docker/docker-compose.yml
	docker-compose -f docker/docker-compose.yml config -q
