# SEDRClusters(): mclust (with its fallbacks), leiden/louvain and DEC labels.

tiny_opts <- function() SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2)

sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 30, n.hvg = 100, npcs = 20,
               min.spots = 5, verbose = FALSE, device = "cpu", options = tiny_opts())
n_spots <- ncol(sim$counts)

# Two well-separated groups in the first coordinate, with exactly degenerate
# columns: a duplicate of the first and a constant. mclust's EEE model has a
# singular covariance here and returns NULL.
degenerate_embedding <- function(n = 60) {
  set.seed(11)
  a <- c(rnorm(n / 2, 0), rnorm(n / 2, 6))
  b <- rnorm(n)
  emb <- cbind(a, a, 1, b)
  rownames(emb) <- paste0("s", seq_len(n))
  emb
}

test_that("mclust on a sedr_result gives one label per spot", {
  cl <- SEDRClusters(res, n.clusters = 5, verbose = FALSE)
  expect_true(is.factor(cl))
  expect_length(cl, n_spots)
  expect_identical(names(cl), rownames(res$embedding))
  expect_false(anyNA(cl))
  expect_lte(nlevels(cl), 5)
  expect_gte(nlevels(cl), 2)
  # Same seed, same labels; the user's RNG stream is left alone.
  set.seed(99)
  before <- stats::runif(1)
  set.seed(99)
  cl2 <- SEDRClusters(res, n.clusters = 5, verbose = FALSE)
  after <- stats::runif(1)
  expect_identical(cl, cl2)
  expect_identical(before, after)
  expect_message(SEDRClusters(res, n.clusters = 5, verbose = TRUE), "mclust EEE")
})

test_that("mclust on a plain matrix works, also with a subset initialisation", {
  emb <- res$embedding
  cl <- SEDRClusters(emb, n.clusters = 4, verbose = FALSE)
  expect_length(cl, nrow(emb))
  expect_identical(names(cl), rownames(emb))
  expect_lte(nlevels(cl), 4)
  # Without a graph the matrix's mclust start is the embedding itself, as
  # init.smooth = 0 on the sedr_result; with the graph the two agree as well.
  # (A matrix has no coordinates, so no refinement either.)
  expect_identical(cl, SEDRClusters(res, n.clusters = 4, init.smooth = 0, refine = 0, verbose = FALSE))
  expect_identical(SEDRClusters(emb, n.clusters = 4, graph = res$graph, verbose = FALSE),
                   SEDRClusters(res, n.clusters = 4, refine = 0, verbose = FALSE))
  expect_identical(SEDRClusters(emb, n.clusters = 4, graph = res$graph, coords = res$coords, verbose = FALSE),
                   SEDRClusters(res, n.clusters = 4, verbose = FALSE))
  sub <- SEDRClusters(emb, n.clusters = 4, mclust.init.size = 80, verbose = FALSE)
  expect_length(sub, nrow(emb))
  expect_false(anyNA(sub))
  # A clean two-group matrix is recovered exactly.
  set.seed(3)
  two <- rbind(matrix(rnorm(60, 0), 30), matrix(rnorm(60, 8), 30))
  rownames(two) <- paste0("p", 1:60)
  lab <- SEDRClusters(two, n.clusters = 2, verbose = FALSE)
  expect_equal(unname(SpatialClusterMetrics(rep(1:2, each = 30), lab)["ARI"]), 1)
})

test_that("SEDR's EEE EM reproduces mclust::me(modelName = \"EEE\")", {
  # Three overlapping, correlated 5-d components (so EM needs many
  # iterations) plus one tiny-scale column, as in SEDR embeddings.
  set.seed(21)
  n <- 600
  g <- sample(1:3, n, replace = TRUE)
  a <- matrix(c(1, 0.6, 0, 0, 0.6, 1, 0.3, 0, 0, 0.3, 1, 0.2, 0, 0, 0.2, 1), 4)
  x <- matrix(rnorm(n * 4), n) %*% chol(a) + cbind(c(0, 1.5, 3)[g], c(0, -1, 1)[g], 0, 0)
  x <- cbind(x, 1e-4 * (rnorm(n) + g))
  z <- mclust::unmap(stats::kmeans(x, 3)$cluster)
  ref <- mclust::meEEE(x, z = z)
  ours <- SEDR:::em_eee(x, z)
  expect_gt(ours$iterations, 5)
  expect_equal(ours$iterations, unname(attr(ref, "info")[1]))
  expect_equal(ours$loglik, ref$loglik, tolerance = 1e-10)
  expect_equal(ours$z, ref$z, tolerance = 1e-8, ignore_attr = TRUE)
  expect_equal(ours$mean, ref$parameters$mean, tolerance = 1e-8, ignore_attr = TRUE)
  expect_equal(crossprod(ours$cholSigma), ref$parameters$variance$Sigma, tolerance = 1e-8, ignore_attr = TRUE)
  expect_identical(mclust::map(ours$z), mclust::map(ref$z))
  # mclust's failure rules: an empty component, a singular covariance.
  expect_null(SEDR:::em_eee(x, cbind(z, 0)))
  expect_null(SEDR:::em_eee(cbind(x, x[, 1]), z))
})

