# SEDRClusters(refine =), SEDRClusters(n.clusters = <range> / NULL) and
# SEDRClustersPlot().

# A 10 x 10 square grid, queen neighbours (radius 1.5), two halves.
grid_case <- function() {
  xy <- as.matrix(expand.grid(x = 1:10, y = 1:10))
  rownames(xy) <- paste0("s", seq_len(nrow(xy)))
  truth <- ifelse(xy[, "x"] <= 5, "A", "B")
  list(xy = xy, truth = truth, graph = BuildSpatialGraph(xy, radius = 1.5))
}

test_that("refinement corrects a lone mislabeled spot and keeps a contiguous domain", {
  g <- grid_case()
  lone <- which(g$xy[, "x"] == 3 & g$xy[, "y"] == 5)
  # An embedding in which the lone spot looks like domain B: mclust puts it there.
  set.seed(5)
  side <- ifelse(g$truth == "A", 0, 10)
  side[lone] <- 10
  emb <- cbind(side + rnorm(100, sd = 0.5), rnorm(100, sd = 0.5))
  rownames(emb) <- rownames(g$xy)
  # A plain matrix without coordinates: the default refinement is skipped.
  raw <- SEDRClusters(emb, n.clusters = 2, graph = g$graph, verbose = FALSE)
  expect_identical(SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = g$xy, refine = 0, verbose = FALSE),
                   raw)
  expect_message(SEDRClusters(emb, n.clusters = 2, graph = g$graph), "not refined")
  expect_lt(unname(SpatialClusterMetrics(g$truth, raw)["ARI"]), 1)
  expect_false(raw[lone] == raw[which(g$truth == "A")[1]])
  ref <- SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = g$xy, refine = 1, verbose = FALSE)
  expect_equal(unname(SpatialClusterMetrics(g$truth, ref)["ARI"]), 1)
  expect_identical(names(ref), rownames(emb))
  # TRUE means one round; more rounds leave a clean two-domain map alone.
  expect_identical(SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = g$xy, verbose = FALSE), ref)
  expect_identical(SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = g$xy, refine = TRUE, verbose = FALSE), ref)
  expect_identical(SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = g$xy, refine = 5, verbose = FALSE), ref)
  # Coordinates are matched to the embedding by spot name.
  shuffled <- g$xy[rev(seq_len(nrow(g$xy))), ]
  expect_identical(SEDRClusters(emb, n.clusters = 2, graph = g$graph, coords = shuffled, verbose = FALSE), ref)
  # The border spots (5 of their 8 neighbours in their own half) are kept.
  clean <- factor(g$truth)
  names(clean) <- rownames(g$xy)
  expect_identical(SEDR:::refine_labels(clean, g$graph, 3), clean)
})

test_that("refinement votes among the refine.k nearest spots", {
  g <- grid_case()
  # A thin column (x = 5) of B in A: with the 4 nearest spots voting, its
  # spots keep B (2 of 4 B: a tie); with 18 (up to distance sqrt(5)) A wins.
  lab <- factor(ifelse(g$xy[, "x"] == 5, "B", "A"))
  names(lab) <- rownames(g$xy)
  near4 <- SEDR:::refine_neighbours(g$xy, 4)
  expect_true(all(Matrix::rowSums(near4) >= 4))
  near18 <- SEDR:::refine_neighbours(g$xy, 18)
  expect_true(all(Matrix::rowSums(near18) >= 18))
  mid <- which(g$xy[, "x"] == 5 & g$xy[, "y"] %in% 3:8)
  expect_true(all(SEDR:::refine_labels(lab, near4, 1)[mid] == "B"))
  expect_true(all(SEDR:::refine_labels(lab, near18, 1)[mid] == "A"))
  # SEDRClusters(refine.k =) votes among exactly these neighbours.
  set.seed(3)
  emb <- cbind(ifelse(g$xy[, "x"] <= 5, 0, 4) + rnorm(100), rnorm(100))
  rownames(emb) <- rownames(g$xy)
  raw <- SEDRClusters(emb, n.clusters = 2, refine = 0, verbose = FALSE)
  for (k in c(4, 18)) {
    expect_identical(SEDRClusters(emb, n.clusters = 2, coords = g$xy, refine.k = k, verbose = FALSE),
                     SEDR:::refine_labels(raw, SEDR:::refine_neighbours(g$xy, k), 1))
  }
  # More neighbours than spots: every other spot votes.
  expect_true(all(Matrix::rowSums(SEDR:::refine_neighbours(g$xy[1:4, ], 18)) == 3))
})

