# The native recipe (sparse passes in the Rust core) against the R reference
# recipe (.preprocess_counts + sedr_pca_sparse): the same genes, moments and
# principal components.

# The R recipe's result in the native recipe's shape.
reference_recipe <- function(counts, n.hvg, min.spots, min.counts, npcs, seed, normalize = "cpm") {
  ref <- .preprocess_counts(counts, n.hvg = n.hvg, min.spots = min.spots,
                            min.counts = min.counts, dense = FALSE, normalize = normalize)
  ref$pcs <- sedr_pca_sparse(ref$norm, ref$center,
                             ifelse(ref$constant, 0, ref$scale), npcs, seed = seed)
  ref$norm <- NULL
  ref
}

# Components agree up to a sign per component (both paths fix the sign the
# same way, but the test does not rely on it).
expect_same_pcs <- function(a, b, tol = 1e-6) {
  expect_equal(dimnames(a$scores), dimnames(b$scores))
  expect_equal(dimnames(a$loadings), dimnames(b$loadings))
  expect_equal(a$sdev, b$sdev, tolerance = tol)
  s <- sign(colSums(a$loadings * b$loadings))
  expect_true(all(s != 0))
  scale <- max(abs(a$scores))
  expect_lt(max(abs(a$scores - sweep(b$scores, 2, s, `*`))) / scale, tol)
  expect_lt(max(abs(a$loadings - sweep(b$loadings, 2, s, `*`))), tol)
}

# The Gram path chooses its subspace in float32 (pca.rs): against the sparse
# products or a dense SVD its components agree to ~1e-6, not to double
# rounding.
gram_tol <- 1e-5

expect_same_recipe <- function(nat, ref, tol = 1e-6) {
  expect_identical(nat$features, ref$features)
  expect_equal(nat$center, ref$center, tolerance = 1e-12)
  expect_equal(nat$scale, ref$scale, tolerance = 1e-12)
  expect_identical(nat$constant, ref$constant)
  expect_same_pcs(nat$pcs, ref$pcs, tol = tol)
}

test_that("the native recipe matches the R recipe on a simulated tissue", {
  sim <- SimulateSpatialTissue(n.rows = 30, n.cols = 30, n.genes = 400, seed = 3)
  args <- list(n.hvg = 150, min.spots = 20, min.counts = 10)
  ref <- do.call(reference_recipe, c(list(sim$counts), args, npcs = 30, seed = 7))
  nat <- do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7))
  expect_length(nat$features, 150)
  expect_same_recipe(nat, ref)
  # Every gene kept (fewer genes than n.hvg), and the exact-SVD branch.
  ref_all <- reference_recipe(sim$counts, 5000, 20, 10, npcs = 30, seed = 7)
  nat_all <- .preprocess_native(sim$counts, n.hvg = 5000, min.spots = 20,
                                min.counts = 10, npcs = 30, seed = 7)
  expect_gt(length(nat_all$features), 150)
  expect_same_recipe(nat_all, ref_all)
  # The same bits for 1 and 2 threads (the CPU kernels are deterministic and
  # libtorch runs single-threaded in the PCA), and when repeated.
  two <- do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7,
                                       n.threads = 2))
  expect_identical(two, nat)
  expect_identical(do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7)), nat)
})

test_that("the PCA's methods agree between the recipes, and the exact one with a dense SVD", {
  sim <- SimulateSpatialTissue(n.rows = 30, n.cols = 30, n.genes = 400, seed = 3)
  args <- list(n.hvg = 150, min.spots = 20, min.counts = 10)
  nat <- function(m, ...) {
    old <- options(SEDR.pca = m)
    on.exit(options(old))
    do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7, list(...)))
  }
  ref <- function(m) {
    old <- options(SEDR.pca = m)
    on.exit(options(old))
    do.call(reference_recipe, c(list(sim$counts), args, npcs = 30, seed = 7))
  }
  # The randomized SVD by sparse products and through the Gram matrix: the
  # same components, in either recipe, for 1 and 2 threads.
  sparse <- nat("sparse")
  gram <- nat("gram")
  expect_same_recipe(gram, sparse, tol = gram_tol)
  expect_same_recipe(gram, ref("gram"))
  expect_identical(nat("gram", n.threads = 2), gram)
  # The exact PCA: R's SVD of the dense z-scores (spots x genes).
  exact <- nat("exact")
  expect_same_recipe(exact, ref("exact"))
  z <- do.call(.preprocess_counts, c(list(sim$counts), args))$scaled
  sv <- svd(z, nu = 0, nv = 30)
  expect_equal(exact$pcs$sdev, sv$d[1:30] / sqrt(nrow(z) - 1), tolerance = 1e-10)
  expect_gt(min(abs(colSums(exact$pcs$loadings * sv$v))), 1 - 1e-8)
  expect_identical(nat("exact", n.threads = 2), exact)
  # The randomized SVD finds the leading components.
  expect_equal(gram$pcs$sdev[1:5], exact$pcs$sdev[1:5], tolerance = 1e-3)
  expect_error(nat("randomized"), class = "sedr_error_input", regexp = "SEDR.pca")
})

