#!/bin/bash
# R CMD build + R CMD check --no-manual of the package tarball, as CRAN would
# (tests and vignettes included). Uses the persistent CARGO_TARGET_DIR, so the
# Rust core is not rebuilt from scratch. Fails on any ERROR or WARNING.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LIBTORCH:?LIBTORCH must point at libtorch}"
export LANG=C.UTF-8 _R_CHECK_FORCE_SUGGESTS_=false NOT_CRAN=true
dir=$(mktemp -d)
# R CMD build copies the whole folder before applying .Rbuildignore; copy
# only the sources first so the 4 GB .venv/ and the libraries stay behind.
mkdir -p "$dir/src/SEDR"
tar -cf - --exclude=./.venv --exclude=./.r-lib --exclude=./.git --exclude=./out --exclude='./SEDR.Rcheck' . \
  | tar -xf - -C "$dir/src/SEDR"
( cd "$dir" && R CMD build --no-build-vignettes src/SEDR > build.log 2>&1 ) || { cat "$dir/build.log"; exit 1; }
tarball=$(cd "$dir" && ls -t SEDR_*.tar.gz | head -1)
( cd "$dir" && R CMD check --no-manual --ignore-vignettes "$tarball" > check.log 2>&1 ) || true
grep -E "^\* checking|WARNING|ERROR|NOTE|Status" "$dir/check.log" | grep -E "WARNING|ERROR|NOTE|Status" || true
status=$(grep -E "^Status:" "$dir/check.log" || echo "Status: unknown")
echo "R CMD check: $status (log: $dir/check.log)"
if grep -qE "ERROR|WARNING" <<<"$status" || [ "$status" = "Status: unknown" ]; then
  sed -n '/WARNING\|ERROR/,+15p' "$dir/SEDR.Rcheck/00check.log" 2>/dev/null | head -60
  exit 1
fi
