# Shared helpers of the benchmark scripts: read a dataset folder in the
# ../shared/data layout (counts.mtx.gz genes x spots, genes.tsv.gz, spots.tsv.gz).
read_dataset <- function(dir) {
  if (!dir.exists(dir)) return(NULL)
  counts <- Matrix::readMM(gzfile(file.path(dir, "counts.mtx.gz")))
  genes <- utils::read.delim(gzfile(file.path(dir, "genes.tsv.gz")))
  spots <- utils::read.delim(gzfile(file.path(dir, "spots.tsv.gz")))
  counts <- methods::as(counts, "CsparseMatrix")
  gene_names <- make.unique(ifelse(is.na(genes[[ncol(genes)]]) | genes[[ncol(genes)]] == "", genes[[1]], genes[[ncol(genes)]]))
  dimnames(counts) <- list(gene_names, spots$barcode)
  coords <- as.matrix(spots[, c("x", "y")])
  rownames(coords) <- spots$barcode
  list(counts = counts, coords = coords, spots = spots)
}

peak_rss_mb <- function() {
  st <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmHWM", st, value = TRUE))) / 1024
}

data_dir <- function(name) {
  root <- Sys.getenv("SEDR_DATA", file.path("..", "shared", "data"))
  file.path(root, name)
}
