#!/bin/sh
# Installs the Debian packages SEDR needs (R, the R packages it imports or
# tests with, OpenBLAS; spam for SeuratObject 5 from ../shared/deps;
# BiocParallel and batchtools for cohorts). Idempotent: does nothing when
# everything is present.
set -eu
PKGS="r-base-core r-base-dev r-cran-seurat r-cran-seuratobject r-cran-mclust
r-cran-matrix r-cran-irlba r-cran-testthat r-cran-knitr r-cran-rmarkdown
r-cran-cli r-cran-rlang r-cran-ggplot2 r-cran-roxygen2 r-cran-callr
r-cran-processx r-bioc-singlecellexperiment r-bioc-summarizedexperiment
r-bioc-biocstyle r-cran-uwot r-cran-spam r-bioc-biocparallel r-cran-batchtools
libopenblas0-pthread pandoc python3-venv"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "[sedr] installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
