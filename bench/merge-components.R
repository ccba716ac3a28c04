# mclust EEE with more components than domains, merged down to the annotated
# number, from the embeddings bench/domains.R cached (bench/README.md,
# "Spatial domains"). The domains in a SEDR embedding are not Gaussian (BIC
# keeps rising with G), so a domain might be the union of several
# components. For G + m components (m = 2, 3; the default start: the
# embedding pulled halfway to its neighbourhood mean), merged pairwise until
# G remain by
#   entropy  the pair whose union lowers the posterior entropy most (Baudry
#            et al. 2010, mclust's clustCombi criterion);
#   ward     the pair with the smallest size-weighted squared Mahalanobis
#            distance between their means under the shared covariance;
# then the default 18-spot vote. Compared, paired by seed, with the default
# clustering of the same embeddings (SEDRClusters() defaults).
#
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=... Rscript bench/domains.R   # the cached trainings
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/merge-components.R [out.csv]
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "domains-merge-components.csv")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
key <- training_key("", "", "", 1L, 1L)  # the default training
seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))

# Merge the pair (a, b) that scores best, until G columns remain.
merge_down <- function(z, G, score) {
  while (ncol(z) > G) {
    ab <- utils::combn(ncol(z), 2)
    best <- ab[, which.max(apply(ab, 2, function(p) score(z, p[1], p[2])))]
    z[, best[1]] <- z[, best[1]] + z[, best[2]]
    z <- z[, -best[2], drop = FALSE]
  }
  max.col(z, ties.method = "first")
}
xlogx <- function(v) ifelse(v > 0, v * log(v), 0)
entropy_gain <- function(z, a, b) sum(xlogx(z[, a] + z[, b]) - xlogx(z[, a]) - xlogx(z[, b]))
# Ward on the whitened means: the column sums of z carry the weights, and a
# merged component's mean is the weighted mean of its parts.
ward_merge <- function(fit, G) {
  w <- backsolve(fit$cholSigma, fit$mean, transpose = TRUE)
  z <- fit$z
  nk <- colSums(z)
  while (ncol(z) > G) {
    ab <- utils::combn(ncol(z), 2)
    cost <- apply(ab, 2, function(p) sum((w[, p[1]] - w[, p[2]])^2) * nk[p[1]] * nk[p[2]] / (nk[p[1]] + nk[p[2]]))
    a <- ab[1, which.min(cost)]; b <- ab[2, which.min(cost)]
    w[, a] <- (nk[a] * w[, a] + nk[b] * w[, b]) / (nk[a] + nk[b])
    nk[a] <- nk[a] + nk[b]
    z[, a] <- z[, a] + z[, b]
    w <- w[, -b, drop = FALSE]; nk <- nk[-b]; z <- z[, -b, drop = FALSE]
  }
  max.col(z, ties.method = "first")
}

rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  truth <- d$spots[[s$label]]
  score <- function(lab) {
    lab <- SEDR:::refine_labels_nearest(factor(lab), d$coords, 18L, NULL, 1L)
    SpatialClusterMetrics(truth, lab)[["ARI"]]
  }
  for (seed in seeds) {
    f <- cache_file(cache_dir, s, seed, key)
    if (!file.exists(f)) next
    tr <- readRDS(f)
    res <- cached_result(tr, d)
    r <- data.frame(dataset = s$name, seed = seed,
                    default = SpatialClusterMetrics(truth, SEDRClusters(res, n.clusters = s$G, seed.use = seed, verbose = FALSE))[["ARI"]])
    emb <- tr$embedding
    storage.mode(emb) <- "double"
    start <- SEDR:::smoothed_start(emb, tr$graph, 0.5)(NULL)
    for (m in 2:3) {
      fit <- SEDR:::.with_seed(seed, SEDR:::mclust_fit(emb, s$G + m, "EEE", init = start))
      r[[paste0("entropy", m)]] <- if (is.null(fit)) NA else score(merge_down(fit$z, s$G, entropy_gain))
      r[[paste0("ward", m)]] <- if (is.null(fit)) NA else score(ward_merge(fit, s$G))
    }
    rows[[length(rows) + 1]] <- r
  }
}
tab <- do.call(rbind, rows)
dir.create(dirname(out_file), FALSE, TRUE)
utils::write.csv(tab, out_file, row.names = FALSE)

med0 <- tapply(tab$default, tab$dataset, median)
for (v in setdiff(names(tab), c("dataset", "seed", "default"))) {
  med <- tapply(tab[[v]], tab$dataset, median, na.rm = TRUE)
  cat(sprintf("%s: combined %.3f -> %.3f, worst run %.3f -> %.3f, unfitted %d\n", v, mean(med0), mean(med),
              min(tab$default), min(tab[[v]], na.rm = TRUE), sum(is.na(tab[[v]]))))
  for (nm in names(med)) {
    t <- tab[tab$dataset == nm, ]
    dd <- t[[v]] - t$default
    cat(sprintf("  %-22s %.3f -> %.3f (paired %+.3f, SD %.3f; SD %.3f, min %.3f)\n", nm, med0[nm], med[nm],
                stats::median(dd, na.rm = TRUE), stats::sd(dd, na.rm = TRUE), stats::sd(t[[v]], na.rm = TRUE),
                min(t[[v]], na.rm = TRUE)))
  }
}
