toy_counts <- function() {
  # 4 genes x 5 spots.
  m <- rbind(
    g1 = c(0, 1, 2, 0, 3),  # 3 spots, 6 counts
    g2 = c(5, 5, 5, 5, 5),  # 5 spots, 25 counts
    g3 = c(0, 0, 0, 0, 9),  # 1 spot, 9 counts
    g4 = c(1, 1, 0, 1, 1)   # 4 spots, 4 counts
  )
  colnames(m) <- paste0("s", 1:5)
  Matrix::Matrix(m, sparse = TRUE)
}

# Dense reference for the standardized variance, given the expected sd.
dense_std_var <- function(x, sd_exp) {
  x <- as.matrix(x)
  n <- ncol(x)
  mu <- rowMeans(x)
  out <- numeric(nrow(x))
  for (g in seq_len(nrow(x))) {
    if (sd_exp[g] == 0) next
    z <- pmin((x[g, ] - mu[g]) / sd_exp[g], sqrt(n))
    out[g] <- sum(z^2) / (n - 1)
  }
  out
}

test_that(".filter_genes keeps genes passing both thresholds", {
  x <- toy_counts()
  expect_equal(rownames(.filter_genes(x, min.spots = 3, min.counts = 5)),
               c("g1", "g2"))
  expect_equal(rownames(.filter_genes(x, min.spots = 1, min.counts = 9)),
               c("g2", "g3"))
  expect_equal(rownames(.filter_genes(x, min.spots = 4, min.counts = 0)),
               c("g2", "g4"))
  expect_s4_class(.filter_genes(x, 1, 1), "dgCMatrix")
  # Explicitly stored zeros do not count as detections.
  y <- x
  y@x[y@x == 9] <- 0
  expect_equal(nrow(.filter_genes(y, min.spots = 1, min.counts = 0)), 3L)
  # Base matrices are accepted.
  expect_equal(.filter_genes(as.matrix(x), 3, 5), .filter_genes(x, 3, 5))
})

test_that(".normalize_counts (cpm) scales every spot to a million and stays sparse", {
  x <- toy_counts()
  x <- cbind(x, s6 = 0)
  cpm <- .normalize_counts(x)
  expect_s4_class(cpm, "dgCMatrix")
  expect_equal(unname(Matrix::colSums(cpm)), c(rep(1e6, 5), 0))
  expect_equal(cpm["g1", "s2"], 1 / 7 * 1e6)
  expect_equal(Matrix::nnzero(cpm), Matrix::nnzero(x))
})

test_that(".vst_hvg matches a dense computation of the Seurat v3 VST", {
  sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 150,
                               n.domains = 3, markers.per.domain = 8)
  x <- sim$counts
  hvg <- .vst_hvg(x, n = 30)
  tab <- attr(hvg, "table")
  expect_length(hvg, 30L)
  expect_equal(rownames(tab), rownames(x))

  dense <- as.matrix(x)
  mu <- rowMeans(dense)
  v <- apply(dense, 1, stats::var)
  expect_equal(tab$mean, unname(mu))
  expect_equal(tab$variance, unname(v))
  fit <- stats::loess(log10(v[v > 0]) ~ log10(mu[v > 0]), span = 0.3,
                      degree = 2)
  sd_exp <- numeric(length(v))
  sd_exp[v > 0] <- sqrt(10^fit$fitted)
  expect_equal(tab$variance.expected, sd_exp^2)
  expect_equal(tab$variance.standardized, dense_std_var(dense, sd_exp))

  # Top genes by standardized variance, in rank order.
  expect_equal(hvg[1:30], rownames(x)[order(-tab$variance.standardized)][1:30])
  # Markers are over-dispersed: they dominate the top of the list.
  expect_gt(mean(hvg %in% unlist(sim$markers)), 0.5)
})

test_that(".vst_hvg clips each spot's z-score at sqrt(N)", {
  set.seed(2)
  n <- 100
  # Many genes per mean level, so one outlier barely moves the loess trend.
  x <- matrix(stats::rpois(300 * n, rep(1:10, length.out = 300)), 300, n,
              dimnames = list(paste0("G", 1:300), NULL))
  x[5, 1] <- 200
  tab <- attr(.vst_hvg(Matrix::Matrix(x, sparse = TRUE)), "table")
  sd_exp <- sqrt(tab$variance.expected)
  z_out <- (200 - tab$mean[5]) / sd_exp[5]
  expect_gt(z_out, sqrt(n))  # the clip is active for this spot
  clipped <- (n + sum(((x[5, -1] - tab$mean[5]) / sd_exp[5])^2)) / (n - 1)
  expect_equal(tab$variance.standardized[5], clipped)
  expect_equal(tab$variance.standardized, dense_std_var(x, sd_exp))
})

