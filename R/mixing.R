# Native mixing of sections: RunSEDR(group.by = , integrate = "mnn" or "soft").
# "soft" corrects the trained embedding (soft_correct, below). "mnn": before training, the model input (the joint PCA) is
#  1. centred per section, which removes each section's offset (the
#     projection of a per-gene offset onto the joint components), then
#  2. corrected by mutual nearest neighbours (MNN): sections are merged one by
#     one, largest first; spots of the new section that are MNN of merged
#     spots (cosine similarity on the spatially smoothed input) give pair
#     differences, and every spot of the new section moves by a Gaussian-
#     weighted mean of them (a smooth, locally varying correction).
# The shared encoder then sees sections that overlap, so the embedding mixes
# them. Measured against MNN edges in the graph and post-hoc correction of
# the embedding in bench/README.md ("Integration").

# `x` (spots x dims) with each section's mean subtracted.
center_by_section <- function(x, group_int) {
  for (g in unique(group_int)) {
    idx <- which(group_int == g)
    x[idx, ] <- sweep(x[idx, , drop = FALSE], 2, colMeans(x[idx, , drop = FALSE]), `-`)
  }
  x
}

# Rows of the first `dims` columns scaled to unit length (cosine geometry).
cosine_rows <- function(x, dims) unit_rows(x[, seq_len(min(dims, ncol(x))), drop = FALSE])

# Row blocks of 1:n, so that the similarity matrices stay at block x m.
row_blocks <- function(n, block = 1024L) {
  split(seq_len(n), (seq_len(n) - 1L) %/% block)
}

# For every row of `a`, the indices of the k most similar rows of `b` (both
# with unit-length rows). Brute force, O(nrow(a) x nrow(b)); the stable
# radix order gives ties to the lower index, so the result is deterministic.
top_k_similar <- function(a, b, k) {
  k <- min(k, nrow(b))
  out <- matrix(0L, nrow(a), k)
  for (rows in row_blocks(nrow(a))) {
    s <- tcrossprod(a[rows, , drop = FALSE], b)
    out[rows, ] <- t(apply(s, 1, function(r) order(-r, method = "radix")[seq_len(k)]))
  }
  out
}

# MNN pairs between the spots `a` and `b` (indices into the rows of `xc`):
# a two-column matrix (spot of a, spot of b), sorted.
mnn_between <- function(xc, a, b, k) {
  ab <- top_k_similar(xc[a, , drop = FALSE], xc[b, , drop = FALSE], k)
  ba <- top_k_similar(xc[b, , drop = FALSE], xc[a, , drop = FALSE], k)
  key_ab <- (rep(seq_along(a), ncol(ab)) - 1) * length(b) + as.vector(ab)
  key_ba <- (as.vector(ba) - 1) * length(b) + rep(seq_along(b), ncol(ba))
  keys <- sort(intersect(key_ab, key_ba))
  cbind(a[(keys - 1) %/% length(b) + 1], b[(keys - 1) %% length(b) + 1])
}

