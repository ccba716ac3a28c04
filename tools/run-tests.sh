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

echo "== testthat (R package)"
R_LIBS="$RLIB" Rscript --no-init-file -e '
  suppressPackageStartupMessages({library(testthat); library(SEDR)})
  res <- as.data.frame(test_dir("tests/testthat", package = "SEDR", load_package = "installed",
                                reporter = ProgressReporter$new(show_praise = FALSE), stop_on_failure = FALSE))
  cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", sum(res$passed),
              sum(res$failed) + sum(res$error), sum(res$skipped)), file = "out/testthat-summary.txt")
' 2>&1 | tee out/testthat.log
if [ -f out/testthat-summary.txt ]; then
  cat out/testthat-summary.txt
  r_pass=$(grep -Eo '[0-9]+ passed' out/testthat-summary.txt | grep -Eo '[0-9]+')
  r_fail=$(grep -Eo '[0-9]+ failed' out/testthat-summary.txt | grep -Eo '[0-9]+')
  rm -f out/testthat-summary.txt
else
  r_pass=0; r_fail=1; echo "testthat did not finish"
fi
echo "== R CMD check of the built tarball (tools/check.sh)"
if bash tools/check.sh; then c_pass=1; c_fail=0; else c_pass=0; c_fail=1; fi
echo "cargo: $rust_pass passed, $rust_fail failed"
echo "R CMD check: $c_pass passed, $c_fail failed"
echo "$((rust_pass + r_pass + c_pass)) passed, $((rust_fail + r_fail + c_fail)) failed"
[ "$((rust_fail + r_fail + c_fail))" -eq 0 ]
