# Clustering agreement scores used to compare SEDR domains with a ground
# truth. Everything is computed from the contingency table in plain R, so the
# numbers do not depend on optional packages; definitions follow
# scikit-learn, which the reference SEDR evaluation uses.

#' Score spatial clusters against ground-truth domains
#'
#' Computes the usual agreement scores between a reference labelling `truth`
#' and a clustering `predicted`, and optionally the mean silhouette width of
#' `predicted` in an embedding. Spots where either label is `NA` are dropped
#' (together with the matching rows of `embedding`).
#'
#' * `ARI`: adjusted Rand index (Hubert and Arabie).
#' * `AMI`: adjusted mutual information, with the exact expected mutual
#'   information and arithmetic-mean normalisation,
#'   `(MI - EMI) / (mean(H(truth), H(predicted)) - EMI)`.
#' * `NMI`: normalised mutual information, `MI / mean(H(truth), H(predicted))`.
#' * `homogeneity`, `completeness`, `v_measure`: as in Rosenberg and
#'   Hirschberg (2007); `v_measure` equals `NMI`.
#' * `purity`: fraction of spots whose predicted cluster's majority truth
#'   label matches their own.
#' * `silhouette`: mean silhouette width of `predicted` on `embedding`
#'   (Euclidean distances); `NA` without an embedding or with fewer than two
#'   clusters. Above 5000 spots it is computed on a fixed random subsample of
#'   5000 spots (the session's random number stream is not touched).
#'
#' Degenerate cases follow scikit-learn: two single-cluster labellings score
#' 1 for ARI, AMI and NMI.
#'
#' @param truth Reference labels (factor, character or integer vector).
#' @param predicted Predicted labels, same length as `truth`.
#' @param embedding Optional numeric matrix (or data frame) with one row per
#'   spot, used for the silhouette width.
#'
#' @return A named numeric vector with elements `ARI`, `AMI`, `NMI`,
#'   `homogeneity`, `completeness`, `v_measure`, `purity` and `silhouette`.
#'
#' @examples
#' truth <- c(1, 1, 1, 2, 2, 2)
#' pred <- c(1, 1, 2, 2, 3, 3)
#' SpatialClusterMetrics(truth, pred)
#'
#' emb <- matrix(c(0, 0.1, 0.2, 5, 5.1, 5.2), ncol = 1)
#' SpatialClusterMetrics(truth, truth, embedding = emb)
#' @export
SpatialClusterMetrics <- function(truth, predicted, embedding = NULL) {
  .check_labels(truth, "truth")
  .check_labels(predicted, "predicted")
  if (length(predicted) != length(truth)) {
    sedr_abort(paste0("must have one label per spot, like `truth` (length ",
                      length(truth), "), but has length ", length(predicted),
                      "."), arg = "predicted")
  }
  if (!is.null(embedding)) {
    if (is.data.frame(embedding)) embedding <- as.matrix(embedding)
    if (!is.matrix(embedding) || !is.numeric(embedding)) {
      sedr_abort(paste0("must be a numeric matrix with one row per spot, not ",
                        "an object of class ", class(embedding)[1], "."),
                 arg = "embedding")
    }
    if (nrow(embedding) != length(truth)) {
      sedr_abort(paste0("must have one row per spot (", length(truth),
                        ") but has ", nrow(embedding), " rows."),
                 arg = "embedding")
    }
  }

  keep <- !is.na(truth) & !is.na(predicted)
  if (sum(keep) < 2L) {
    sedr_abort(paste0("needs at least 2 spots where both `truth` and ",
                      "`predicted` are not NA; found ", sum(keep), "."),
               arg = "predicted")
  }
  truth <- as.character(truth[keep])
  predicted <- as.character(predicted[keep])
  if (!is.null(embedding)) {
    embedding <- embedding[keep, , drop = FALSE]
    if (!all(is.finite(embedding))) {
      sedr_abort("must contain only finite values (no NA, NaN or Inf) for the labelled spots.",
                 arg = "embedding")
    }
  }

  # Contingency table as a plain numeric matrix (truth in rows).
  tab <- unclass(table(truth, predicted))
  tab <- matrix(as.numeric(tab), nrow = nrow(tab))
  n <- sum(tab)
  a <- rowSums(tab)
  b <- colSums(tab)

  h_t <- .entropy(a)
  h_p <- .entropy(b)
  mi <- .mutual_info(tab)
  both_trivial <- length(a) == 1L && length(b) == 1L

  ari <- .ari_from_table(tab)

  # NMI, arithmetic normalisation; sklearn's limit cases.
  nmi <- if (both_trivial) 1 else if (mi <= 0) 0 else
    mi / max(mean(c(h_t, h_p)), .Machine$double.eps)

  ami <- if (both_trivial) 1 else {
    emi <- .expected_mutual_info(a, b)
    denom <- mean(c(h_t, h_p)) - emi
    # Floating point can put EMI a hair above the normaliser; keep the sign.
    denom <- if (denom < 0) min(denom, -.Machine$double.eps) else
      max(denom, .Machine$double.eps)
    (mi - emi) / denom
  }

  homogeneity <- if (h_t == 0) 1 else mi / h_t
  completeness <- if (h_p == 0) 1 else mi / h_p
  v_measure <- if (homogeneity + completeness == 0) 0 else
    2 * homogeneity * completeness / (homogeneity + completeness)
  purity <- sum(apply(tab, 2, max)) / n

  sil <- if (is.null(embedding)) NA_real_ else
    .mean_silhouette(embedding, predicted)

  c(ARI = ari, AMI = ami, NMI = nmi, homogeneity = homogeneity,
    completeness = completeness, v_measure = v_measure, purity = purity,
    silhouette = sil)
}

