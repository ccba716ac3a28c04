# Native mixing of sections: RunSEDR(group.by = , integrate = "mnn").
# Before training, the model input (the joint PCA) is
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
cosine_rows <- function(x, dims) {
  x <- x[, seq_len(min(dims, ncol(x))), drop = FALSE]
  norm <- sqrt(rowSums(x^2))
  x / ifelse(norm > 0, norm, 1)
}

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
