# Debian ships Seurat 4.3.0, which predates SeuratObject 5: once its
# namespace is loaded next to SeuratObject 5, adding any Assay5 to an object
# fails inside Seurat's methods. Users of SeuratObject 5 have Seurat >= 4.4,
# so in make test's SeuratObject 5 pass the tests that need Seurat itself
# (leiden/louvain, Seurat's VST) skip rather than load it; they run in the
# default pass. Every other skip_if_not_installed() is testthat's own.
skip_if_not_installed <- function(pkg, minimum_version = NULL) {
  if (identical(pkg, "Seurat") && nzchar(Sys.getenv("SEDR_TEST_ASSAY_VERSION")) &&
      utils::packageVersion("SeuratObject") >= "5.0.0" &&
      utils::packageVersion("Seurat") < "4.4.0") {
    testthat::skip("Seurat < 4.4 cannot be loaded beside SeuratObject 5")
  }
  testthat::skip_if_not_installed(pkg, minimum_version)
}