test_that("refinement votes within each section when sections share a coordinate frame", {
  g <- grid_case()
  # Two sections on the same grid (same coordinates), with mirrored halves.
  xy <- rbind(g$xy, g$xy)
  rownames(xy) <- c(paste0("a_", rownames(g$xy)), paste0("b_", rownames(g$xy)))
  sections <- rep(c("a", "b"), each = 100)
  near <- SEDR:::refine_neighbours(xy, 18, sections)
  expect_equal(sum(near[1:100, 101:200]), 0)
  expect_true(all(Matrix::rowSums(near) >= 18))
  # Without sections each spot's nearest include its twin in the other section.
  expect_gt(sum(SEDR:::refine_neighbours(xy, 18)[1:100, 101:200]), 0)
  truth <- c(g$truth, ifelse(g$truth == "A", "B", "A"))
  lab <- factor(truth)
  names(lab) <- rownames(xy)
  # Each section's clean halves survive a vote within the section ...
  expect_identical(SEDR:::refine_labels(lab, near, 1), lab)
  # ... and SEDRClusters() uses the sections stored with a result.
  set.seed(4)
  emb <- cbind(ifelse(truth == "A", 0, 6) + rnorm(200), rnorm(200))
  rownames(emb) <- rownames(xy)
  res <- structure(list(embedding = emb, coords = xy, sections = stats::setNames(sections, rownames(xy))),
                   class = "sedr_result")
  raw <- SEDRClusters(emb, n.clusters = 2, refine = 0, verbose = FALSE)
  expect_identical(SEDRClusters(res, n.clusters = 2, verbose = FALSE),
                   SEDR:::refine_labels(raw, near, 1))
  expect_equal(unname(SpatialClusterMetrics(truth, SEDRClusters(res, n.clusters = 2, verbose = FALSE))["ARI"]), 1)
})

test_that("refinement: a tie keeps the spot's own label, a majority does not", {
  a <- Matrix::sparseMatrix(i = c(1, 1, 1, 1), j = 2:5, x = 1, dims = c(6, 6), symmetric = TRUE)
  lab <- factor(c("C", "A", "A", "B", "B", "B"))
  out <- SEDR:::refine_labels(lab, a, 1)
  expect_identical(as.character(out[1]), "C")       # 2 A, 2 B: tie
  expect_identical(as.character(out[6]), "B")       # no neighbours
  expect_identical(as.character(out[2:5]), rep("C", 4))  # each has spot 1 as its only neighbour
  lab[5] <- "A"
  expect_identical(as.character(SEDR:::refine_labels(lab, a, 1)[1]), "A")  # 3 A, 1 B
})

sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 200, n.domains = 4, seed = 3)
res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 60, dec = FALSE, n.hvg = 150, npcs = 30,
               min.spots = 5, verbose = FALSE, device = "cpu", seed.use = 7)