test_that(".vst_hvg breaks ties by row order and scores constant genes 0", {
  set.seed(4)
  x <- matrix(stats::rpois(40 * 60, 3), 40, 60,
              dimnames = list(paste0("G", 1:40), NULL))
  x[7, ] <- x[3, ]  # three identical rows
  x[20, ] <- x[3, ]
  x[10, ] <- 2             # a constant gene
  hvg <- .vst_hvg(Matrix::Matrix(x, sparse = TRUE), n = 40)
  tab <- attr(hvg, "table")
  pos <- match(c("G3", "G7", "G20"), hvg)
  expect_equal(pos, sort(pos))
  expect_equal(diff(pos), c(1L, 1L))
  expect_equal(tab["G10", "variance.standardized"], 0)
  expect_equal(tab$rank[match(hvg, rownames(tab))], 1:40)
})

test_that(".vst_hvg agrees with Seurat::FindVariableFeatures", {
  skip_if_not_installed("Seurat")
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 300,
                               n.domains = 4, markers.per.domain = 10)
  x <- sim$counts
  ours <- .vst_hvg(x, n = 50)
  ref <- suppressWarnings(
    Seurat::FindVariableFeatures(x, selection.method = "vst", verbose = FALSE)
  )
  tab <- attr(ours, "table")
  expect_gt(stats::cor(tab$variance.standardized,
                       ref[rownames(tab), "vst.variance.standardized"]),
            0.999)
  ref_top <- rownames(ref)[order(-ref$vst.variance.standardized)][1:50]
  expect_gte(length(intersect(ours, ref_top)), 48)
})

test_that(".scale_rows z-scores genes and can be undone", {
  x <- toy_counts()
  z <- .scale_rows(x)
  expect_true(is.matrix(z) && is.double(z))
  expect_equal(dim(z), c(5L, 4L))  # spots x genes
  expect_equal(colnames(z), rownames(x))
  expect_equal(rownames(z), colnames(x))
  expect_equal(unname(colMeans(z)), rep(0, 4))
  expect_equal(unname(apply(z[, c("g1", "g3", "g4")], 2, stats::sd)),
               rep(1, 3))
  # Constant gene: zeros, scale 1, centre = its value.
  expect_equal(unname(z[, "g2"]), rep(0, 5))
  expect_equal(attr(z, "scale")[["g2"]], 1)
  expect_equal(attr(z, "center")[["g2"]], 5)
  # Unbiased sd, no clipping: the lone 9 of g3 becomes (9 - 1.8) / sd.
  expect_equal(z["s5", "g3"], (9 - 1.8) / stats::sd(c(0, 0, 0, 0, 9)))
  undone <- t(z) * attr(z, "scale") + attr(z, "center")
  expect_equal(as.vector(undone), as.vector(as.matrix(x)))
})

test_that(".preprocess_counts chains filter, CPM, HVG and scaling", {
  sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 200,
                               n.domains = 3, markers.per.domain = 10)
  x <- sim$counts
  res <- .preprocess_counts(x, n.hvg = 40, min.spots = 20, min.counts = 10)
  expect_named(res, c("scaled", "features", "center", "scale"))
  expect_length(res$features, 40L)
  expect_equal(dim(res$scaled), c(225L, 40L))
  expect_equal(colnames(res$scaled), res$features)
  expect_null(attr(res$scaled, "center"))

  kept <- .filter_genes(x, min.spots = 20, min.counts = 10)
  expect_true(all(res$features %in% rownames(kept)))
  # Original gene order, not rank order.
  expect_equal(res$features, rownames(kept)[rownames(kept) %in% res$features])
  expect_setequal(res$features, .vst_hvg(kept, n = 40))

  # Scaled CPM, reversible with center/scale.
  cpm <- as.matrix(.normalize_counts(kept)[res$features, ])
  back <- t(res$scaled) * res$scale + res$center
  expect_equal(unname(back), unname(cpm))

  # Fewer genes than n.hvg: all kept genes are used.
  all_res <- .preprocess_counts(x, n.hvg = 5000, min.spots = 20,
                                min.counts = 10)
  expect_equal(all_res$features, rownames(kept))
})

test_that(".preprocess_counts errors when too few genes pass", {
  x <- toy_counts()
  expect_error(.preprocess_counts(x, min.spots = 50), "`features`",
               class = "sedr_error_input")
  err <- tryCatch(.preprocess_counts(x, min.spots = 50), error = identity)
  expect_equal(err$arg, "features")
  expect_match(conditionMessage(err), "min.spots")
  expect_error(.preprocess_counts(x, n.hvg = 0), "`n.hvg`")
  expect_error(.filter_genes(list(1)), "`counts`",
               class = "sedr_error_input")
  no_names <- x
  dimnames(no_names) <- list(NULL, NULL)
  expect_error(.vst_hvg(no_names), "row names", class = "sedr_error_input")
})