# The MNN correction of `x` (spots x dims, already centred per section).
# `k`: neighbours searched on each side; `dims`: leading columns used for
# the search; `sigma`: bandwidth of the Gaussian weights on squared cosine
# distances; `smooth`: neighbour-averaging steps over `graph` before the
# search (a spot's neighbourhood is a more reliable match than the spot
# alone: on DLPFC more pairs join the same layer). On DLPFC 151673 + 151510
# (10 seeds) a wider kernel (0.3) kept the layers tighter (cLISI 1.12
# against 1.20) but mixed less (iLISI 1.25 against 1.38); the joint-domain
# ARI differed by less than the seed spread (bench/README.md). Returns the
# corrected input and the number of MNN pairs.
correct_sections <- function(x, group_int, graph, k = 20L, dims = 30L, sigma = 0.1, smooth = 1L) {
  sizes <- tabulate(group_int + 1L)
  order_sec <- order(-sizes, seq_along(sizes)) - 1L
  merged <- which(group_int == order_sec[1])
  n_pairs <- 0L
  for (s in order_sec[-1]) {
    idx <- which(group_int == s)
    xc <- cosine_rows(smooth_embedding(x, graph, smooth), dims)
    p <- mnn_between(xc, idx, merged, k)
    n_pairs <- n_pairs + nrow(p)
    if (nrow(p)) {
      # Mean pair difference of every paired spot of the new section.
      paired <- sort(unique(p[, 1]))
      diff <- rowsum(x[p[, 2], , drop = FALSE] - x[p[, 1], , drop = FALSE], p[, 1])
      diff <- diff / as.vector(table(p[, 1]))
      shift <- matrix(0, length(idx), ncol(x))
      for (rows in row_blocks(length(idx))) {
        d2 <- 2 - 2 * tcrossprod(xc[idx[rows], , drop = FALSE], xc[paired, , drop = FALSE])
        # Shifted per row by its largest log-weight, so they never all underflow.
        logw <- -d2 / sigma
        w <- exp(logw - apply(logw, 1, max))
        shift[rows, ] <- (w %*% diff) / rowSums(w)
      }
      x[idx, ] <- x[idx, , drop = FALSE] + shift
    }
    merged <- c(merged, idx)
  }
  list(x = x, pairs = n_pairs)
}

# integrate = "soft": a correction of the trained embedding after the
# published Harmony algorithm (Korsunsky et al., Nat Methods 2019; our own
# code). The SEDR authors mix sections by running Harmony on the SEDR
# embedding; this does the same without the harmony package. Alternating:
#  1. soft k-means of the unit-length embedding: spot i belongs to cluster k
#     with weight R[i, k] proportional to exp(-d(i, k) / sigma) times
#     ((E[k, b] + 1) / (O[k, b] + 1))^theta for its section b, where O is the
#     weight of section b in cluster k and E what O would be if every cluster
#     held the sections in their overall proportions: the diversity penalty,
#     which favours clusters that hold every section. The weights are updated
#     in random blocks of 5 % of the spots, so O and E follow the update.
#  2. per cluster k, a ridge regression (penalty lambda on the section terms,
#     none on the intercept) of the embedding on the sections, weighted by
#     R[, k]; every spot loses the section terms of each cluster in
#     proportion to its weight, so a cluster's sections meet at its centre.
# until the objective (distortion + sigma x entropy + sigma x theta x
# diversity) changes by less than `tol` (relative) or after `rounds` rounds.
# Measured against integrate = "mnn" and the block-diagonal model in
# bench/README.md ("Integration"). `z`: spots x dims; `group_int`: 0-based
# sections; `seed`: one integer seed for the k-means start and the block
# order (R's generator is restored afterwards).
soft_correct <- function(z, group_int, seed, n.clusters = NULL, theta = 2, sigma = 0.1, lambda = 1,
                         rounds = 10L, kmeans.iter = 20L, block = 0.05, tol.cluster = 1e-5, tol = 1e-4) {
  old <- .rng_state()
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, globalenv()))
  set.seed(seed)
  n <- nrow(z)
  phi <- matrix(0, n, max(group_int) + 1L)
  phi[cbind(seq_len(n), group_int + 1L)] <- 1
  pr <- colSums(phi) / n
  zc <- unit_rows(z)
  centres <- soft_start(zc, n.clusters %||% max(2L, min(round(n / 30), 100L)))
  dist <- 2 * (1 - tcrossprod(zc, centres))
  R <- exp(-dist / sigma)
  R <- R / rowSums(R)
  E <- outer(colSums(R), pr)
  O <- crossprod(R, phi)
  objective <- function() {
    sum(R * dist) + sigma * sum(R * log(pmax(R, 1e-300))) + sigma * theta * sum(O * log((O + 1) / (E + 1)))
  }
  blocks <- ceiling(1 / block)
  design <- cbind(1, phi)
  ridge <- diag(c(0, rep(lambda, ncol(phi))))
  last <- objective()
  for (round in seq_len(rounds)) {
    last_k <- objective()
    for (it in seq_len(kmeans.iter)) {
      centres <- unit_rows(crossprod(R, zc))
      dist <- 2 * (1 - tcrossprod(zc, centres))
      for (b in split(sample.int(n), cut(seq_len(n), blocks, labels = FALSE))) {
        E <- E - outer(colSums(R[b, , drop = FALSE]), pr)
        O <- O - crossprod(R[b, , drop = FALSE], phi[b, , drop = FALSE])
        logr <- -dist[b, , drop = FALSE] / sigma + theta * t(log((E + 1) / (O + 1)))[group_int[b] + 1L, , drop = FALSE]
        # Shifted per row by its largest value, so a row never underflows to 0.
        logr <- logr - logr[cbind(seq_along(b), max.col(logr, "first"))]
        r <- exp(logr)
        R[b, ] <- r <- r / rowSums(r)
        E <- E + outer(colSums(r), pr)
        O <- O + crossprod(r, phi[b, , drop = FALSE])
      }
      now <- objective()
      converged <- abs(last_k - now) < tol.cluster * abs(last_k)
      last_k <- now
      if (converged) break
    }
    out <- z
    for (k in seq_len(ncol(R))) {
      wd <- design * R[, k]
      beta <- solve(crossprod(wd, design) + ridge, crossprod(wd, z))
      beta[1, ] <- 0
      out <- out - wd %*% beta
    }
    zc <- unit_rows(out)
    dist <- 2 * (1 - tcrossprod(zc, centres))
    now <- objective()
    converged <- abs(last - now) < tol * abs(last)
    last <- now
    if (converged) break
  }
  dimnames(out) <- dimnames(z)
  list(x = out, rounds = round, clusters = ncol(R))
}

