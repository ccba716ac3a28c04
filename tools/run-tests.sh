#!/bin/bash
# Runs every test: the Rust core's cargo tests, then the package's testthat
# suite against the installed package, then R CMD check of the tarball
# (counted as one test). Ends with one line "N passed, N failed" summing all.
set -u
cd "$(dirname "$0")/.."
: "${LIBTORCH:?LIBTORCH must point at libtorch}" "${RLIB:?RLIB must point at the R library}"
mkdir -p out
# The full suite (CRAN-skipped tests included) runs here.
export NOT_CRAN=true
echo "== cargo test (Rust core)"
env -u LIBTORCH_USE_PYTORCH LIBTORCH_CXX11_ABI=1 cargo test --release -p sedr 2>&1 | tee out/cargo-test.log | grep -E '^test |test result|panicked|error' 
rust_pass=$(grep -Eo '[0-9]+ passed' out/cargo-test.log | awk '{s+=$1} END {print s+0}')
rust_fail=$(grep -Eo '[0-9]+ failed' out/cargo-test.log | awk '{s+=$1} END {print s+0}')
if ! grep -q 'test result' out/cargo-test.log; then rust_fail=$((rust_fail + 1)); echo "cargo test did not run"; fi

# One testthat pass: run_testthat <label> <R_LIBS> [<file regex>]; adds to
# r_pass / r_fail. Extra environment (the assay version) comes from the caller.
r_pass=0; r_fail=0
run_testthat() {
  local label=$1 libs=$2 filter=${3:-}
  R_LIBS="$libs" SEDR_TEST_FILTER="$filter" Rscript --no-init-file -e '
    suppressPackageStartupMessages({library(testthat); library(SEDR)})
    cat(sprintf("SeuratObject %s, Matrix %s, assays %s\n", packageVersion("SeuratObject"),
                packageVersion("Matrix"), getOption("Seurat.object.assay.version", "v3")))
    filter <- Sys.getenv("SEDR_TEST_FILTER")
    res <- as.data.frame(test_dir("tests/testthat", package = "SEDR", load_package = "installed",
                                  filter = if (nzchar(filter)) filter else NULL,
                                  reporter = ProgressReporter$new(show_praise = FALSE), stop_on_failure = FALSE))
    cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", sum(res$passed),
                sum(res$failed) + sum(res$error), sum(res$skipped)), file = "out/testthat-summary.txt")
  ' 2>&1 | tee "out/testthat-$label.log"
  if [ -f out/testthat-summary.txt ]; then
    sed "s/^testthat:/testthat ($label):/" out/testthat-summary.txt
    r_pass=$((r_pass + $(grep -Eo '[0-9]+ passed' out/testthat-summary.txt | grep -Eo '[0-9]+')))
    r_fail=$((r_fail + $(grep -Eo '[0-9]+ failed' out/testthat-summary.txt | grep -Eo '[0-9]+')))
    rm -f out/testthat-summary.txt
  else
    r_fail=$((r_fail + 1)); echo "testthat ($label) did not finish"
  fi
}

echo "== testthat (R package, Debian's SeuratObject)"
run_testthat default "$RLIB"

# The Seurat-facing test files again, against SeuratObject 5 (Assay5 objects)
# from ../shared/deps, built once into a cached private library.
echo "== testthat (Seurat-facing files, SeuratObject 5 with Assay5 objects)"
s5_status=0
s5_lib=$(bash tools/install-seurat5.sh) || s5_status=$?
if [ "$s5_status" -eq 0 ]; then
  seurat_files=$(grep -l 'Seurat' tests/testthat/test-*.R | sed -E 's|.*/test-(.*)\.R|\1|' | paste -sd'|')
  SEDR_TEST_ASSAY_VERSION=v5 run_testthat seurat5 "$s5_lib:$RLIB" "^($seurat_files)$"
elif [ "$s5_status" -eq 3 ]; then
  echo "../shared/deps is absent: the SeuratObject 5 pass is skipped"
else
  r_fail=$((r_fail + 1)); echo "building SeuratObject 5 from ../shared/deps failed"
fi
echo "== R CMD check of the built tarball (tools/check.sh)"
if bash tools/check.sh; then c_pass=1; c_fail=0; else c_pass=0; c_fail=1; fi
echo "cargo: $rust_pass passed, $rust_fail failed"
echo "R CMD check: $c_pass passed, $c_fail failed"
echo "$((rust_pass + r_pass + c_pass)) passed, $((rust_fail + r_fail + c_fail)) failed"
[ "$((rust_fail + r_fail + c_fail))" -eq 0 ]