test_that("the log-normalised native recipe matches the R recipe", {
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 300, seed = 3)
  args <- list(n.hvg = 120, min.spots = 20, min.counts = 10)
  ref <- do.call(reference_recipe, c(list(sim$counts), args, npcs = 30, seed = 7, normalize = "log"))
  nat <- do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7, normalize = "log"))
  expect_same_recipe(nat, ref)
  # The same genes as the CPM recipe (chosen on the raw counts), other values.
  cpm <- do.call(.preprocess_native, c(list(sim$counts), args, npcs = 30, seed = 7))
  expect_identical(nat$features, cpm$features)
  expect_false(isTRUE(all.equal(nat$center, cpm$center)))
  # The R recipe's values are log1p(1e4 * counts / library size of the kept genes).
  kept <- .filter_genes(sim$counts, 20, 10)
  norm <- .normalize_counts(kept, how = "log")
  dense <- as.matrix(kept)
  want <- log1p(1e4 * sweep(dense, 2, colSums(dense), "/"))
  expect_equal(as.matrix(norm), want, tolerance = 1e-12)
  expect_equal(Matrix::nnzero(norm), Matrix::nnzero(kept))
})

test_that("RunSEDR(normalize =) is validated and recorded", {
  sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 4)
  expect_error(RunSEDR(sim$counts, coords = sim$coords, normalize = "LogNormalize", verbose = FALSE),
               class = "sedr_error_input", regexp = "normalize")
  expect_error(RunSEDR(sim$counts, coords = sim$coords, normalize = NA, verbose = FALSE),
               class = "sedr_error_input", regexp = "normalize")
  run <- function(normalize) {
    RunSEDR(sim$counts, coords = sim$coords, epochs = 3, dec = FALSE, n.hvg = 50, npcs = 10,
            min.spots = 5, device = "cpu", verbose = FALSE, normalize = normalize)
  }
  lg <- run("log")
  expect_identical(lg$params$normalize, "log")
  expect_identical(run("cpm")$params$normalize, "cpm")
  old <- options(SEDR.recipe = "r")
  on.exit(options(old))
  expect_equal(run("log")$embedding, lg$embedding, tolerance = 1e-5)
})

test_that("the native recipe treats stored zeros as the R recipe", {
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 200, seed = 5)
  x <- sim$counts
  # A stored zero (explicit zeros count as stored, not as detected).
  x@x[which(x@x > 0)[3]] <- 0
  ref <- reference_recipe(x, 60, 10, 10, npcs = 12, seed = 2)
  nat <- .preprocess_native(x, n.hvg = 60, min.spots = 10, min.counts = 10,
                            npcs = 12, seed = 2)
  expect_same_recipe(nat, ref)
})

test_that("the PCs made straight into the trainer's input train as R's PCs do", {
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 200, seed = 5)
  args <- list(sim$counts, n.hvg = 60, min.spots = 10, min.counts = 10, npcs = 12, seed = 2)
  graph <- BuildSpatialGraph(sim$coords[colnames(sim$counts), ], k.neighbors = 6)
  opts <- SEDROptions()
  fit <- function(handle) {
    tr <- sedr_trainer_new(handle, graph, mode = "clustering", epochs = 6, dec = TRUE,
                           options = modifyList(opts, list(dec.epochs = 4, dec.interval = 2)),
                           device = "cpu", n.threads = 1L, seed = 9L)
    sedr_train(tr, ncol(sim$counts), "clustering", 6, TRUE, modifyList(opts, list(dec.epochs = 4)), FALSE)
  }
  for (pca in c("gram", "sparse", "exact")) {
    old <- options(SEDR.pca = pca)
    r <- do.call(.preprocess_native, args)
    direct <- do.call(.preprocess_native, c(args, as.input = TRUE))
    options(old)
    expect_null(r$input)
    expect_null(direct$pcs$scores)
    expect_identical(direct$input.dims, 12L)
    expect_identical(direct$pcs$loadings, r$pcs$loadings)
    expect_identical(direct$pcs$sdev, r$pcs$sdev)
    a <- fit(sedr_trainer_input(r$pcs$scores))
    b <- fit(direct$input)
    expect_identical(b$embedding, a$embedding)
    expect_identical(b$q, a$q)
    expect_identical(b$losses, a$losses)
  }
  # A handle is used up by the trainer.
  direct <- do.call(.preprocess_native, c(args, as.input = TRUE))
  invisible(fit(direct$input))
  expect_error(fit(direct$input), "used already")
})

