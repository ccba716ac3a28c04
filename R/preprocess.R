# The reference SEDR preprocessing recipe, in R:
#   sc.pp.filter_genes(min_cells = 50); sc.pp.filter_genes(min_counts = 10)
#   sc.pp.normalize_total(target_sum = 1e6)
#   sc.pp.highly_variable_genes(flavor = "seurat_v3", layer = "count",
#                               n_top_genes = 2000)
#   sc.pp.scale()
# All helpers take a genes x spots count matrix and stay sparse. The scaling
# is dense only where the scaled genes themselves are needed (imputation:
# centred data have no zeros); for PCA it stays implicit: per-gene moments
# from the nonzeros (.gene_moments) and a sparse PCA of (x - center) / scale
# in the Rust core (sedr_pca_sparse), O(nnz) memory instead of spots x genes.

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
  .row_sums_by_block(x, function(v, rows) as.numeric(v != 0))
}

# Keep genes detected in >= min.spots spots and with >= min.counts counts.
.filter_genes <- function(counts, min.spots = 50, min.counts = 10) {
  counts <- .as_dgc(counts)
  keep <- .row_detected(counts) >= min.spots &
    Matrix::rowSums(counts) >= min.counts
  if (all(keep)) return(counts)  # no copy
  counts[keep, , drop = FALSE]
}

# Counts normalised by each spot's library size; stays sparse. `how`:
# "cpm", counts per million (no log; the reference's), or "log", Seurat's
# LogNormalize log1p(x / total * 1e4) (the Rust core's Normalize, with the
# same order of operations, so the same bits). Spots without counts have no
# stored entries, so nothing is divided by zero. `totals` (one per spot)
# replaces the column sums, e.g. those of a larger gene set.
.normalize_counts <- function(counts, totals = NULL, how = "cpm") {
  counts <- .as_dgc(counts)
  if (is.null(totals)) totals <- Matrix::colSums(counts)
  # One new value vector, filled a block of spots at a time.
  x <- numeric(length(counts@x))
  blocks <- .column_blocks(counts)
  for (k in seq_len(nrow(blocks))) {
    b <- .block(counts, blocks, k)
    if (!length(b$idx)) next
    v <- counts@x[b$idx] / rep.int(totals[b$cols], diff(b$p))
    x[b$idx] <- if (how == "log") log1p(v * 1e4) else v * 1e6
    .drop_block_garbage(blocks)
  }
  counts@x <- x
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
  # Row moments from the nonzeros only.
  mu <- Matrix::rowSums(counts) / n_spots
  sum_sq <- .row_sums_by_block(counts, function(v, rows) v^2)
  clipped <- function(sd_expected) {
    vmax <- sqrt(n_spots)
    .row_sums_by_block(counts, function(v, rows) {
      sd <- sd_expected[rows]
      z <- pmin((v - mu[rows]) / sd, vmax)
      z[!(sd > 0)] <- 0
      z^2
    })
  }
  .vst_rank(rownames(counts), n_spots, mu, sum_sq, .row_stored(counts),
            clipped, n = n)
}

# The VST from per-gene sums over the stored entries, shared by the R recipe
# and the native one (whose sparse passes are in the Rust core): `mu` the
# mean counts, `sum_sq` the sums of squares, `stored` the stored entries per
# gene, and `clipped(sd_expected)` the sums over the stored entries of
# min(z, sqrt(N))^2 with z = (x - mean) / sd_expected (0 where sd is 0).
.vst_rank <- function(genes, n_spots, mu, sum_sq, stored, clipped, n) {
  n_genes <- length(genes)
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
  # z = (x - mean) / sd_expected. Stored entries are summed explicitly; every
  # zero contributes (mean / sd)^2 (z is negative, so the clip never binds).
  nz_sum <- clipped(sd_expected)
  n_zero <- n_spots - stored
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
    row.names = genes
  )
  top <- genes[ord[seq_len(min(n, n_genes))]]
  attr(top, "table") <- table
  top
}

