# mclust covariance models other than EEE on the cached default embeddings
# (bench/README.md, "Spatial domains"): for each dataset and seed, the
# package's EEE clustering without the label vote (refine = 0) beside
# models EEV, VEV and VVV fitted by the package's own mclust_fit() (mclust's
# EM from its VVV hierarchical start on the half-smoothed embedding, after a
# k-means pre-partition above 2,000 spots, as SEDRClusters() does). ARI on
# the labelled spots; NA where a model cannot be fitted.
#
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/domains.R   # the cached trainings
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/mclust-models.R [out.csv]
#
# SEDR_SEEDS and SEDR_DATASETS as in bench/domains.R.
# mclust::me() looks up its model functions (meEEV, ...) on the search path.
suppressPackageStartupMessages(library(mclust))
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "mclust-models.csv")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))
key <- training_key("", "", "", 1L, 1L)  # the default training
models <- c("EEV", "VEV", "VVV")
ari <- function(x, y) mclust::adjustedRandIndex(x, y)
rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  truth <- d$spots[[s$label]]
  scored <- !is.na(truth) & truth != ""
  for (seed in seeds) {
    tr <- readRDS(cache_file(cache_dir, s, seed, key))
    eee <- SEDRClusters(cached_result(tr, d), n.clusters = s$G, seed.use = seed, verbose = FALSE, refine = 0)
    r <- data.frame(dataset = s$name, seed = seed, EEE = ari(truth[scored], eee[scored]))
    start <- SEDR:::smoothed_start(tr$embedding, tr$graph, 0.5)()
    for (m in models) {
      set.seed(seed)  # the same k-means pre-partition for every model
      fit <- SEDR:::mclust_fit(tr$embedding, s$G, m, init = start)
      r[[m]] <- if (is.null(fit)) NA else ari(truth[scored], mclust::map(fit$z)[scored])
    }
    rows[[length(rows) + 1]] <- r
  }
}
tab <- do.call(rbind, rows)
dir.create(dirname(out_file), FALSE, TRUE)
utils::write.csv(tab, out_file, row.names = FALSE)
cat("| model | ", paste(unique(tab$dataset), collapse = " | "), " | combined | worst run | not fitted |\n", sep = "")
for (m in c("EEE", models)) {
  med <- tapply(tab[[m]], tab$dataset, median, na.rm = TRUE)[unique(tab$dataset)]
  sds <- tapply(tab[[m]], tab$dataset, stats::sd, na.rm = TRUE)[unique(tab$dataset)]
  cat(sprintf("| %s | %s | %.3f | %.3f | %d |\n", m, paste(sprintf("%.3f (%.3f)", med, sds), collapse = " | "),
              mean(med), min(tab[[m]], na.rm = TRUE), sum(is.na(tab[[m]]))))
}
