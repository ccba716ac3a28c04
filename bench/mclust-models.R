# mclust covariance models other than EEE on the cached default embeddings
# (bench/README.md, "Spatial domains"): for each dataset and seed, the
# package's EEE clustering without the label vote (refine = 0) beside
# mclust::me() with models EEV, VEV and VVV, started from the same kind of
# hierarchical start (mclust's VVV hc on the half-smoothed embedding, after a
# k-means pre-partition above 2,000 spots, as SEDRClusters() does). ARI on
# the labelled spots; NA where a model cannot be fitted.
#
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/domains.R   # the cached trainings
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/mclust-models.R [out.csv]
#
# SEDR_SEEDS and SEDR_DATASETS as in bench/domains.R.
suppressPackageStartupMessages(library(mclust))  # hc() finds its methods on the search path
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "mclust-models.csv")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))
key <- training_key("", "", "", 1L, 1L)  # the default training
models <- c("EEV", "VEV", "VVV")
rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  truth <- d$spots[[s$label]]
  scored <- !is.na(truth) & truth != ""
  for (seed in seeds) {
    tr <- readRDS(file.path(cache_dir, sprintf("%s-%d-%s.rds", s$name, seed, key)))
    res <- structure(list(embedding = tr$embedding, graph = tr$graph, dec.q = tr$dec.q, coords = d$coords),
                     class = "sedr_result")
    eee <- SEDRClusters(res, n.clusters = s$G, seed.use = seed, verbose = FALSE, refine = 0)
    r <- data.frame(dataset = s$name, seed = seed, EEE = adjustedRandIndex(truth[scored], eee[scored]))
    start <- SEDR:::smoothed_start(tr$embedding, tr$graph, 0.5)()
    set.seed(seed)
    groups <- if (nrow(start) > 2000) stats::kmeans(start, centers = max(100L, 10L * s$G), iter.max = 30)$cluster
    tree <- if (is.null(groups)) hc(start, modelName = "VVV", use = "SVD")
            else hc(start, modelName = "VVV", use = "SVD", partition = groups)
    z <- unmap(hclass(tree, s$G)[, 1])
    for (m in models) {
      fit <- tryCatch(suppressWarnings(me(tr$embedding, modelName = m, z = z)), error = function(e) NULL)
      r[[m]] <- if (is.null(fit) || anyNA(fit$z)) NA else adjustedRandIndex(truth[scored], map(fit$z)[scored])
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
