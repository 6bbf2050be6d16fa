# 履职学堂 (kb). `make run` serves the demo; `make test` runs the whole suite.
# Needs only Python 3.11+ and make; everything else installs into .venv.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PO := $(wildcard kb/translations/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

.PHONY: install run test bench lint translations extract-messages clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11, python3.12 ...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(STAMP) $(MO)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy -i $< -o $@ --statistics 2>&1 | tail -1

translations: $(MO)

extract-messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o kb/translations/messages.pot .
	$(BIN)/pybabel update -i kb/translations/messages.pot -d kb/translations --no-fuzzy-matching

LAW_CORPUS ?= ../shared/corpora/cn-law/core

run: install
	$(BIN)/kb demo
	@if [ -d "$(LAW_CORPUS)" ]; then $(BIN)/kb laws import "$(LAW_CORPUS)"; \
	else echo "no law corpus at $(LAW_CORPUS): citations stay plain text (kb laws import PATH adds laws)"; fi
	$(BIN)/kb sync
	$(BIN)/kb serve

# Browser-side test tools (axe-core) from the npm registry, when npm is available.
NODE_TOOLS := $(if $(shell command -v npm 2>/dev/null),node_modules/.installed)

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $@

test: install $(NODE_TOOLS)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance search_index/gen-* search_index/CURRENT .pytest_cache