test_that("the native recipe rejects bad input with classed errors", {
  sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 120, seed = 1)
  x <- sim$counts
  x@x[1] <- -1
  expect_error(.preprocess_native(x, n.hvg = 20, min.spots = 5, npcs = 5),
               "negative", class = "sedr_error_input")
  x@x[1] <- NA
  expect_error(.preprocess_native(x, n.hvg = 20, min.spots = 5, npcs = 5),
               class = "sedr_error_input")
  expect_error(.preprocess_native(sim$counts, min.spots = 1e6, npcs = 5),
               "`features`", class = "sedr_error_input")
  expect_error(.preprocess_native(sim$counts, n.hvg = 0), "`n.hvg`")
  no_names <- sim$counts
  rownames(no_names) <- NULL
  expect_error(.preprocess_native(no_names), "row names", class = "sedr_error_input")
  # Malformed slots never reach the kernels.
  bad <- sim$counts
  bad@i[1] <- 10000L
  res <- .Call(wrap__sedr_recipe_stats, bad@p, bad@i, bad@x, nrow(bad), 0, 0, 1L)
  expect_null(res$ok)
  expect_identical(res$kind, "input")
})

test_that("RunSEDR gives the same embedding with the native and the R recipe", {
  sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 200, seed = 2)
  run <- function() {
    RunSEDR(sim$counts, coords = sim$coords, epochs = 5, dec = FALSE, n.hvg = 80,
            npcs = 20, min.spots = 5, device = "cpu", verbose = FALSE)
  }
  nat <- run()
  old <- options(SEDR.recipe = "r")
  on.exit(options(old))
  ref <- run()
  expect_identical(nat$features, ref$features)
  expect_equal(nat$embedding, ref$embedding, tolerance = 1e-5)
})

test_that("the native recipe matches the R recipe on DLPFC 151673", {
  roots <- c(Sys.getenv("SEDR_DATA"), test_path("..", "..", "..", "shared", "data"))
  dir <- file.path(roots[nzchar(roots)], "dlpfc_151673")
  dir <- dir[file.exists(file.path(dir, "counts.mtx.gz"))]
  skip_if(!length(dir), "DLPFC 151673 not available (../shared/data)")
  dir <- dir[1]
  counts <- methods::as(Matrix::readMM(gzfile(file.path(dir, "counts.mtx.gz"))), "CsparseMatrix")
  genes <- utils::read.delim(gzfile(file.path(dir, "genes.tsv.gz")))
  spots <- utils::read.delim(gzfile(file.path(dir, "spots.tsv.gz")))
  dimnames(counts) <- list(make.unique(as.character(genes[[1]])), spots[[1]])
  ref <- reference_recipe(counts, 2000, 50, 10, npcs = 200, seed = 11)
  nat <- .preprocess_native(counts, n.hvg = 2000, min.spots = 50, min.counts = 10,
                            npcs = 200, seed = 11, n.threads = 2)
  expect_length(nat$features, 2000)
  expect_same_recipe(nat, ref)
  ref_log <- reference_recipe(counts, 2000, 50, 10, npcs = 50, seed = 11, normalize = "log")
  nat_log <- .preprocess_native(counts, n.hvg = 2000, min.spots = 50, min.counts = 10,
                                npcs = 50, seed = 11, n.threads = 2, normalize = "log")
  expect_identical(nat_log$features, nat$features)
  expect_same_recipe(nat_log, ref_log)
  # The default takes the Gram matrix here; the sparse products give the
  # same components.
  old <- options(SEDR.pca = "sparse")
  on.exit(options(old))
  nat_sparse <- .preprocess_native(counts, n.hvg = 2000, min.spots = 50, min.counts = 10,
                                   npcs = 200, seed = 11)
  expect_same_recipe(nat_sparse, nat, tol = gram_tol)
})
