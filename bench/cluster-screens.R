# Two clustering variants on the embeddings bench/domains.R cached for the
# default training (bench/README.md, "Spatial domains"), each compared
# paired by seed with the default clustering of the same embeddings:
#
#   SCREEN=potts  a hidden Markov random field: mclust's EEE mixture with a
#                 Potts prior, fitted by mean-field EM (Celeux, Forbes &
#                 Peyrard 2003) from the default mixture's labels. Spot i's
#                 prior for domain k is pro_k * exp(BETA * sum of z_jk over
#                 its K nearest spots), the form of BayesSpace's prior; then
#                 the default 18-spot vote unless VOTE=0.
#   SCREEN=depth  the embedding with log(1 + library size) regressed out,
#                 column by column, before the default clustering; with
#                 DETECTED=1 the log of the detected genes too.
#
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=... Rscript bench/domains.R   # the cached trainings
#   SCREEN=potts BETA=1 K=6 SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032 Rscript bench/cluster-screens.R out.csv
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "domains-cluster-screen.csv")
screen <- Sys.getenv("SCREEN", "potts")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
key <- training_key("", "", "", 1L, 1L)  # the default training
seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))
ns <- asNamespace("SEDR")

# Mean-field EM of the EEE mixture under a Potts prior over the neighbour
# matrix `a` (spots x spots, 0/1), from hard labels; stops when no label moves.
potts_em <- function(x, labels, a, beta, iters = 30L) {
  n <- nrow(x)
  G <- nlevels(labels)
  z <- outer(as.integer(labels), seq_len(G), "==") * 1
  for (it in seq_len(iters)) {
    nk <- colSums(z)
    mu <- crossprod(z, x) / nk
    sigma <- Reduce(`+`, lapply(seq_len(G), function(k) crossprod(sweep(x, 2, mu[k, ]) * sqrt(z[, k])))) / n
    r <- chol(sigma)
    loglik <- vapply(seq_len(G), function(k) -0.5 * colSums(backsolve(r, t(x) - mu[k, ], transpose = TRUE)^2),
                     numeric(n))
    lp <- sweep(loglik + beta * as.matrix(a %*% z), 2, log(nk / n), "+")
    lp <- exp(lp - apply(lp, 1, max))
    z_new <- lp / rowSums(lp)
    moved <- sum(max.col(z_new, "first") != max.col(z, "first"))
    z <- z_new
    if (it > 1 && moved == 0) break
  }
  lab <- max.col(z, "first")
  factor(lab, levels = sort(unique(lab)))
}

rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  truth <- d$spots[[s$label]]
  if (screen == "potts") {
    a <- ns$neighbour_matrix(ns$refine_neighbours(d$coords, as.integer(Sys.getenv("K", "6"))), nrow(d$coords), arg = "K")
    beta <- as.numeric(Sys.getenv("BETA", "1"))
    vote <- as.integer(Sys.getenv("VOTE", "1"))
  } else {
    depth <- cbind(log1p(Matrix::colSums(d$counts)))
    if (Sys.getenv("DETECTED", "0") == "1") depth <- cbind(depth, log1p(Matrix::colSums(d$counts > 0)))
  }
  for (seed in seeds) {
    tr <- c(readRDS(cache_file(cache_dir, s, seed, key)), cached = TRUE)
    res <- cached_result(tr, d)
    t1 <- proc.time()[["elapsed"]]
    if (screen == "potts") {
      start <- SEDRClusters(res, n.clusters = s$G, seed.use = seed, verbose = FALSE, refine = 0)
      x <- res$embedding
      storage.mode(x) <- "double"
      lab <- potts_em(x, start, a, beta)
      names(lab) <- rownames(x)
      if (vote > 0) lab <- ns$refine_labels_nearest(lab, d$coords, 18L, NULL, vote)
    } else {
      e <- res$embedding
      res$embedding <- sweep(stats::lm.fit(cbind(1, depth), e)$residuals, 2, colMeans(e), "+")
      dimnames(res$embedding) <- dimnames(e)
      lab <- SEDRClusters(res, n.clusters = s$G, seed.use = seed, verbose = FALSE)
    }
    t_cl <- proc.time()[["elapsed"]] - t1
    r <- run_row(s, seed, s$k, lab, truth, tr, t_cl, screen)
    rows[[length(rows) + 1]] <- r
    cat(sprintf("%s %d ARI %.3f\n", s$name, seed, r$ARI))
  }
}
tab <- do.call(rbind, rows)
dir.create(dirname(out_file), FALSE, TRUE)
utils::write.csv(tab, out_file, row.names = FALSE)
summarise_runs(tab)