# Blocks of whole columns (spots) of a dgCMatrix with at most `chunk` stored
# entries each (or one column, if larger), as a two-column matrix of first
# and last column (1-based). Per-entry temporaries of the helpers below are
# bounded by a block instead of the whole matrix (a million spots x 2000
# genes has ~1e8 entries: 800 MB per double vector).
.column_blocks <- function(x, chunk = getOption("SEDR.block.entries", 2^24)) {
  p <- x@p
  n <- ncol(x)
  first <- last <- integer()
  j <- 0L
  while (j < n) {
    # Last column j2 with p[j2 + 1] <= p[j + 1] + chunk, at least j + 1.
    j2 <- min(n, max(j + 1L, findInterval(p[j + 1L] + chunk, p) - 1L))
    first <- c(first, j + 1L)
    last <- c(last, j2)
    j <- j2
  }
  cbind(first = first, last = last)
}

# The columns of block `k` and the positions of their entries in x@i / x@x.
.block <- function(x, blocks, k) {
  cols <- blocks[k, "first"]:blocks[k, "last"]
  a <- x@p[cols[1]]
  b <- x@p[cols[length(cols)] + 1L]
  list(cols = cols, idx = if (b > a) (a + 1L):b else integer(),
       p = x@p[c(cols, cols[length(cols)] + 1L)] - a)
}

# Row sums of f(values, rows) over the stored entries of x (rows 1-based),
# a block of columns at a time; Matrix's compiled rowSums does the sums.
.row_sums_by_block <- function(x, f) {
  out <- numeric(nrow(x))
  blocks <- .column_blocks(x)
  for (k in seq_len(nrow(blocks))) {
    b <- .block(x, blocks, k)
    if (!length(b$idx)) next
    rows0 <- x@i[b$idx]
    blk <- methods::new("dgCMatrix", i = rows0, p = b$p,
                        x = as.numeric(f(x@x[b$idx], rows0 + 1L)),
                        Dim = c(nrow(x), length(b$cols)))
    out <- out + Matrix::rowSums(blk)
    .drop_block_garbage(blocks)
  }
  out
}

# A collection between blocks, so the previous block's temporaries are freed
# before the next block's are made (R's own trigger lets a whole matrix's
# worth pile up first, and a young-generation collection does not reliably
# free them). ~0.1 s each, a handful per pass at a million spots; skipped
# for a matrix that fits in one block, and for small blocks (where there is
# little to free and a full collection per block would dominate).
.drop_block_garbage <- function(blocks) {
  if (nrow(blocks) > 1L && getOption("SEDR.block.entries", 2^24) >= 2^20) {
    invisible(gc(verbose = FALSE, full = TRUE))
  }
}