test_that("a NULL EEE fit falls back with a sedr_warning_mclust and labels every spot", {
  emb <- degenerate_embedding()
  # The guard is needed: mclust itself gives no EEE fit on this embedding.
  raw <- tryCatch(suppressWarnings(mclust::Mclust(emb, G = 2, modelNames = "EEE", verbose = FALSE)),
                  error = function(e) NULL)
  expect_null(raw)
  expect_warning(cl <- SEDRClusters(emb, n.clusters = 2, verbose = FALSE),
                 class = "sedr_warning_mclust", regexp = "principal directions")
  expect_length(cl, nrow(emb))
  expect_false(anyNA(cl))
  expect_identical(names(cl), rownames(emb))
  # EEE is affine-invariant, so the fallback still finds the two groups.
  expect_equal(unname(SpatialClusterMetrics(rep(1:2, each = 30), cl)["ARI"]), 1)

  # Exactly collinear columns (no duplicate, no constant) hit the same guard.
  col <- cbind(emb[, 1], 2 * emb[, 1] + 1, emb[, 4], emb[, 1] - emb[, 4])
  rownames(col) <- rownames(emb)
  expect_warning(cl2 <- SEDRClusters(col, n.clusters = 2, verbose = FALSE), class = "sedr_warning_mclust")
  expect_length(cl2, nrow(col))
  expect_false(anyNA(cl2))
})

test_that("when no mclust model fits, k-means labels every spot with a warning", {
  # Three distinct positions only, all on one line: every mclust model is
  # singular, so the labels come from k-means.
  emb <- matrix(1, 60, 3, dimnames = list(paste0("s", 1:60), NULL))
  emb[, 1] <- emb[, 2] <- rep(1:3, 20)
  expect_warning(cl <- SEDRClusters(emb, n.clusters = 3, verbose = FALSE),
                 class = "sedr_warning_mclust", regexp = "k-means")
  expect_length(cl, 60)
  expect_false(anyNA(cl))
  expect_equal(unname(SpatialClusterMetrics(rep(1:3, 20), cl)["ARI"]), 1)
})

test_that("method = 'dec' needs a DEC run", {
  cl <- SEDRClusters(res, method = "dec", verbose = FALSE)
  expect_true(is.factor(cl))
  expect_length(cl, n_spots)
  expect_identical(names(cl), rownames(res$embedding))
  expect_equal(as.integer(as.character(cl)), max.col(res$dec.q, ties.method = "first"))
  expect_lte(nlevels(cl), tiny_opts()$dec.clusters)
  # n.clusters is not needed (nor checked) for DEC.
  expect_identical(SEDRClusters(res, n.clusters = 1, method = "dec", verbose = FALSE), cl)

  no_dec <- RunSEDR(sim$counts, coords = sim$coords, epochs = 10, dec = FALSE, n.hvg = 100,
                    npcs = 20, min.spots = 5, verbose = FALSE, device = "cpu", options = tiny_opts())
  expect_null(no_dec$dec.q)
  expect_error(SEDRClusters(no_dec, method = "dec", verbose = FALSE),
               class = "sedr_error_input", regexp = "dec")
  expect_error(SEDRClusters(res$embedding, method = "dec", verbose = FALSE),
               class = "sedr_error_input", regexp = "method")
})