.check_labels <- function(x, arg) {
  ok <- (is.atomic(x) || is.factor(x)) && is.null(dim(x)) && length(x) > 0L
  if (!ok) {
    sedr_abort(paste0("must be a non-empty vector or factor of labels, not ",
                      "an object of class ", class(x)[1], "."), arg = arg)
  }
  invisible(x)
}

# Shannon entropy (natural log) of a vector of counts.
.entropy <- function(counts) {
  p <- counts[counts > 0] / sum(counts)
  -sum(p * log(p))
}

# Mutual information (natural log) of a contingency table of counts.
.mutual_info <- function(tab) {
  n <- sum(tab)
  a <- rowSums(tab)
  b <- colSums(tab)
  nz <- which(tab > 0, arr.ind = TRUE)
  nij <- tab[nz]
  max(0, sum(nij / n * (log(nij) + log(n) - log(a[nz[, 1]]) -
                          log(b[nz[, 2]]))))
}

# Adjusted Rand index (Hubert & Arabie 1985) from a contingency table.
.ari_from_table <- function(tab) {
  n <- sum(tab)
  comb2 <- function(x) x * (x - 1) / 2
  index <- sum(comb2(tab))
  sum_a <- sum(comb2(rowSums(tab)))
  sum_b <- sum(comb2(colSums(tab)))
  # Dividing first keeps the trivial cases below exact in floating point.
  expected <- sum_a * (sum_b / comb2(n))
  max_index <- (sum_a + sum_b) / 2
  # The denominator vanishes only when both partitions are the same trivial
  # one (all spots together, or all apart): a perfect match.
  if (max_index == expected) return(1)
  (index - expected) / (max_index - expected)
}

# Exact expected mutual information under the hypergeometric model of random
# labellings with fixed marginals (Vinh, Epps & Bailey 2010), as in sklearn:
#   EMI = sum_ij sum_nij nij/N log(N nij / (a_i b_j)) *
#         a_i! b_j! (N-a_i)! (N-b_j)! / (N! nij! (a_i-nij)! (b_j-nij)!
#                                       (N-a_i-b_j+nij)!)
# The inner sum runs over nij = max(1, a_i + b_j - N) .. min(a_i, b_j).
.expected_mutual_info <- function(a, b) {
  n <- sum(a)
  lfa <- lfactorial(a)
  lfb <- lfactorial(b)
  lfna <- lfactorial(n - a)
  lfnb <- lfactorial(n - b)
  lfn <- lfactorial(n)
  emi <- 0
  for (i in seq_along(a)) {
    for (j in seq_along(b)) {
      lo <- max(1, a[i] + b[j] - n)
      hi <- min(a[i], b[j])
      if (lo > hi) next
      nij <- seq(lo, hi)
      log_p <- lfa[i] + lfb[j] + lfna[i] + lfnb[j] - lfn - lfactorial(nij) -
        lfactorial(a[i] - nij) - lfactorial(b[j] - nij) -
        lfactorial(n - a[i] - b[j] + nij)
      term <- nij / n * (log(n) + log(nij) - log(a[i]) - log(b[j]))
      emi <- emi + sum(term * exp(log_p))
    }
  }
  emi
}

# Mean silhouette width (Rousseeuw 1987) with Euclidean distances.
# Singletons score 0, as in cluster::silhouette and sklearn. Distances are
# computed in row blocks of about 250k entries: memory stays O(n) and small
# blocks are measurably faster than large ones (they stay in cache).
.mean_silhouette <- function(x, labels, max_n = 5000L, seed = 1L) {
  n <- nrow(x)
  if (n > max_n) {
    idx <- .with_seed(seed, sort(sample.int(n, max_n)))
    x <- x[idx, , drop = FALSE]
    labels <- labels[idx]
    n <- max_n
  }
  cl <- factor(labels)
  k <- nlevels(cl)
  if (k < 2L || k >= n) return(NA_real_)
  ci <- as.integer(cl)
  sizes <- tabulate(ci, k)
  onehot <- matrix(0, n, k)
  onehot[cbind(seq_len(n), ci)] <- 1

  # |u - v|^2 = |u|^2 + |v|^2 - 2 u.v as one matrix product of augmented
  # rows, which avoids building the n x n sums separately.
  sq <- rowSums(x^2)
  lhs <- cbind(-2 * x, sq, 1)
  rhs <- cbind(x, 1, sq)
  block <- max(1L, floor(2.5e5 / n))
  s <- numeric(n)
  for (start in seq(1L, n, by = block)) {
    rows <- start:min(n, start + block - 1L)
    d2 <- tcrossprod(lhs[rows, , drop = FALSE], rhs)
    d <- sqrt(pmax(d2, 0))
    # Exact zero on the diagonal, whatever rounding did.
    d[cbind(seq_along(rows), rows)] <- 0
    sums <- d %*% onehot
    own <- ci[rows]
    own_size <- sizes[own]
    a_i <- sums[cbind(seq_along(rows), own)] / pmax(own_size - 1, 1)
    mean_other <- sweep(sums, 2, sizes, "/")
    mean_other[cbind(seq_along(rows), own)] <- Inf
    b_i <- apply(mean_other, 1, min)
    s_i <- (b_i - a_i) / pmax(a_i, b_i)
    s_i[own_size == 1L | !is.finite(s_i)] <- 0
    s[rows] <- s_i
  }
  mean(s)
}
