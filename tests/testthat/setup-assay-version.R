# make test runs the Seurat-facing files a second time, against SeuratObject 5
# with SEDR_TEST_ASSAY_VERSION=v5, so that CreateSeuratObject() (and with it
# SimulationToSeurat()) builds Assay5 objects in that pass. Each pass is its
# own R process, so the option need not be restored.
if (nzchar(Sys.getenv("SEDR_TEST_ASSAY_VERSION"))) {
  options(Seurat.object.assay.version = Sys.getenv("SEDR_TEST_ASSAY_VERSION"))
}
