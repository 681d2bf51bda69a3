# `make demo` and `make test` set everything up from nothing: .venv, the package, its deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The CPU features narrowed to AVX2, one thread: a stand-in for a machine other than this one.
# Its own compile cache: kernels compiled for narrowed features must not be reused by a default run.
NARROW_ISA := ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 TORCHINDUCTOR_CACHE_DIR=$(CURDIR)/.cache/torchinductor-avx2

.PHONY: install demo test test-all test-portable lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,export]"
	touch $(STAMP)

install: $(STAMP)
	@echo "Installed. To put cnnarch on your PATH in this shell:  . $(VENV)/bin/activate"

demo: $(STAMP)
	$(VENV)/bin/cnnarch reproduce --scale quick --out reports/demo
	@echo
	@echo "To use cnnarch from this shell, activate the environment first:"
	@echo "    . $(VENV)/bin/activate"
	@echo "then try:  cnnarch models   or   cnnarch train resnet20 --data digits --epochs 3"

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

# The tests whose thresholds depend on numerics (trained accuracies, reduced precision,
# compiled against eager), re-run with narrowed CPU features and one thread.
PORTABLE_TESTS := tests/test_quantize.py tests/test_export.py tests/train/test_loop.py \
	tests/train/test_batchnorm.py tests/analysis/test_gradients.py tests/test_notebooks.py
test-portable: $(STAMP)
	$(NARROW_ISA) $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
