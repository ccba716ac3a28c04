# The reference SEDR preprocessing recipe, in R:
#   sc.pp.filter_genes(min_cells = 50); sc.pp.filter_genes(min_counts = 10)
#   sc.pp.normalize_total(target_sum = 1e6)
#   sc.pp.highly_variable_genes(flavor = "seurat_v3", layer = "count",
#                               n_top_genes = 2000)
#   sc.pp.scale()
# All helpers take a genes x spots count matrix and stay sparse until the
# final scaling, which has to be dense (centred data have no zeros).

# Coerce any matrix-like input to a dgCMatrix (double, general, column
# compressed), which the helpers below read slot by slot.
.as_dgc <- function(x, arg = "counts") {
  if (inherits(x, "dgCMatrix")) return(x)
  if (!(is.matrix(x) || inherits(x, "Matrix")) ||
      !(is.numeric(x) || is.logical(x) || inherits(x, "Matrix"))) {
    sedr_abort(paste0("must be a numeric genes x spots matrix (a dgCMatrix ",
                      "or base matrix), not an object of class ",
                      class(x)[1], "."), arg = arg)
  }
  x <- methods::as(x, "CsparseMatrix")
  x <- methods::as(x, "generalMatrix")
  methods::as(x, "dMatrix")
}

# Number of spots in which each gene (row) is detected, from the slots, in
# O(nnz). Explicit zeros stored in the matrix are not counted.
.row_detected <- function(x) {
  tabulate(x@i[x@x != 0] + 1L, nbins = nrow(x))
}

# Keep genes detected in >= min.spots spots and with >= min.counts counts.
.filter_genes <- function(counts, min.spots = 50, min.counts = 10) {
  counts <- .as_dgc(counts)
  keep <- .row_detected(counts) >= min.spots &
    Matrix::rowSums(counts) >= min.counts
  counts[keep, , drop = FALSE]
}

# Counts per million per spot (no log); stays sparse. Spots without counts
# have no stored entries, so nothing is divided by zero.
.cpm <- function(counts) {
  counts <- .as_dgc(counts)
  totals <- Matrix::colSums(counts)
  counts@x <- counts@x / rep.int(totals, diff(counts@p)) * 1e6
  counts
}

# Seurat v3 / scanpy "seurat_v3" variance-stabilising HVG selection on raw
# counts (Stuart et al. 2019): regress log10 variance on log10 mean with
# loess, then the variance of counts standardised by the fitted sd, clipped
# at sqrt(N). Returns the top-n gene names in rank order, with the per-gene
# table as attribute "table".
.vst_hvg <- function(counts, n = 2000) {
  counts <- .as_dgc(counts)
  if (is.null(rownames(counts))) {
    sedr_abort("must have row names (gene names) to report variable genes.",
               arg = "counts")
  }
  n_spots <- ncol(counts)
  if (n_spots < 2L) {
    sedr_abort("needs at least 2 spots (columns) to estimate gene variances.",
               arg = "counts")
  }
  n_genes <- nrow(counts)

  # Row moments from the nonzeros only.
  row_idx <- counts@i + 1L
  vals <- counts@x
  mu <- Matrix::rowSums(counts) / n_spots
  sum_sq <- .row_sums_of(counts, vals^2)
  variance <- pmax((sum_sq - n_spots * mu^2) / (n_spots - 1), 0)

  not_const <- variance > 0
  var_expected <- numeric(n_genes)
  if (any(not_const)) {
    fit_df <- data.frame(lv = log10(variance[not_const]),
                         lm = log10(mu[not_const]))
    fitted <- tryCatch(
      stats::loess(lv ~ lm, data = fit_df, span = 0.3, degree = 2)$fitted,
      error = function(e) {
        # Too few genes for a local fit: fall back on a global line so the
        # ranking still reflects over-dispersion.
        sedr_warn(paste0("loess fit of the mean-variance trend failed (",
                         conditionMessage(e), "); using a linear fit."))
        stats::lm(lv ~ lm, data = fit_df)$fitted.values
      }
    )
    var_expected[not_const] <- 10^fitted
  }
  sd_expected <- sqrt(var_expected)

  # Standardised variance: the sum over spots of min(z, sqrt(N))^2 with
  # z = (x - mean) / sd_expected. Nonzeros are summed explicitly; every
  # zero contributes (mean / sd)^2 (z is negative, so the clip never binds).
  vmax <- sqrt(n_spots)
  ok <- sd_expected[row_idx] > 0
  z <- (vals - mu[row_idx]) / sd_expected[row_idx]
  z <- pmin(z, vmax)
  z[!ok] <- 0
  nz_sum <- .row_sums_of(counts, z^2)
  n_zero <- n_spots - tabulate(row_idx, nbins = n_genes)
  zero_z2 <- ifelse(sd_expected > 0, (mu / sd_expected)^2, 0)
  var_std <- (nz_sum + n_zero * zero_z2) / (n_spots - 1)
  var_std[sd_expected == 0] <- 0

  # Ties broken by the original row order.
  ord <- order(-var_std, seq_len(n_genes))
  rank <- integer(n_genes)
  rank[ord] <- seq_len(n_genes)
  table <- data.frame(
    mean = mu, variance = variance, variance.expected = var_expected,
    variance.standardized = var_std, rank = rank,
    row.names = rownames(counts)
  )
  top <- rownames(counts)[ord[seq_len(min(n, n_genes))]]
  attr(top, "table") <- table
  top
}