# integrate = "soft" on the trained embedding `emb`: soft_correct() aligns
# the sections cluster by cluster, then `passes` MNN passes (bandwidth
# `sigma`, no smoothing) correct what a per-cluster shift cannot. Within a
# domain each section's spots spread along directions of their own (a
# section's own noise through the shared encoder), so aligning centres is
# not enough: on the simulated pair, shifting every section's domain centre
# to the pooled one (the true domains given; seed 3) mixes only to iLISI
# 1.35, matching the covariances as well to 1.90. Local MNN shifts follow
# those shapes, the more closely the narrower the kernel. Over 10 seeds
# (bench/README.md, "Integration") one pass at 0.05 is the setting that
# meets the mixing targets on DLPFC and on the simulated pair: 0.1 mixes the
# pair less (iLISI 1.74), a second pass at 0.05 blurs the DLPFC layers
# (cLISI 1.16 against 1.14).
soft_mix <- function(emb, group_int, graph, seed, passes = 1L, sigma = 0.05) {
  mixed <- soft_correct(emb, group_int, seed = seed)
  x <- mixed$x
  pairs <- 0L
  for (p in seq_len(passes)) {
    local <- correct_sections(x, group_int, graph, dims = ncol(emb), sigma = sigma, smooth = 0L)
    x <- local$x
    pairs <- pairs + local$pairs
  }
  list(x = x, rounds = mixed$rounds, clusters = mixed$clusters, pairs = pairs)
}

# Rows scaled to unit length (zero rows stay zero).
unit_rows <- function(x) {
  norm <- sqrt(rowSums(x^2))
  x / ifelse(norm > 0, norm, 1)
}

# Unit-length starting centres: k-means of the unit-length rows, or k
# distinct rows when k-means cannot run (fewer distinct rows than k).
soft_start <- function(zc, k) {
  distinct <- unique(zc)
  k <- min(k, nrow(distinct))
  km <- tryCatch(suppressWarnings(stats::kmeans(zc, centers = k, iter.max = 25)), error = function(e) NULL)
  unit_rows(if (is.null(km)) distinct[sample.int(nrow(distinct), k), , drop = FALSE] else km$centers)
}