# Number of stored entries per row (explicit zeros included).
.row_stored <- function(x) {
  .row_sums_by_block(x, function(v, rows) rep.int(1, length(v)))
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

# Per-gene (row) mean and unbiased sd of a sparse genes x spots matrix, in
# O(nnz) from the stored entries: the squared deviations of the nonzeros
# plus center^2 for every zero (two-pass, as .scale_rows, so no cancellation).
# The same conventions as .scale_rows: `constant` genes (sd ~ 0 relative to
# their mean) get scale 1.
.gene_moments <- function(x) {
  x <- .as_dgc(x, arg = "x")
  n <- ncol(x)
  if (n < 2L) {
    sedr_abort("needs at least 2 spots (columns) to scale genes.", arg = "x")
  }
  center <- Matrix::rowSums(x) / n
  dev2 <- .row_sums_by_block(x, function(v, rows) (v - center[rows])^2)
  n_zero <- n - .row_stored(x)
  sds <- sqrt((dev2 + n_zero * center^2) / (n - 1))
  const <- sds <= 1e-12 * pmax(abs(center), 1)
  scl <- ifelse(const, 1, sds)
  names(center) <- names(scl) <- names(const) <- rownames(x)
  list(center = center, scale = scl, constant = const)
}

# At least 2 genes must pass the filter of either recipe.
.check_kept_genes <- function(kept, total, min.spots, min.counts) {
  if (kept < 2L) {
    sedr_abort(paste0("only ", kept, " of ", total,
                      " genes are detected in >= ",
                      format(min.spots, scientific = FALSE), " spots with >= ",
                      format(min.counts, scientific = FALSE),
                      " counts; at least 2 are needed. ",
                      "Lower `min.spots` or `min.counts`."),
               arg = "features")
  }
}

# The counts for either recipe: a dgCMatrix with gene names.
.recipe_counts <- function(counts) {
  counts <- .as_dgc(counts)
  if (is.null(rownames(counts))) {
    sedr_abort("must have row names (gene names).", arg = "counts")
  }
  counts
}

# filter -> HVG (on the raw counts of the kept genes) -> normalise the HVGs
# by the library sizes of all kept genes (`normalize`: "cpm" as the
# reference, or "log", see .normalize_counts) -> scale. Columns of `scaled` keep the original gene order, as
# subsetting an AnnData by a boolean mask does in the reference recipe.
# `dense = FALSE` skips the dense scaling: it returns the sparse CPM of the
# selected genes (`norm`, genes x spots) with their `center`, `scale` and
# `constant` flags instead of `scaled`, for sedr_pca_sparse().
.preprocess_counts <- function(counts, n.hvg = 2000, min.spots = 50,
                               min.counts = 10, dense = TRUE, normalize = "cpm",
                               moran = NULL, n.threads = 1L) {
  n.hvg <- .check_whole(n.hvg, "n.hvg", min = 1)
  min.spots <- .check_whole(min.spots, "min.spots", min = 0)
  .check_number(min.counts, "min.counts")
  counts <- .recipe_counts(counts)
  filtered <- .filter_genes(counts, min.spots = min.spots,
                            min.counts = min.counts)
  .check_kept_genes(nrow(filtered), nrow(counts), min.spots, min.counts)
  # Library sizes over all kept genes (normalize_total before the HVG
  # subset), so only the selected genes' CPM is ever built.
  totals <- Matrix::colSums(filtered)
  if (nrow(filtered) <= n.hvg) {
    features <- rownames(filtered)
  } else {
    hvg <- .vst_hvg(filtered, n = n.hvg)
    features <- rownames(filtered)[rownames(filtered) %in% hvg]
    filtered <- filtered[features, , drop = FALSE]
  }
  spatial <- NULL
  if (!is.null(moran)) {
    spatial <- .moran_filter(filtered, seq_len(nrow(filtered)), totals, normalize, moran, n.threads)
    features <- features[spatial$kept]
    filtered <- filtered[spatial$kept, , drop = FALSE]
  }
  norm <- .normalize_counts(filtered, totals = totals, how = normalize)
  rm(filtered)
  if (!dense) {
    mom <- .gene_moments(norm)
    return(list(norm = norm, features = features, center = mom$center,
                scale = mom$scale, constant = mom$constant, moran = spatial))
  }
  scaled <- .scale_rows(norm)
  center <- attr(scaled, "center")
  scl <- attr(scaled, "scale")
  attr(scaled, "center") <- attr(scaled, "scale") <- NULL
  list(scaled = scaled, features = features, center = center, scale = scl)
}

# The recipe's default path: the same recipe as .preprocess_counts() with
# its sparse passes in the Rust core (gene filter, library sizes, the VST's
# moments and clipped sums, CPM of the selected genes, their moments) and
# only the VST's loess fit over genes in R, followed by the sparse PCA of
# the implicitly scaled CPM (sedr_pca_sparse's). The CPM is built in Rust
# and never returned, so R holds no copy of the counts but the input.
# Returns .preprocess_counts(dense = FALSE)'s fields but `norm`, plus `pcs`
# (scores, sdev, loadings as sedr_pca_sparse()). With `as.input = TRUE` the
# scores go straight into the trainer's float32 input instead (`input`, a
# handle for sedr_trainer_new(), with `input.dims` columns; `pcs$scores` is
# NULL): R never holds them as doubles (8 GB at 5 M spots x 200 PCs, and
# the Rust copy they were made from another 8). The R recipe stays the
# reference (tests compare both) and is used for imputation, which needs
# the dense scaled genes; options(SEDR.recipe = "r") selects it everywhere.
.preprocess_native <- function(counts, n.hvg = 2000, min.spots = 50,
                               min.counts = 10, npcs = 200, seed = 1L,
                               n.threads = 1L, device = "cpu", normalize = "cpm",
                               as.input = FALSE, moran = NULL) {
  n.hvg <- .check_whole(n.hvg, "n.hvg", min = 1)
  min.spots <- .check_whole(min.spots, "min.spots", min = 0)
  .check_number(min.counts, "min.counts")
  counts <- .recipe_counts(counts)
  n <- ncol(counts)
  if (n < 2L) {
    sedr_abort("needs at least 2 spots (columns) to estimate gene variances.",
               arg = "counts")
  }
  g <- nrow(counts)
  threads <- as.integer(n.threads)
  st <- unwrap_rust(.Call(wrap__sedr_recipe_stats, counts@p, counts@i,
                          counts@x, g, as.double(min.spots),
                          as.double(min.counts), threads))
  keep <- which(st$keep)
  .check_kept_genes(length(keep), g, min.spots, min.counts)
  sel <- keep
  if (length(keep) > n.hvg) {
    mu <- st$sum[keep] / n
    clipped <- function(sd_expected) {
      mu_all <- sd_all <- numeric(g)
      mu_all[keep] <- mu
      sd_all[keep] <- sd_expected
      unwrap_rust(.Call(wrap__sedr_recipe_clipped, counts@p, counts@i,
                        counts@x, g, mu_all, sd_all, threads))[keep]
    }
    hvg <- .vst_rank(rownames(counts)[keep], n, mu, st$sum_sq[keep],
                     st$stored[keep], clipped, n = n.hvg)
    sel <- keep[attr(hvg, "table")$rank <= n.hvg]
  }
  spatial <- NULL
  if (!is.null(moran)) {
    spatial <- .moran_filter(counts, sel, st$totals, normalize, moran, threads)
    sel <- sel[spatial$kept]
  }
  features <- rownames(counts)[sel]
  npcs <- min(npcs, n - 1L, length(sel))
  res <- unwrap_rust(.Call(wrap__sedr_recipe_pca, counts@p, counts@i,
                           counts@x, g, as.integer(sel - 1L), st$totals,
                           normalize, as.integer(npcs), as.integer(seed), threads,
                           device, .pca_method(), isTRUE(as.input)))
  input <- res$input
  res$input <- NULL
  if (!is.null(input)) res$scores <- NULL
  list(features = features, center = stats::setNames(res$center, features),
       scale = stats::setNames(res$scale, features),
       constant = stats::setNames(res$constant, features),
       pcs = pca_result(res, n, length(sel), npcs, colnames(counts), features),
       input = input, input.dims = if (!is.null(input)) as.integer(npcs), moran = spatial)
}

# The recipe's spatial gene filter. Moran's I of each selected gene of
# `counts` (`sel`, row indices; normalised by the library sizes `totals` as
# the PCA reads them) on the spatial graph `moran$graph`, and its z-score
# under the normality assumption (Cliff & Ord), from the Rust core. A gene
# whose neighbouring spots are no more alike than random spots is noise at
# this resolution; the PCA of all variable genes spends components on it.
# Keeps the genes with z >= `moran$z`, and at least the 10 (or all, if
# fewer) with the highest z. Returns a data frame of the selected genes:
# gene, moran.i, moran.z, kept.
.moran_filter <- function(counts, sel, totals, normalize, moran, n.threads = 1L) {
  # The Rust core refuses a graph of other spots (`graph`).
  graph <- moran$graph
  m <- unwrap_rust(.Call(wrap__sedr_recipe_moran, counts@p, counts@i, counts@x, nrow(counts),
                         as.integer(sel - 1L), as.double(totals), normalize, graph@p, graph@i,
                         as.integer(n.threads)))
  floor <- min(10L, length(sel))
  kept <- m$z >= moran$z | rank(-m$z, ties.method = "first") <= floor
  data.frame(gene = rownames(counts)[sel], moran.i = m$i, moran.z = m$z, kept = kept,
             stringsAsFactors = FALSE)
}

# `moran.z`: NULL (no spatial gene filter) or one number, a z-score.
check_moran_z <- function(moran.z) {
  if (is.null(moran.z)) return(invisible(NULL))
  if (!is.numeric(moran.z) || length(moran.z) != 1 || is.na(moran.z)) {
    sedr_abort("must be one number (a z-score of Moran's I; 2 keeps the genes with a clear spatial pattern) or NULL (keep every variable gene).",
               arg = "moran.z")
  }
  invisible(NULL)
}

# TRUE unless options(SEDR.recipe = "r") selects the R reference recipe.
.native_recipe <- function() {
  !identical(getOption("SEDR.recipe"), "r")
}
