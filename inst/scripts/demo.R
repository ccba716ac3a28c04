# The README's main command (`make demo`): RunSEDR end to end.
#   Rscript inst/scripts/demo.R            simulated layered tissue (built in)
#   Rscript inst/scripts/demo.R <dir>      a dataset folder in the ../shared/data
#                                          layout (counts.mtx.gz, genes.tsv.gz,
#                                          spots.tsv.gz), or a 10x Visium
#                                          output folder (read with Seurat)
# Prints what it did, the time of each stage, ARI when labels exist, and
# writes out/demo_domains.png.
suppressPackageStartupMessages(library(SEDR))
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else ""
tic <- function() proc.time()[["elapsed"]]
t_start <- tic()

if (!nzchar(dir)) {
  sim <- SimulateSpatialTissue(n.rows = 40, n.cols = 40, n.genes = 1000, n.domains = 5, seed = 7)
  counts <- sim$counts; coords <- sim$coords; truth <- sim$domain; n_domains <- 5
  what <- sprintf("simulated layered tissue (%d spots, %d genes, %d domains)", ncol(counts), nrow(counts), n_domains)
  min_spots <- 50
} else if (file.exists(file.path(dir, "counts.mtx.gz"))) {
  spots <- utils::read.delim(gzfile(file.path(dir, "spots.tsv.gz")))
  genes <- utils::read.delim(gzfile(file.path(dir, "genes.tsv.gz")))
  counts <- methods::as(Matrix::readMM(gzfile(file.path(dir, "counts.mtx.gz"))), "CsparseMatrix")
  dimnames(counts) <- list(make.unique(as.character(genes[[1]])), spots$barcode)
  coords <- as.matrix(spots[, c("x", "y")]); rownames(coords) <- spots$barcode
  label_col <- intersect(c("layer", "domain", "label"), colnames(spots))
  truth <- if (length(label_col)) spots[[label_col[1]]] else NULL
  n_domains <- if (is.null(truth)) 7 else length(unique(stats::na.omit(truth)))
  what <- sprintf("%s (%d spots, %d genes)", basename(normalizePath(dir)), ncol(counts), nrow(counts))
  min_spots <- 50
} else {
  obj <- Seurat::Load10X_Spatial(dir)
  counts <- SEDR:::get_counts(obj, SeuratObject::DefaultAssay(obj))
  coords <- SEDR:::seurat_image_coords(obj)
  truth <- NULL; n_domains <- 7
  what <- sprintf("10x Visium folder %s (%d spots)", dir, ncol(counts))
  min_spots <- 50
}
cat(sprintf("[demo] data: %s\n", what))
cat(sprintf("[demo] backend: libtorch, CUDA available: %s\n", SEDRBackendInfo()$cuda_available))

res <- RunSEDR(counts, coords = coords, device = "auto", n.threads = 2, min.spots = min_spots, verbose = TRUE)
t0 <- tic()
domains <- SEDRClusters(res, n.clusters = n_domains)
t_cluster <- tic() - t0
print(res)
timings <- c(res$timings, cluster = t_cluster)
cat("[demo] seconds per stage:\n")
print(round(timings, 2))
cat(sprintf("[demo] total (after loading data): %.1f s\n", tic() - t_start))
cat("[demo] spots per domain:\n")
print(table(domains))
if (!is.null(truth)) {
  m <- SpatialClusterMetrics(truth, domains)
  cat(sprintf("[demo] ARI vs truth: %.3f   NMI: %.3f\n", m[["ARI"]], m[["NMI"]]))
}
dir.create("out", showWarnings = FALSE)
png_file <- file.path("out", "demo_domains.png")
# Spots drawn as large as the lattice spacing allows on this figure: the
# panel is about 5 inches across, and a point of size s is about 2 s points wide.
nearest <- Matrix::summary(BuildSpatialGraph(coords, k.neighbors = 1))
spacing <- stats::median(sqrt(rowSums((coords[nearest$i, 1:2] - coords[nearest$j, 1:2])^2)))
span <- max(diff(range(coords[, 1])), diff(range(coords[, 2])))
pt_size <- 0.5 * (5 * 72) * spacing / (span + spacing)
p <- SEDRSpatialPlot(coords, labels = domains, pt.size = pt_size, legend.title = "domain") +
  ggplot2::ggtitle("SEDR spatial domains", subtitle = what)
ggplot2::ggsave(png_file, p, width = 7, height = 6, dpi = 100)
cat(sprintf("[demo] wrote %s\n", png_file))
