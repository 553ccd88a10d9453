# The two commands in the README. Each does all set-up on a fresh machine, idempotently.
#   make demo   start the embedded stack and run the company-deregistration scenario
#   make test   lint, unit tests, then integration tests against the real stack

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration install install-system down clean

demo: install
	$(BIN)/govsync demo

test: install lint unit integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q tests/unit

# The slowest tests are listed at the end, so a run that drifts past its budget says where.
integration: install
	$(BIN)/pytest -q --durations=15 tests/integration

install: install-system $(STAMP)

# Java, Maven, PostgreSQL 15 and MariaDB 10.11 (for departments whose database is MariaDB;
# govsync runs its own server, the package's service is never started) from Debian
# packages; Chromium and CJK fonts for the
# monitor's browser test (Chinese department names must render); wrk for bench/api.py.
# Skipped when present.
install-system:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql-15"; \
	test -x /usr/sbin/mariadbd || missing="$$missing mariadb-server"; \
	command -v runuser >/dev/null || missing="$$missing util-linux"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  systemctl disable --now mariadb >/dev/null 2>&1 || true; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

down:
	-$(BIN)/govsync down

clean: down
	rm -rf .state $(VENV)