test_that("a range of n.clusters with select = \"bic\" picks the true number by BIC and stores the curve", {
  # Four Gaussian domains in 2 dimensions (the case BIC is made for).
  set.seed(12)
  g <- rep(1:4, times = c(80, 60, 40, 20))
  centres <- matrix(c(0, 0, 12, 0, 0, 12, 12, 12), ncol = 2, byrow = TRUE)
  emb <- centres[g, ] + matrix(rnorm(400), 200)
  rownames(emb) <- paste0("s", 1:200)
  cl <- SEDRClusters(emb, n.clusters = 2:8, select = "bic", verbose = FALSE)
  curve <- attr(cl, "sedr_clusters_selection")
  expect_s3_class(curve, "data.frame")
  expect_identical(curve$k, 2:8)
  expect_true(all(c("k", "BIC", "loglik", "model", "chosen") %in% names(curve)))
  expect_equal(sum(curve$chosen), 1)
  expect_equal(curve$k[curve$chosen], 4L)
  expect_equal(nlevels(cl), 4L)
  expect_equal(curve$BIC[curve$chosen], max(curve$BIC))
  expect_equal(unname(SpatialClusterMetrics(g, cl)["ARI"]), 1)
  # BIC = 2 loglik - npar log(n), EEE in p = 2 dimensions (mclust's own value).
  expect_equal(curve$BIC, 2 * curve$loglik - ((curve$k - 1) + curve$k * 2 + 3) * log(200))
  ref <- mclust::mclustBIC(emb, G = 4, modelNames = "EEE", verbose = FALSE)
  expect_equal(curve$BIC[curve$k == 4], unname(ref[1, 1]), tolerance = 1e-4)
  # The chosen fit is the one a fixed number gives.
  fixed <- SEDRClusters(emb, n.clusters = 4, verbose = FALSE)
  expect_null(attr(fixed, "sedr_clusters_selection"))
  expect_identical(as.integer(cl), as.integer(fixed))
  expect_message(SEDRClusters(emb, n.clusters = 2:8, select = "bic", verbose = TRUE), "largest BIC")
  # NULL with BIC: the range 4:12; on an SEDR result the curve is stored the same way.
  all_k <- SEDRClusters(res, n.clusters = NULL, select = "bic", verbose = FALSE)
  expect_identical(attr(all_k, "sedr_clusters_selection")$k, 4:12)
  expect_true("BIC" %in% names(attr(all_k, "sedr_clusters_selection")))
  expect_equal(nlevels(all_k), with(attr(all_k, "sedr_clusters_selection"), k[chosen]))
})

test_that("n.clusters = NULL chooses among 4:12 by stability, cut to what the spots allow", {
  # The default: the range 4:12 and select = "stability", as given explicitly.
  auto <- SEDRClusters(res, n.clusters = NULL, verbose = FALSE)
  curve <- attr(auto, "sedr_clusters_selection")
  expect_identical(names(curve), c("k", "stability", "chosen"))
  expect_identical(curve$k, 4:12)
  expect_identical(auto, SEDRClusters(res, n.clusters = 4:12, select = "stability", verbose = FALSE))
  expect_message(SEDRClusters(res, n.clusters = NULL), "most stable across subsets among 4-12")
  # At most one domain per 10 spots: 60 spots choose among 4:6.
  set.seed(3)
  small <- matrix(rnorm(120), 60, dimnames = list(paste0("s", 1:60), NULL))
  expect_identical(attr(SEDRClusters(small, n.clusters = NULL, verbose = FALSE), "sedr_clusters_selection")$k, 4:6)
  expect_identical(attr(SEDRClusters(small, n.clusters = NULL, select = "bic", verbose = FALSE),
                        "sedr_clusters_selection")$k, 4:6)
  # Too few spots to choose from: a classed error that says to give the number.
  for (select in c("stability", "bic")) {
    expect_error(SEDRClusters(small[1:49, ], n.clusters = NULL, select = select, verbose = FALSE),
                 class = "sedr_error_input", regexp = "give the number of domains")
  }
})

