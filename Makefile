# The README's two commands: `make demo` (set up, run the main job) and `make test`
# (set up with every extra, run the whole suite including the MPI tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ABS_BIN = $(abspath $(BIN))
# mpi4jax tries a CUDA build when nvcc is on PATH; this machine's nvcc has no CUDA headers.
# Its build (no isolation) needs jax already installed: jax.ffi.include_dir().
NVCC_DIR := $(shell command -v nvcc >/dev/null 2>&1 && dirname "$$(command -v nvcc)")
BUILD_PATH := $(shell echo "$$PATH" | tr ':' '\n' | grep -vxF "$(NVCC_DIR)" | paste -sd: -)

.PHONY: demo test test-fast install install-all clean

demo: install
	$(BIN)/legato demo

test: install-all
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: install-all
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

install: $(VENV)/.core-installed
install-all: $(VENV)/.all-installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.core-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.all-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt mpi4py mpich nanobind cython setuptools wheel "jax[cpu]"
	PATH="$(ABS_BIN):$(BUILD_PATH)" MPI4JAX_BUILD_MPICC="$(ABS_BIN)/mpicc" \
		$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation mpi4jax
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[mpi,generate,dev]"
	touch $@ $(VENV)/.core-installed

clean:
	rm -rf $(VENV) demo .pytest_cache