# Row sums of a transform of the stored entries: `vals` runs parallel to
# x@x. Swapping the slot keeps it O(nnz) and uses Matrix's compiled code.
.row_sums_of <- function(x, vals) {
  x@x <- as.numeric(vals)
  Matrix::rowSums(x)
}

# Z-score each gene (row) across spots with the unbiased sd (as sc.pp.scale,
# no clipping). Returns a dense spots x genes matrix with attributes `center`
# and `scale` (per gene) so that x = z * scale + center undoes it. Genes with
# sd 0 get z = 0 and scale 1 (as scanpy), which keeps that inverse exact.
.scale_rows <- function(x) {
  m <- as.matrix(Matrix::t(x))
  storage.mode(m) <- "double"
  n <- nrow(m)
  if (n < 2L) {
    sedr_abort("needs at least 2 spots (columns) to scale genes.", arg = "x")
  }
  center <- colMeans(m)
  m <- m - rep(center, each = n)
  sds <- sqrt(colSums(m^2) / (n - 1))
  # Relative threshold: a constant gene can leave rounding noise after
  # centring, which must not be blown up into unit variance.
  const <- sds <= 1e-12 * pmax(abs(center), 1)
  scl <- ifelse(const, 1, sds)
  m <- m / rep(scl, each = n)
  m[, const] <- 0
  names(center) <- names(scl) <- colnames(m)
  attr(m, "center") <- center
  attr(m, "scale") <- scl
  m
}

# filter -> CPM -> HVG (on the raw counts of the kept genes) -> scale the
# CPM of the HVGs. Columns of `scaled` keep the original gene order, as
# subsetting an AnnData by a boolean mask does in the reference recipe.
.preprocess_counts <- function(counts, n.hvg = 2000, min.spots = 50,
                               min.counts = 10) {
  n.hvg <- .check_whole(n.hvg, "n.hvg", min = 1)
  min.spots <- .check_whole(min.spots, "min.spots", min = 0)
  .check_number(min.counts, "min.counts")
  counts <- .as_dgc(counts)
  if (is.null(rownames(counts))) {
    sedr_abort("must have row names (gene names).", arg = "counts")
  }
  filtered <- .filter_genes(counts, min.spots = min.spots,
                            min.counts = min.counts)
  if (nrow(filtered) < 2L) {
    sedr_abort(paste0("only ", nrow(filtered), " of ", nrow(counts),
                      " genes are detected in >= ",
                      format(min.spots, scientific = FALSE), " spots with >= ",
                      format(min.counts, scientific = FALSE),
                      " counts; at least 2 are needed. ",
                      "Lower `min.spots` or `min.counts`."),
               arg = "features")
  }
  norm <- .cpm(filtered)
  if (nrow(filtered) <= n.hvg) {
    features <- rownames(filtered)
  } else {
    hvg <- .vst_hvg(filtered, n = n.hvg)
    features <- rownames(filtered)[rownames(filtered) %in% hvg]
  }
  scaled <- .scale_rows(norm[features, , drop = FALSE])
  center <- attr(scaled, "center")
  scl <- attr(scaled, "scale")
  attr(scaled, "center") <- attr(scaled, "scale") <- NULL
  list(scaled = scaled, features = features, center = center, scale = scl)
}