test_that("select = \"stability\" keeps the number of domains that subsets of the spots agree on", {
  # Three round Gaussian domains at the corners of an equilateral triangle:
  # two domains would merge a different pair from one subset to the next,
  # four would split a different one; three come out the same every time.
  set.seed(21)
  g <- rep(1:3, each = 70)
  centres <- 10 * cbind(c(0, 1, 0.5), c(0, 0, sqrt(3) / 2))
  emb <- centres[g, ] + matrix(rnorm(420), 210)
  rownames(emb) <- paste0("s", 1:210)
  cl <- SEDRClusters(emb, n.clusters = 2:5, select = "stability", verbose = FALSE)
  curve <- attr(cl, "sedr_clusters_selection")
  expect_identical(names(curve), c("k", "stability", "chosen"))
  expect_identical(curve$k, 2:5)
  expect_equal(curve$k[curve$chosen], 3L)
  expect_equal(curve$stability[curve$chosen], 1)
  expect_true(all(curve$stability[curve$k != 3] < 1))
  # The chosen number fitted on all spots, as a fixed number gives it.
  expect_identical(as.integer(cl), as.integer(SEDRClusters(emb, n.clusters = 3, verbose = FALSE)))
  expect_equal(unname(SpatialClusterMetrics(g, cl)["ARI"]), 1)
  # Seeded: the same call gives the same curve, and R's generator is left as it was.
  set.seed(1)
  before <- .Random.seed
  again <- SEDRClusters(emb, n.clusters = 2:5, select = "stability", verbose = FALSE)
  expect_identical(.Random.seed, before)
  expect_identical(attr(again, "sedr_clusters_selection"), curve)
  expect_message(SEDRClusters(emb, n.clusters = 2:5, select = "stability"), "most stable")
  expect_s3_class(SEDRClustersPlot(cl), "ggplot")
  expect_identical(SEDRClustersPlot(cl)$labels$y, "stability (mean ARI between subsets)")
  # A single number ignores `select`; a bad value or a range beyond the subsets is a classed error.
  expect_identical(SEDRClusters(emb, n.clusters = 3, select = "stability", verbose = FALSE),
                   SEDRClusters(emb, n.clusters = 3, select = "bic", verbose = FALSE))
  expect_error(SEDRClusters(emb, n.clusters = 2:5, select = "gap", verbose = FALSE),
               class = "sedr_error_input", regexp = "select")
  expect_error(SEDRClusters(emb[1:10, ], n.clusters = 2:9, select = "stability", verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
})

test_that("select = \"stability\" keeps the finer of equally stable numbers", {
  # Two far-apart pairs of round domains: two domains (the pairs) and four
  # reproduce exactly on every subset; three and five do not.
  set.seed(5)
  g <- rep(1:4, each = 60)
  centres <- cbind(c(0, 4, 100, 104), 0)
  emb <- centres[g, ] + matrix(rnorm(480, sd = 0.4), 240)
  rownames(emb) <- paste0("s", 1:240)
  cl <- SEDRClusters(emb, n.clusters = 2:5, verbose = FALSE)
  curve <- attr(cl, "sedr_clusters_selection")
  expect_equal(curve$stability[curve$k %in% c(2, 4)], c(1, 1))
  expect_true(all(curve$stability[curve$k %in% c(3, 5)] < 1))
  expect_equal(curve$k[curve$chosen], 4L)
  expect_equal(unname(SpatialClusterMetrics(g, cl)["ARI"]), 1)
})

test_that("the curve is stored in a Seurat object and SEDRClustersPlot draws it", {
  cl <- SEDRClusters(res, n.clusters = 3:6, verbose = FALSE)
  p <- SEDRClustersPlot(cl)
  expect_s3_class(p, "ggplot")
  expect_identical(p$data$k, 3:6)
  expect_s3_class(SEDRClustersPlot(attr(cl, "sedr_clusters_selection")), "ggplot")
  expect_error(SEDRClustersPlot(SEDRClusters(res, n.clusters = 4, verbose = FALSE)),
               class = "sedr_error_input", regexp = "object")
  expect_error(SEDRClustersPlot(data.frame(a = 1)), class = "sedr_error_input", regexp = "object")

  obj <- SimulationToSeurat(sim)
  obj <- RunSEDR(obj, epochs = 20, dec = FALSE, n.hvg = 150, npcs = 30, min.spots = 5, verbose = FALSE,
                 device = "cpu")
  obj <- SEDRClusters(obj, n.clusters = 3:5, verbose = FALSE)
  curve <- SeuratObject::Misc(obj, "sedr_clusters_selection")
  expect_identical(curve$k, 3:5)
  expect_equal(nlevels(obj$sedr_clusters), curve$k[curve$chosen])
  expect_s3_class(SEDRClustersPlot(obj), "ggplot")
  # A fixed number afterwards clears the stale curve.
  obj <- SEDRClusters(obj, n.clusters = 4, verbose = FALSE)
  expect_null(SeuratObject::Misc(obj, "sedr_clusters_selection"))
})

test_that("the curve is stored in a SingleCellExperiment's metadata", {
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(assays = list(counts = sim$counts))
  SingleCellExperiment::reducedDim(sce, "SEDR") <- res$embedding
  methods::slot(sce, "metadata") <- list(SEDR = list(graph = res$graph))
  sce <- SEDRClusters(sce, n.clusters = 3:5, verbose = FALSE)
  curve <- methods::slot(sce, "metadata")$sedr_clusters_selection
  expect_identical(curve$k, 3:5)
  expect_s3_class(SEDRClustersPlot(sce), "ggplot")
})

test_that("bad n.clusters ranges and refine values are classed input errors", {
  bad_k <- list(c(1, 3), c(0, 5), c(2.5, 4), c(2, NA), "4:12", c(2, Inf))
  for (k in bad_k) {
    expect_error(SEDRClusters(res, n.clusters = k, verbose = FALSE), class = "sedr_error_input",
                 regexp = "n.clusters")
  }
  expect_error(SEDRClusters(res, n.clusters = c(2, nrow(res$embedding) + 1), verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  expect_error(SEDRClusters(res, n.clusters = 2:5, method = "louvain", verbose = FALSE),
               class = "sedr_error_input", regexp = "n.clusters")
  for (r in list(-1, 1.5, "yes", NA, c(1, 2), 1000)) {
    expect_error(SEDRClusters(res, n.clusters = 4, refine = r, verbose = FALSE), class = "sedr_error_input",
                 regexp = "refine")
  }
  # A plain matrix has no coordinates to refine over.
  expect_error(SEDRClusters(res$embedding, n.clusters = 4, refine = 1, verbose = FALSE),
               class = "sedr_error_input", regexp = "refine")
  expect_error(SEDRClusters(res$embedding, n.clusters = 4, refine = 1, coords = sim$coords[1:5, ],
                            verbose = FALSE), class = "sedr_error_input", regexp = "coords")
  expect_error(SEDRClusters(res$embedding, n.clusters = 4, coords = "xy", verbose = FALSE),
               class = "sedr_error_input", regexp = "coords")
  for (k in list(0, 2.5, NA, "18", c(6, 18))) {
    expect_error(SEDRClusters(res, n.clusters = 4, refine.k = k, verbose = FALSE), class = "sedr_error_input",
                 regexp = "refine.k")
  }
})

test_that("smooth.lambda blends each spot's embedding with its neighbours' mean before mclust", {
  g <- grid_case()
  set.seed(8)
  emb <- cbind(ifelse(g$truth == "A", 0, 3) + rnorm(100, sd = 1.2), rnorm(100))
  rownames(emb) <- rownames(g$xy)
  near <- SEDR:::refine_neighbours(g$xy, 18)
  # The blend, spot by spot: (1 - l) z_i + l * mean of its neighbours' z.
  blend <- SEDR:::blend_neighbour_mean(emb, near, 0.3)
  for (i in c(1, 45, 100)) {
    nb <- which(near[i, ] != 0)
    expect_false(i %in% nb)
    expect_equal(blend[i, ], 0.7 * emb[i, ] + 0.3 * colMeans(emb[nb, , drop = FALSE]))
  }
  expect_identical(dimnames(blend), dimnames(emb))
  expect_equal(SEDR:::blend_neighbour_mean(emb, near, 0), emb)
  # A spot without neighbours keeps its own embedding.
  lonely <- near
  lonely[1, ] <- 0
  lonely[, 1] <- 0
  expect_equal(SEDR:::blend_neighbour_mean(emb, Matrix::drop0(lonely), 0.5)[1, ], emb[1, ])
  # SEDRClusters() clusters exactly that blend (over smooth.k nearest spots).
  for (k in c(6, 18)) {
    pre <- SEDR:::blend_neighbour_mean(emb, SEDR:::refine_neighbours(g$xy, k), 0.3)
    expect_identical(SEDRClusters(emb, n.clusters = 2, coords = g$xy, smooth.lambda = 0.3, smooth.k = k,
                                  refine = 0, verbose = FALSE),
                     SEDRClusters(pre, n.clusters = 2, refine = 0, verbose = FALSE))
  }
  # The noisy halves: mclust on the embedding mislabels spots that the
  # blended embedding places in their own half.
  ari <- function(...) unname(SpatialClusterMetrics(g$truth, SEDRClusters(emb, n.clusters = 2, coords = g$xy,
                                                                          refine = 0, verbose = FALSE, ...))["ARI"])
  expect_lt(ari(), 0.9)
  expect_gt(ari(smooth.lambda = 0.5), ari() + 0.1)
})

test_that("smooth.lambda smooths within each section", {
  g <- grid_case()
  xy <- rbind(g$xy, g$xy)
  rownames(xy) <- c(paste0("a_", rownames(g$xy)), paste0("b_", rownames(g$xy)))
  sections <- rep(c("a", "b"), each = 100)
  set.seed(9)
  emb <- cbind(rep(c(0, 50), each = 100) + rnorm(200), rnorm(200))
  rownames(emb) <- rownames(xy)
  res <- structure(list(embedding = emb, coords = xy, sections = stats::setNames(sections, rownames(xy))),
                   class = "sedr_result")
  within <- SEDR:::blend_neighbour_mean(emb, SEDR:::refine_neighbours(xy, 18, sections), 0.4)
  # Twins in the other section (50 apart) would pull the first coordinate by ~20.
  expect_lt(max(abs(within[, 1] - rep(c(0, 50), each = 100))), 5)
  expect_identical(SEDRClusters(res, n.clusters = 3, smooth.lambda = 0.4, refine = 0, verbose = FALSE),
                   stats::setNames(SEDRClusters(within, n.clusters = 3, refine = 0, verbose = FALSE), rownames(xy)))
})

test_that("bad smooth.lambda and smooth.k values are classed input errors", {
  for (l in list(-0.1, 1, 2, NA, "0.2", c(0.1, 0.2))) {
    expect_error(SEDRClusters(res, n.clusters = 4, smooth.lambda = l, verbose = FALSE), class = "sedr_error_input",
                 regexp = "smooth.lambda")
  }
  for (k in list(0, 2.5, NA, "18", c(6, 18))) {
    expect_error(SEDRClusters(res, n.clusters = 4, smooth.lambda = 0.2, smooth.k = k, verbose = FALSE),
                 class = "sedr_error_input", regexp = "smooth.k")
  }
  # A plain matrix has no coordinates; the DEC assignment has no embedding to smooth.
  expect_error(SEDRClusters(res$embedding, n.clusters = 4, smooth.lambda = 0.2, refine = 0, verbose = FALSE),
               class = "sedr_error_input", regexp = "smooth.lambda")
  expect_error(SEDRClusters(res, method = "dec", smooth.lambda = 0.2, verbose = FALSE),
               class = "sedr_error_input", regexp = "smooth.lambda")
})

# The vote as a sparse product in R: an independent reference for the Rust one.
vote_reference <- function(labels, graph, rounds) {
  a <- methods::as(graph, "CsparseMatrix")
  a <- methods::as(a + Matrix::t(a), "generalMatrix")
  a@x <- rep(1, length(a@x))
  Matrix::diag(a) <- 0
  a <- Matrix::drop0(a)
  lab <- as.integer(labels)
  n <- length(lab)
  for (r in seq_len(rounds)) {
    votes <- as.matrix(a %*% Matrix::sparseMatrix(i = seq_len(n), j = lab, x = 1, dims = c(n, nlevels(labels))))
    best <- max.col(votes, ties.method = "first")
    top <- votes[cbind(seq_len(n), best)]
    lab <- ifelse(rowSums(votes == top) > 1 | top == 0, lab, best)
  }
  unname(lab)
}

test_that("the vote matches a sparse-product reference, with ties, rounds and sections", {
  set.seed(11)
  n <- 600
  xy <- cbind(x = runif(n), y = runif(n))
  rownames(xy) <- paste0("s", seq_len(n))
  sections <- rep(c("a", "b", "c"), length.out = n)
  # Few labels and few neighbours: many ties.
  lab <- factor(sample(c("p", "q", "r", "s"), n, replace = TRUE), levels = c("p", "q", "r", "s", "unused"))
  names(lab) <- rownames(xy)
  for (k in c(3, 4, 10)) for (rounds in c(1, 3)) for (sec in list(NULL, sections)) {
    near <- SEDR:::refine_neighbours(xy, k, sec)
    want <- vote_reference(lab, near, rounds)
    got <- SEDR:::refine_labels_nearest(lab, xy, k, sec, rounds)
    expect_identical(as.integer(factor(as.character(got), levels = levels(lab))), want)
    expect_identical(SEDR:::refine_labels(lab, near, rounds), got)
    expect_identical(names(got), names(lab))
    expect_identical(levels(got), levels(lab)[sort(unique(want))])
  }
  # An asymmetric graph votes as its symmetrised pattern; self loops do not vote.
  g <- Matrix::sparseMatrix(i = c(1, 1, 2, 3, 3), j = c(2, 3, 2, 4, 1), x = 1, dims = c(4, 4))
  l4 <- factor(c("x", "y", "y", "x"))
  expect_identical(as.integer(SEDR:::refine_labels(l4, g, 1)), vote_reference(l4, g, 1))
  # The native vote takes 1-based codes: NA (INT_MIN) and 0 are input errors, not wrapped codes.
  for (bad in list(c(1L, NA_integer_, 2L, 1L), c(1L, 0L, 2L, 1L))) {
    expect_error(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_vote_graph, g@p, g@i, bad, 1L, 1L)),
                 class = "sedr_error_input", regexp = "labels")
  }
})

test_that("the rows of the smoothed start and the blockwise prediction equal the whole computation", {
  set.seed(12)
  n <- 500
  xy <- cbind(x = runif(n), y = runif(n))
  g <- BuildSpatialGraph(xy, k.neighbors = 6)
  emb <- matrix(rnorm(n * 10), n, 10, dimnames = list(paste0("s", 1:n), paste0("d", 1:10)))
  rows <- sort(sample.int(n, 120))
  expect_identical(SEDR:::smooth_rows(emb, g, rows), SEDR:::smooth_embedding(emb, g, 1)[rows, ])
  start <- SEDR:::smoothed_start(emb, g, 0.5)
  expect_identical(start(rows), (0.5 * emb + 0.5 * SEDR:::smooth_embedding(emb, g, 1))[rows, ])
  expect_identical(start(), 0.5 * emb + 0.5 * SEDR:::smooth_embedding(emb, g, 1))
  fit <- SEDR:::mclust_fit(emb, 4, "EEE")
  whole <- mclust::map(SEDR:::eee_estep(emb, fit)$z)
  expect_identical(SEDR:::predict_mixture(emb, fit, block = 37L), whole)
  expect_identical(SEDR:::predict_mixture(emb, fit), whole)
  # Above max.fit the fitted sample's start comes from those rows alone.
  small <- SEDR:::cluster_mclust(emb, 4, 1, NULL, FALSE, init = start, max.fit = 200L)
  expect_length(small, n)
  expect_setequal(levels(small), as.character(1:4))
})
