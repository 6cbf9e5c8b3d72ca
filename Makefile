# `make run` opens the terminal on the simulated market; `make test` runs the tests.
# Both create .venv with a Python 3.12+ interpreter (scripts/find-python.sh) on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
ARGS ?=

.PHONY: run test smoke bench venv clean dist dist-test

venv:
	@if ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then \
		interpreter=$$(sh scripts/find-python.sh) || exit 1; \
		echo "Creating $(VENV) with $$interpreter"; \
		rm -rf $(VENV); "$$interpreter" -m venv $(VENV) || exit 1; \
		$(PY) -m pip install --quiet --upgrade pip; \
	fi

$(VENV)/.installed-app: pyproject.toml | venv
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | venv
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed-app

run: $(VENV)/.installed-app
	$(PY) main.py $(ARGS)

test: $(VENV)/.installed-test
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) -m pytest $(PYTEST_ARGS)

smoke: $(VENV)/.installed-app
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) main.py --data-dir $${TMPDIR:-/tmp}/meridian-smoke --smoke-test --screenshot screenshots/smoke.png

bench: $(VENV)/.installed-test
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) tests/benchmarks/bench_bus.py
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(PY) tests/benchmarks/bench_chart.py
	$(PY) tests/benchmarks/bench_codecs.py
	$(PY) tests/benchmarks/bench_stream.py
	$(PY) tests/benchmarks/bench_orders.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# `make dist` builds this machine's installers into dist/ (installer/README.md); slow, in its own
# clean venv (build/venv). `make dist-test` builds them, then starts and inspects what it built.
dist:
	@interpreter=$$(sh scripts/find-python.sh) || exit 1; "$$interpreter" installer/build.py $(DIST_ARGS)

dist-test: dist $(VENV)/.installed-test
	$(PY) -m pytest tests/packaging -p no:cacheprovider $(PYTEST_ARGS)