test_that("invalid n.clusters, objects and arguments are input errors", {
  expect_error(SEDRClusters(res, n.clusters = 1, verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  expect_error(SEDRClusters(res, n.clusters = 0, verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  expect_error(SEDRClusters(res, n.clusters = n_spots + 1, verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  expect_error(SEDRClusters(res, n.clusters = 2.5, verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  expect_error(SEDRClusters(res, verbose = FALSE), regexp = "n.clusters")
  bad <- res$embedding
  bad[2, 3] <- NA
  expect_error(SEDRClusters(bad, n.clusters = 3, verbose = FALSE),
               class = "sedr_error_input", regexp = "object")
  expect_error(SEDRClusters(list(1, 2), n.clusters = 3, verbose = FALSE),
               class = "sedr_error_input", regexp = "object")
  expect_error(SEDRClusters(res, n.clusters = 3, verbose = FALSE, ncluster = 3),
               class = "sedr_error_input", regexp = "unknown argument")
  expect_error(SEDRClusters(res, n.clusters = 3, method = "hdbscan", verbose = FALSE))
})

test_that("Seurat objects: labels in meta.data; a missing reduction is an error", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  expect_error(SEDRClusters(obj, n.clusters = 3, verbose = FALSE),
               class = "sedr_error_input", regexp = "reduction")
  obj[["sedr"]] <- SeuratObject::CreateDimReducObject(
    embeddings = `colnames<-`(res$embedding, paste0("SEDR_", 1:32)), key = "SEDR_",
    assay = "Spatial", misc = list(dec.q = res$dec.q, graph = res$graph, coords = res$coords)
  )
  out <- SEDRClusters(obj, n.clusters = 5, verbose = FALSE)
  expect_identical(unname(out$sedr_clusters), unname(SEDRClusters(res, n.clusters = 5, verbose = FALSE)))
  dec <- SEDRClusters(obj, method = "dec", col.name = "dec", verbose = FALSE)
  expect_identical(unname(dec$dec), unname(SEDRClusters(res, method = "dec", verbose = FALSE)))
})

test_that("louvain and leiden hit the requested number of clusters", {
  skip_if_not_installed("Seurat")
  for (k in c(3, 5)) {
    cl <- SEDRClusters(res, n.clusters = k, method = "louvain", verbose = FALSE)
    expect_length(cl, n_spots)
    expect_identical(names(cl), rownames(res$embedding))
    expect_equal(nlevels(cl), k)
    expect_false(anyNA(cl))
  }
  # Leiden needs the Python leidenalg module in Seurat 4.
  leiden_ok <- tryCatch({
    Seurat::FindClusters(Seurat::FindNeighbors(res$embedding[, 1:5], verbose = FALSE)$snn,
                         algorithm = 4, verbose = FALSE)
    TRUE
  }, error = function(e) FALSE)
  skip_if_not(leiden_ok, "Leiden is not available (leidenalg)")
  cl <- SEDRClusters(res, n.clusters = 4, method = "leiden", verbose = FALSE)
  expect_equal(nlevels(cl), 4)
  expect_length(cl, n_spots)
})

test_that("clusters after a short run agree with the simulated domains", {
  cl <- SEDRClusters(res, n.clusters = nlevels(sim$domain), verbose = FALSE)
  m <- SpatialClusterMetrics(sim$domain, cl)
  expect_true(is.finite(m[["ARI"]]))
  expect_gt(m[["ARI"]], 0)
  expect_lte(m[["ARI"]], 1)
})

test_that("smooth averages the embedding over the stored spatial graph", {
  A <- BuildSpatialGraph(sim$coords, k.neighbors = 6)
  emb <- res$embedding
  # One step by hand: each spot's mean over itself and its neighbours.
  s1 <- SEDR:::smooth_embedding(emb, A, 1)
  i <- 17
  nb <- c(i, which(A[i, ] != 0))
  expect_equal(unname(s1[i, ]), unname(colMeans(emb[nb, , drop = FALSE])))
  expect_identical(dimnames(s1), dimnames(emb))
  # sedr_result carries its graph; a plain matrix needs `graph`.
  cl_res <- SEDRClusters(res, n.clusters = 4, smooth = 2, verbose = FALSE)
  cl_mat <- SEDRClusters(emb, n.clusters = 4, smooth = 2, graph = res$graph, coords = res$coords, verbose = FALSE)
  expect_identical(cl_res, cl_mat)
  expect_false(identical(cl_res, SEDRClusters(res, n.clusters = 4, verbose = FALSE)))
  expect_error(SEDRClusters(emb, n.clusters = 4, smooth = 1, verbose = FALSE), class = "sedr_error_input", regexp = "`smooth`")
  expect_error(SEDRClusters(emb, n.clusters = 4, smooth = 1, graph = A[1:10, 1:10], verbose = FALSE),
               class = "sedr_error_input", regexp = "`graph`")
  expect_error(SEDRClusters(res, n.clusters = 4, smooth = -1, verbose = FALSE), class = "sedr_error_input", regexp = "`smooth`")
  expect_error(SEDRClusters(res, n.clusters = 4, smooth = 1.5, verbose = FALSE), class = "sedr_error_input", regexp = "`smooth`")
})

test_that("init.smooth smooths mclust's start only; the EM fits the embedding itself", {
  emb <- res$embedding
  for (w in c(0.5, 1)) {
    init <- (1 - w) * emb + w * SEDR:::smooth_embedding(emb, res$graph, 1)
    # The same seeded start and EM by hand: hc of the smoothed embedding,
    # then EEE EM on the unsmoothed one.
    set.seed(2023)
    fit <- SEDR:::mclust_fit(emb, 4, "EEE", init = init)
    cl <- SEDRClusters(res, n.clusters = 4, init.smooth = w, refine = 0, verbose = FALSE)
    expect_identical(as.integer(as.character(cl)), as.integer(mclust::map(fit$z)))
    # The fit is a converged EM on the raw embedding: restarting it there
    # keeps the labels.
    expect_identical(mclust::map(SEDR:::em_eee(emb, fit$z)$z), mclust::map(fit$z))
  }
  # The start is built from the smoothed rows: hc of the raw and of the
  # fully smoothed embedding cut into 4 groups differ on this tissue.
  hc_cut <- function(x) mclust::hclass(mclust::hc(x, modelName = "VVV", use = "SVD"), 4)[, 1]
  expect_false(identical(hc_cut(emb), hc_cut(SEDR:::smooth_embedding(emb, res$graph, 1))))
  expect_error(SEDRClusters(res, n.clusters = 4, init.smooth = -1, verbose = FALSE), class = "sedr_error_input",
               regexp = "`init.smooth`")
  expect_error(SEDRClusters(res, n.clusters = 4, init.smooth = 1.5, verbose = FALSE), class = "sedr_error_input",
               regexp = "`init.smooth`")
  expect_error(SEDRClusters(res, n.clusters = 4, init.smooth = NA_real_, verbose = FALSE), class = "sedr_error_input",
               regexp = "`init.smooth`")
  expect_error(SEDRClusters(emb, n.clusters = 4, graph = res$graph[1:10, 1:10], verbose = FALSE),
               class = "sedr_error_input", regexp = "`graph`")
})

test_that("the default start recovers cleanly separated domains exactly", {
  # The demo's tissue: SEDR separates its five domains, and mclust must not
  # lose the spots along domain borders. A start from the full neighbourhood
  # mean (init.smooth = 1) put them in the wrong domain here (ARI 0.83).
  big <- SimulateSpatialTissue(n.rows = 40, n.cols = 40, n.genes = 1000, n.domains = 5, seed = 7)
  fit <- RunSEDR(big$counts, coords = big$coords, min.spots = 10, device = "cpu", n.threads = 2, verbose = FALSE)
  ari <- function(...) SpatialClusterMetrics(big$domain, SEDRClusters(fit, n.clusters = 5, verbose = FALSE, ...))[["ARI"]]
  expect_gt(ari(refine = 0), 0.99)
  expect_gt(ari(init.smooth = 0, refine = 0), 0.99)
  # The default refinement (a vote of the 18 nearest spots) then rounds off
  # the domains' corners: measured 0.980 here (bench/README.md).
  expect_gt(ari(), 0.97)
})

test_that("mclust's start merges up from k-means groups above 4 x the groups, from single spots below", {
  # Structureless data, so that the two starts end in different EM optima
  # and the test sees which one was taken.
  set.seed(5)
  n <- 600
  emb <- matrix(rnorm(n * 3), n, 3)
  start_by_hand <- function(x, partition) {
    h <- if (is.null(partition)) mclust::hc(x, modelName = "VVV", use = "SVD")
         else mclust::hc(x, modelName = "VVV", use = "SVD", partition = partition)
    SEDR:::em_eee(x, mclust::unmap(mclust::hclass(h, 3)[, 1]))
  }
  # 600 spots > 4 x 100 groups: hc merges up from a seeded k-means partition.
  set.seed(7)
  fit <- SEDR:::mclust_fit(emb, 3, "EEE")
  set.seed(7)
  part <- suppressWarnings(stats::kmeans(emb, centers = 100, iter.max = 30)$cluster)
  by_groups <- start_by_hand(emb, part)
  by_spots <- start_by_hand(emb, NULL)
  expect_false(isTRUE(all.equal(by_groups$loglik, by_spots$loglik)))
  expect_equal(fit$loglik, by_groups$loglik)
  expect_identical(mclust::map(fit$z), mclust::map(by_groups$z))
  # 400 spots = 4 x 100 groups: hc merges up from single spots, as Mclust().
  small <- emb[1:400, ]
  set.seed(7)
  fit_small <- SEDR:::mclust_fit(small, 3, "EEE")
  expect_equal(fit_small$loglik, start_by_hand(small, NULL)$loglik)
  expect_identical(mclust::map(fit_small$z), mclust::map(start_by_hand(small, NULL)$z))
})

test_that("mclust's start merges by VII from 12 dimensions on, where its tree is VVV's, and by VVV below", {
  set.seed(1)
  centers <- matrix(rnorm(4 * 32, sd = 3), 4)
  emb <- centers[rep(1:4, each = 150), ] + matrix(rnorm(600 * 32), 600)
  set.seed(7)
  part <- stats::kmeans(emb, centers = 100, iter.max = 30)$cluster
  tree <- function(x, model) unclass(mclust::hc(x, modelName = model, use = "SVD", partition = part))[1:2, ]
  # The reason VII may stand in for VVV: in 32 dimensions the two build the
  # same tree, merge by merge; in 2 they do not.
  expect_identical(tree(emb, "VII"), tree(emb, "VVV"))
  expect_false(identical(tree(emb[, 1:2], "VII"), tree(emb[, 1:2], "VVV")))
  # Which worker mclust_fit() calls: hc() calls it from the package's frame,
  # so tracing the package's imported copies records it.
  ns <- asNamespace("SEDR")
  rec <- new.env()
  note <- function(model) bquote(assign("used", c(get("used", envir = .(rec)), .(model)), envir = .(rec)))
  suppressMessages({
    trace("hcVII", tracer = note("VII"), where = ns, print = FALSE)
    trace("hcVVV", tracer = note("VVV"), where = ns, print = FALSE)
  })
  on.exit(suppressMessages({
    untrace("hcVII", where = ns)
    untrace("hcVVV", where = ns)
  }), add = TRUE)
  for (p in c(32L, 12L, 11L, 3L)) {
    rec$used <- character()
    set.seed(7)
    expect_false(is.null(SEDR:::mclust_fit(emb[, seq_len(p)], 4, "EEE")))
    expect_identical(rec$used, if (p >= 12L) "VII" else "VVV", info = paste(p, "dimensions"))
  }
})

test_that("fits of several numbers share one k-means partition and tree, with the results of separate fits", {
  set.seed(2)
  centers <- matrix(rnorm(6 * 16, sd = 3), 6)
  emb <- centers[rep(1:6, each = 100), ] + matrix(rnorm(600 * 16), 600)
  ns <- asNamespace("SEDR")
  calls <- new.env()
  calls$n <- 0L
  suppressMessages(trace("kmeans", tracer = bquote(assign("n", get("n", envir = .(calls)) + 1L, envir = .(calls))),
                         where = asNamespace("stats"), print = FALSE))
  on.exit(suppressMessages(untrace("kmeans", where = asNamespace("stats"))), add = TRUE)
  # 600 spots > 4 x 100 groups: the start merges up from a k-means partition,
  # the same one (100 groups) for every G up to 10.
  cache <- new.env()
  shared <- lapply(4:6, function(G) ns$cluster_mclust(emb, G, 11, NULL, FALSE, cache = cache))
  expect_identical(calls$n, 1L)
  expect_length(grep("^kmeans/", ls(cache)), 1)
  calls$n <- 0L
  separate <- lapply(4:6, function(G) ns$cluster_mclust(emb, G, 11, NULL, FALSE))
  expect_identical(calls$n, 3L)
  expect_identical(shared, separate)
  # A reused partition leaves R's generator where drawing it would have.
  fresh <- new.env()
  draw <- function(cache) {
    set.seed(3)
    p <- ns$kmeans_partition(emb, 100L, cache)
    list(p, stats::runif(2))
  }
  first <- draw(fresh)
  expect_identical(draw(fresh), first)
  expect_identical(draw(NULL), first)
})
