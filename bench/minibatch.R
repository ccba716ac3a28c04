# Mini-batch against full-batch training on DLPFC 151673 (issue: the ARI with
# mini-batches forced on must stay within 0.03 of full batch). Same seeds,
# same preprocessing and clustering; only SEDROptions(batch.size) differs.
#   Rscript bench/minibatch.R [n_seeds] [batch sizes, comma-separated]
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))
args <- commandArgs(trailingOnly = TRUE)
n_seeds <- if (length(args) >= 1) as.integer(args[1]) else 5L
sizes <- if (length(args) >= 2) as.numeric(strsplit(args[2], ",")[[1]]) else c(1000, 2000)
threads <- as.integer(Sys.getenv("SEDR_THREADS", "2"))
d <- read_dataset(data_dir("dlpfc_151673"))
if (is.null(d)) { cat("skip: dlpfc_151673 not found\n"); quit(status = 0) }
truth <- d$spots$layer
rows <- list()
cat("| batch.size | seed | ARI | train s |\n|---|---|---|---|\n")
for (b in c(Inf, sizes)) {
  for (seed in seq_len(n_seeds) + 2022L) {
    res <- RunSEDR(d$counts, coords = d$coords, seed.use = seed, device = "cpu", n.threads = threads,
                   verbose = FALSE, options = SEDROptions(batch.size = b))
    cl <- SEDRClusters(res, n.clusters = 7, seed.use = seed, verbose = FALSE)
    ari <- SpatialClusterMetrics(truth, cl)[["ARI"]]
    rows[[length(rows) + 1]] <- data.frame(batch = b, seed = seed, ARI = ari, train = res$timings[["train"]])
    cat(sprintf("| %s | %d | %.3f | %.2f |\n", if (is.finite(b)) b else "full", seed, ari, res$timings[["train"]]))
  }
}
tab <- do.call(rbind, rows)
cat(sprintf("\n%d spots; median over %d seeds\n\n| batch.size | median ARI | SD | median train s | median ARI - full |\n|---|---|---|---|---|\n",
            ncol(d$counts), n_seeds))
full <- median(tab$ARI[!is.finite(tab$batch)])
for (b in unique(tab$batch)) {
  t <- tab[tab$batch == b, ]
  cat(sprintf("| %s | %.3f | %.3f | %.2f | %+.3f |\n", if (is.finite(b)) b else "full", median(t$ARI),
              stats::sd(t$ARI), median(t$train), median(t$ARI) - full))
}
