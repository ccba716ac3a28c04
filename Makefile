# Two commands do everything on a fresh Debian 12 machine (as root or with sudo):
#   make demo   RunSEDR end to end on the built-in simulator (or DATA=<dir>)
#   make test   cargo tests + testthat + R CMD check, ending with "N passed, N failed"
# Both first run `make install`, which installs what is missing:
#   Debian's R + R packages + OpenBLAS (tools/install-system.sh),
#   the PyPI torch wheel into .venv/ (tools/install-torch.sh),
#   then builds the package (cargo via src/Makevars) into .r-lib/.

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
RLIB := $(CURDIR)/.r-lib
# Outside the clone, so a fresh clone (CI) reuses compiled crates.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sedr/target
# libtorch's OpenMP workers (R's libgomp) spin 300,000 times before sleeping by
# default, which starves other threads on 2 cores; OMP_WAIT_POLICY=PASSIVE (no
# spin) made 2-thread training slower than 1 thread. A short spin is fastest
# (bench/README.md, "Threads"). libgomp reads it when R starts.
export GOMP_SPINCOUNT ?= 3000
export LANG := C.UTF-8
export PATH := $(PATH):$(HOME)/.cargo/bin
TORCH_DIR = $(shell $(VENV)/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
RSCRIPT = R_LIBS=$(RLIB) Rscript --no-init-file

.PHONY: all install deps demo test test-rust test-r check docs bench clean

all: demo

deps:
	@bash tools/install-system.sh
	@sh tools/install-torch.sh $(VENV)

install: deps
	@mkdir -p $(RLIB)
	@echo "[sedr] building and installing the package into .r-lib/"
	@LIBTORCH=$(TORCH_DIR) R CMD INSTALL --no-multiarch --no-test-load --library=$(RLIB) . > .r-lib/install.log 2>&1 \
	  || { tail -n 60 .r-lib/install.log; exit 1; }
	@grep -E '^\*\* (libtorch|cargo|rustc)' .r-lib/install.log || true
	@$(RSCRIPT) -e 'suppressPackageStartupMessages(library(SEDR)); cat("[sedr] installed SEDR", as.character(packageVersion("SEDR")), "\n")'

demo: install
	@mkdir -p out
	@$(RSCRIPT) inst/scripts/demo.R $(DATA)

test: install
	@LIBTORCH=$(TORCH_DIR) RLIB=$(RLIB) bash tools/run-tests.sh

test-rust:
	@cd $(CURDIR) && env -u LIBTORCH_USE_PYTORCH LIBTORCH=$(TORCH_DIR) LIBTORCH_CXX11_ABI=1 cargo test --release -p sedr

check: install
	@LIBTORCH=$(TORCH_DIR) bash tools/check.sh

# Regenerates NAMESPACE and man/ from the roxygen comments (committed).
docs:
	@$(RSCRIPT) -e 'roxygen2::roxygenise(load_code = "source")'

clean:
	rm -rf $(RLIB) out src/*.o src/*.so src/Makevars
