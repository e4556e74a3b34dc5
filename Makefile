# The two commands a newcomer needs: `make demo` and `make test`.
# Both build the virtual environment first (Python 3.11, the pinned CPU set in constraints/cpu.txt).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all venv browser r clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints/cpu.txt -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the report rendering test (Debian's package; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the browser test will be skipped"; }

# R with hdf5r for the test of the R recipe in docs/trace-format.md (Debian's packages).
r:
	@command -v Rscript >/dev/null 2>&1 && Rscript -e 'quit(status = !requireNamespace("hdf5r", quietly = TRUE))' >/dev/null 2>&1 || { \
	  echo "installing Debian's R and hdf5r for the R recipe test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core r-cran-hdf5r >/dev/null) \
	  || echo "warning: could not install R and hdf5r; the R recipe test will be skipped"; }

demo: $(STAMP)
	$(BIN)/mosaic demo --out runs/demo

test: $(STAMP) browser r
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser r
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf runs .pytest_cache
