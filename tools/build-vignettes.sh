#!/bin/bash
# Renders the vignettes (vignettes/*.Rmd) into out/vignettes/ with
# rmarkdown::render, one fresh R process per vignette, one after another.
#   bash tools/build-vignettes.sh                 # every vignette
#   bash tools/build-vignettes.sh spatial-domains # only the ones named
# Uses the package installed in .r-lib/ (`make install`). The vignettes read
# the DLPFC data from $SEDR_DATA, else ../shared/data (relative to the
# repository root); without it they fall back to the built-in simulator.
# SEDR_DATA=/nonexistent forces the simulator. Prints each vignette's wall
# time and exits non-zero if any vignette fails. SEDR_VIGNETTE_OUT=<dir>
# renders into <dir> instead of out/vignettes.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# SEDR_LIB=<dir> uses the SEDR installed there instead of .r-lib/.
export R_LIBS="${SEDR_LIB:+$SEDR_LIB:}$root/.r-lib${R_LIBS:+:$R_LIBS}"
# A short OpenMP spin for libtorch's threads (see the Makefile); read when R starts.
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-3000}
export LANG=C.UTF-8
out="${SEDR_VIGNETTE_OUT:-$root/out/vignettes}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
# The vignettes run in vignettes/: make a relative SEDR_DATA absolute.
if [ -n "${SEDR_DATA:-}" ] && [ -d "$SEDR_DATA" ]; then export SEDR_DATA=$(cd "$SEDR_DATA" && pwd); fi
if [ $# -gt 0 ]; then
  files=(); for n in "$@"; do files+=("vignettes/${n%.Rmd}.Rmd"); done
else
  files=(vignettes/*.Rmd)
fi
failed=0
for f in "${files[@]}"; do
  name=$(basename "$f" .Rmd)
  tmp=$(mktemp -d)
  start=$(date +%s.%N)
  if Rscript --no-init-file -e "rmarkdown::render('$f', output_dir = '$out', intermediates_dir = '$tmp', quiet = TRUE, envir = new.env())" \
       > "$out/$name.log" 2>&1; then
    status=ok
  else
    status=FAILED; failed=1
    tail -n 30 "$out/$name.log"
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  rm -rf "$tmp"
  printf '[vignettes] %-16s %-6s %6s s  -> %s/%s.html\n' "$name" "$status" "$secs" "${out#$root/}" "$name"
done
exit $failed