test_that(".gene_moments matches .scale_rows from the nonzeros alone", {
  x <- toy_counts()
  m <- .gene_moments(x)
  z <- .scale_rows(x)
  expect_equal(m$center, attr(z, "center"))
  expect_equal(m$scale, attr(z, "scale"))
  expect_equal(unname(m$constant), c(FALSE, TRUE, FALSE, FALSE))
  expect_named(m$center, rownames(x))
  # Explicitly stored zeros count as zeros.
  y <- x
  y@x[y@x == 9] <- 0
  expect_equal(.gene_moments(y)$scale, attr(.scale_rows(y), "scale"))
  expect_error(.gene_moments(x[, 1, drop = FALSE]), "at least 2 spots", class = "sedr_error_input")
})

test_that(".preprocess_counts(dense = FALSE) keeps the CPM sparse with the same scaling", {
  sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 200,
                               n.domains = 3, markers.per.domain = 10)
  d <- .preprocess_counts(sim$counts, n.hvg = 40, min.spots = 20, min.counts = 10)
  s <- .preprocess_counts(sim$counts, n.hvg = 40, min.spots = 20, min.counts = 10, dense = FALSE)
  expect_named(s, c("norm", "features", "center", "scale", "constant", "moran"))
  expect_null(s$moran)
  expect_s4_class(s$norm, "dgCMatrix")
  expect_identical(s$features, d$features)
  expect_identical(rownames(s$norm), d$features)
  expect_equal(s$center, d$center)
  expect_equal(s$scale, d$scale)
  # The CPM of the kept genes (library sizes over all kept genes).
  kept <- .filter_genes(sim$counts, min.spots = 20, min.counts = 10)
  expect_equal(s$norm, .normalize_counts(kept)[d$features, ])
  expect_equal(unname(t(as.matrix(s$norm))), unname((d$scaled * rep(d$scale, each = 225)) +
                                                       rep(d$center, each = 225)))
})

test_that("the sparse PCA equals the dense PCA of the scaled matrix", {
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 300)
  d <- .preprocess_counts(sim$counts, n.hvg = 120, min.spots = 10)
  s <- .preprocess_counts(sim$counts, n.hvg = 120, min.spots = 10, dense = FALSE)
  for (npcs in c(30, 119)) {  # randomized, then exact (npcs + 10 >= genes)
    pd <- sedr_pca(d$scaled, npcs, seed = 5)
    ps <- sedr_pca_sparse(s$norm, s$center, ifelse(s$constant, 0, s$scale), npcs, seed = 5)
    expect_equal(dimnames(ps$scores), dimnames(pd$scores))
    expect_equal(dimnames(ps$loadings), dimnames(pd$loadings))
    expect_equal(ps$sdev, pd$sdev, tolerance = 1e-8)
    # The sparse PCA takes the Gram path here, whose power iterations choose
    # the subspace in float32 (pca.rs): agreement to ~1e-6 of the scores'
    # size, not to double rounding.
    expect_lt(max(abs(ps$scores - pd$scores)) / max(abs(pd$scores)), 1e-5)
    expect_lt(max(abs(ps$loadings - pd$loadings)), 1e-5)
  }
  # Same seed, same bits; the scores are centred.
  again <- sedr_pca_sparse(s$norm, s$center, ifelse(s$constant, 0, s$scale), 30, seed = 5)
  expect_identical(again, sedr_pca_sparse(s$norm, s$center, ifelse(s$constant, 0, s$scale), 30, seed = 5))
  expect_lt(max(abs(colMeans(again$scores))), 1e-8)
  # Malformed input is an input error from the Rust core.
  expect_error(sedr_pca_sparse(s$norm, s$center[-1], s$scale, 10, seed = 1), class = "sedr_error_input")
  expect_error(sedr_pca_sparse(s$norm, s$center, -s$scale, 10, seed = 1), "`scale`",
               class = "sedr_error_input")
})

test_that("the recipe gives the same result when processed in small blocks of spots", {
  sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 200,
                               n.domains = 3, markers.per.domain = 10)
  ref <- .preprocess_counts(sim$counts, n.hvg = 40, min.spots = 20, dense = FALSE)
  ref_hvg <- attr(.vst_hvg(sim$counts, n = 40), "table")
  old <- options(SEDR.block.entries = 101)  # ~25 blocks, some one spot wide
  on.exit(options(old))
  expect_gt(nrow(.column_blocks(sim$counts)), 20)
  small <- .preprocess_counts(sim$counts, n.hvg = 40, min.spots = 20, dense = FALSE)
  expect_identical(small$features, ref$features)
  expect_equal(small$norm, ref$norm)
  expect_equal(small$center, ref$center)
  expect_equal(small$scale, ref$scale)
  expect_equal(attr(.vst_hvg(sim$counts, n = 40), "table"), ref_hvg)
  # Blocks cover every column once, in order.
  b <- .column_blocks(sim$counts)
  expect_equal(unname(b[1, "first"]), 1L)
  expect_equal(unname(b[nrow(b), "last"]), ncol(sim$counts))
  expect_equal(b[-1, "first"], b[-nrow(b), "last"] + 1L)
})
