# The two commands a newcomer needs: `make demo` and `make test`.
# Both build the virtual environment first (Python 3.11, the pinned CPU set in constraints/cpu.txt).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all venv browser r clean reference

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

# R for the tests that run it (Debian's packages): hdf5r for the R recipe in docs/trace-format.md;
# jsonlite, metafor and clubSandwich to recompute the reference values they give (tests/reference/).
R_PACKAGES := hdf5r jsonlite metafor clubSandwich
r:
	@command -v Rscript >/dev/null 2>&1 && Rscript -e 'quit(status = !all(sapply(strsplit("$(R_PACKAGES)", " ")[[1]], requireNamespace, quietly = TRUE)))' >/dev/null 2>&1 || { \
	  echo "installing Debian's R with $(R_PACKAGES) for the tests that run R"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq r-base-core \
	    $(shell echo $(R_PACKAGES) | tr 'A-Z' 'a-z' | sed 's/[^ ]*/r-cran-&/g') >/dev/null) \
	  || echo "warning: could not install R; the tests that run R will be skipped"; }

demo: $(STAMP)
	$(BIN)/mosaic demo --out runs/demo

test: $(STAMP) browser r
	$(BIN)/python -m pytest -q

test-all: $(STAMP) browser r
	$(BIN)/python -m pytest -q -m "slow or not slow"

# Reference values of the statistics from R's reference packages (tests/reference/README.md):
# rewrites tests/reference/*.json. Needs R with metafor, clubSandwich, clusrank, clust.bin.pair,
# PropCIs and jsonlite; the tests read the stored JSON and need no R.
reference:
	@command -v Rscript >/dev/null 2>&1 || { echo "make reference needs R (Rscript): see tests/reference/README.md"; exit 2; }
	@for script in tests/reference/*.R; do \
	  [ "$$script" = tests/reference/common.R ] && continue; \
	  echo "Rscript $$script"; Rscript "$$script" tests/reference || exit 1; \
	done

clean:
	rm -rf runs .pytest_cache
