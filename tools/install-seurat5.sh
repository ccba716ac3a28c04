#!/bin/bash
# Builds a private R library with Matrix 1.6-5 and SeuratObject 5.3.0 from the
# CRAN sources in ../shared/deps (Debian 12 ships SeuratObject 4 only), so the
# Seurat-facing tests also run against SeuratObject 5. The library lives
# outside the clone, keyed by the tarballs' checksums: Matrix compiles for
# minutes, and CI then pays it once. Prints the library's path on success;
# prints nothing and exits 3 when ../shared/deps is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${SEDR_DEPS:-../shared/deps}
matrix="$DEPS/Matrix_1.6-5.tar.gz"
seuratobject="$DEPS/SeuratObject_5.3.0.tar.gz"
[ -f "$matrix" ] && [ -f "$seuratobject" ] || exit 3
key=$(cat "$matrix" "$seuratobject" | sha256sum | cut -c1-16)
lib="${SEDR_CACHE:-$HOME/.cache/sedr}/r-seurat5-$key"
if [ ! -f "$lib/.complete" ]; then
  rm -rf "$lib" && mkdir -p "$lib"
  echo "[sedr] building Matrix 1.6-5 and SeuratObject 5.3.0 into $lib (once)" >&2
  R CMD INSTALL --no-test-load -l "$lib" "$matrix" > "$lib/install.log" 2>&1 \
    && R_LIBS="$lib" R CMD INSTALL -l "$lib" "$seuratobject" >> "$lib/install.log" 2>&1 \
    || { tail -n 30 "$lib/install.log" >&2; exit 1; }
  touch "$lib/.complete"
fi
echo "$lib"
