# Multi-section integration: RunSEDR(group.by = , integrate = ) mixes
# sections (R/mixing.R; sections with different genes: test-sections.R); SEDRIntegration() is the IntegrateLayers() method for
# Seurat 5, called here directly with what IntegrateLayers() would pass
# (Seurat 4 has no IntegrateLayers, so the call itself cannot be tested on
# this machine); RunSEDRHarmony() is the bridge to the harmony package.

# Two sections of one simulated tissue; the second with half the depth, a
# per-gene scale and offset (a batch shift) and fewer columns.
shifted_sections <- function() {
  a <- SimulateSpatialTissue(n.rows = 14, n.cols = 14, n.genes = 200, n.domains = 3,
                             markers.per.domain = 15, depth = 2000, seed = 1)
  b <- SimulateSpatialTissue(n.rows = 14, n.cols = 14, n.genes = 200, n.domains = 3,
                             markers.per.domain = 15, depth = 1000, seed = 1)
  keep <- b$coords[, "x"] < 1100
  set.seed(7)
  mu <- as.matrix(b$counts[, keep]) * exp(rnorm(200, 0, 0.5)) + 0.3 * Matrix::rowMeans(b$counts)
  mb <- Matrix::Matrix(matrix(rpois(length(mu), mu), nrow(mu), dimnames = dimnames(mu)), sparse = TRUE)
  colnames(mb) <- paste0("b_", colnames(mb))
  xy_b <- b$coords[keep, ]
  rownames(xy_b) <- colnames(mb)
  list(counts = cbind(a$counts, methods::as(mb, "CsparseMatrix")), coords = rbind(a$coords, xy_b),
       section = rep(c("a", "b"), c(ncol(a$counts), ncol(mb))),
       domain = c(as.character(a$domain), as.character(b$domain[keep])))
}
sec <- shifted_sections()

run_mix <- function(integrate = "mnn", ...) {
  RunSEDR(sec$counts, coords = sec$coords, group.by = sec$section, integrate = integrate, epochs = 40,
          n.hvg = 150, npcs = 20, min.spots = 5, device = "cpu", n.threads = 1, verbose = FALSE, ...)
}
median_ilisi <- function(res) median(ComputeLISI(res$embedding, sec$section, perplexity = 15)[[1]])

test_that("integrate = \"mnn\" mixes shifted sections that the block-diagonal model keeps apart", {
  none <- run_mix("none")
  mnn <- run_mix("mnn")
  expect_true(is.na(none$params$mnn.pairs))
  expect_gt(mnn$params$mnn.pairs, 50)
  expect_identical(mnn$params$integrate, "mnn")
  expect_lt(median_ilisi(none), 1.2)
  expect_gt(median_ilisi(mnn), median_ilisi(none) + 0.4)
  # The domains stay apart: each spot's neighbourhood is mostly one domain.
  expect_lt(median(ComputeLISI(mnn$embedding, sec$domain, perplexity = 15)[[1]]), 1.3)
  # The returned graph is the spatial one: still no edge across sections.
  e <- Matrix::summary(mnn$graph)
  expect_false(any(sec$section[e$i] != sec$section[e$j]))
  # The sections are stored by spot, so the joint domains are refined within
  # each section.
  expect_identical(unname(mnn$sections), sec$section)
  expect_identical(names(mnn$sections), rownames(mnn$embedding))
})

test_that("the same seed gives an identical integrated embedding", {
  one <- run_mix(seed.use = 3)
  two <- run_mix(seed.use = 3)
  expect_identical(one$embedding, two$embedding)
  expect_false(isTRUE(all.equal(one$embedding, run_mix(seed.use = 4)$embedding)))
})

test_that("the MNN correction moves a shifted copy of a section onto it", {
  set.seed(1)
  x <- matrix(rnorm(60 * 5), 60)
  group_int <- rep(0:1, c(60, 40))
  # Section 1: a subset of section 0, shifted; centred per section, as RunSEDR does.
  both <- SEDR:::center_by_section(rbind(x, x[1:40, ] + 3), group_int)
  graph <- Matrix::sparseMatrix(i = integer(), j = integer(), x = numeric(), dims = c(100, 100))
  out <- SEDR:::correct_sections(both, group_int, graph, k = 1, dims = 5, smooth = 0)
  # With k = 1 the pairs are the copies themselves, so the correction moves
  # every copy exactly onto its original.
  expect_equal(out$pairs, 40L)
  expect_equal(out$x[61:100, ], both[1:40, ])
  expect_identical(out$x[1:60, ], both[1:60, ])   # the largest section is the reference
})

test_that("bad section input gets a classed error that names it", {
  bad <- sec$section
  bad[1] <- "lonely"
  expect_error(RunSEDR(sec$counts, coords = sec$coords, group.by = bad, epochs = 2, n.hvg = 150,
                       npcs = 20, min.spots = 5, device = "cpu", verbose = FALSE),
               class = "sedr_error_input", regexp = "group.by.*\"lonely\" has a single spot")
  bad[1] <- NA
  expect_error(RunSEDR(sec$counts, coords = sec$coords, group.by = bad, epochs = 2, n.hvg = 150,
                       npcs = 20, min.spots = 5, device = "cpu", verbose = FALSE),
               class = "sedr_error_input", regexp = "group.by.*NA")
  expect_error(run_mix("harmony"), class = "sedr_error_input", regexp = "integrate")
  expect_error(run_mix(NA_character_), class = "sedr_error_input", regexp = "integrate")
})

test_that("integrate = \"soft\" mixes shifted sections and keeps their domains apart", {
  none <- run_mix("none")
  soft <- run_mix("soft")
  expect_identical(soft$params$integrate, "soft")
  expect_true(soft$params$soft.rounds >= 1)
  expect_gt(soft$params$mnn.pairs, 0)
  expect_gt(median_ilisi(soft), median_ilisi(none) + 0.3)
  expect_lt(median(ComputeLISI(soft$embedding, sec$domain, perplexity = 15)[[1]]), 1.3)
  expect_identical(dimnames(soft$embedding), dimnames(none$embedding))
  expect_true("mixing" %in% names(soft$timings))
})

test_that("integrate = \"soft\": the same seed gives an identical embedding, another seed another", {
  one <- run_mix("soft", seed.use = 5)
  two <- run_mix("soft", seed.use = 5)
  expect_identical(one$embedding, two$embedding)
  expect_false(isTRUE(all.equal(one$embedding, run_mix("soft", seed.use = 6)$embedding)))
})

test_that("the soft-clustering correction aligns a shifted section and leaves R's generator alone", {
  set.seed(2)
  # Three clusters in section 0; section 1 holds the same clusters, shifted.
  centres <- matrix(rnorm(3 * 6, sd = 3), 3)
  lab <- rep(1:3, 40)
  x <- centres[lab, ] + matrix(rnorm(120 * 6, sd = 0.3), 120)
  z <- rbind(x, x + matrix(c(4, -2, 1, 0, 0, 0), 120, 6, byrow = TRUE))
  group_int <- rep(0:1, each = 120)
  gap <- function(m) sqrt(sum((colMeans(m[group_int == 1, ]) - colMeans(m[group_int == 0, ]))^2))
  set.seed(99)
  before <- .Random.seed
  out <- SEDR:::soft_correct(z, group_int, seed = 1L, n.clusters = 6L)
  expect_identical(.Random.seed, before)
  expect_lt(gap(out$x), 0.1 * gap(z))
  # The clusters stay apart: each spot's nearest other spot has its label.
  d <- as.matrix(stats::dist(out$x))
  diag(d) <- Inf
  expect_gt(mean(rep(lab, 2)[apply(d, 1, which.min)] == rep(lab, 2)), 0.95)
  expect_identical(out$x, SEDR:::soft_correct(z, group_int, seed = 1L, n.clusters = 6L)$x)
})

test_that("the MNN pass after the soft correction mixes sections whose clusters have their own shapes", {
  set.seed(3)
  # Three clusters; within each, section 0 spreads along dimensions 1-3 and
  # section 1 (shifted) along 4-6, so aligning the centres alone leaves each
  # spot's neighbours mostly in its own section.
  centres <- matrix(rnorm(3 * 6, sd = 4), 3)
  lab <- rep(1:3, 60)
  spread <- function(dims) {
    m <- matrix(rnorm(180 * 6, sd = 0.1), 180)
    m[, dims] <- m[, dims] * 2
    m
  }
  z <- rbind(centres[lab, ] + spread(1:3), centres[lab, ] + spread(4:6) + 3)
  group_int <- rep(0:1, each = 180)
  graph <- Matrix::sparseMatrix(i = integer(), j = integer(), x = numeric(), dims = c(360, 360))
  ilisi <- function(m) median(ComputeLISI(m, group_int, perplexity = 15)[[1]])
  soft <- SEDR:::soft_correct(z, group_int, seed = 1L)$x
  set.seed(99)
  before <- .Random.seed
  out <- SEDR:::soft_mix(z, group_int, graph, seed = 1L)
  expect_identical(.Random.seed, before)
  expect_gt(out$pairs, 0)
  expect_gt(ilisi(out$x), ilisi(soft) + 0.3)
  # A second pass finds the pairs that became mutual after the first.
  expect_gt(ilisi(SEDR:::soft_mix(z, group_int, graph, seed = 1L, passes = 2L)$x), ilisi(out$x) + 0.1)
  # No pass: the soft correction alone.
  expect_identical(SEDR:::soft_mix(z, group_int, graph, seed = 1L, passes = 0L)$x, soft)
  # The clusters stay apart.
  d <- as.matrix(stats::dist(out$x))
  diag(d) <- Inf
  expect_gt(mean(rep(lab, 2)[apply(d, 1, which.min)] == rep(lab, 2)), 0.95)
  expect_identical(out$x, SEDR:::soft_mix(z, group_int, graph, seed = 1L)$x)
})

test_that("RunSEDRHarmony runs Harmony on the SEDR reduction", {
  skip_if_not_installed("harmony")
  skip_if_not_installed("SeuratObject")
  obj <- SeuratObject::CreateSeuratObject(sec$counts, meta.data = data.frame(
    x = sec$coords[, 1], y = sec$coords[, 2], section = sec$section, row.names = colnames(sec$counts)))
  obj <- RunSEDR(obj, group.by = "section", integrate = "none", epochs = 20, n.hvg = 150, npcs = 20,
                 min.spots = 5, device = "cpu", verbose = FALSE)
  obj <- RunSEDRHarmony(obj, group.by = "section", verbose = FALSE)
  emb <- SeuratObject::Embeddings(obj, "sedr.harmony")
  expect_equal(dim(emb), dim(SeuratObject::Embeddings(obj, "sedr")))
  expect_gt(median(ComputeLISI(emb, sec$section, perplexity = 15)[[1]]), 1.2)
  expect_error(RunSEDRHarmony(obj, group.by = "nope"), class = "sedr_error_input", regexp = "group.by")
})

test_that("RunSEDRHarmony says that harmony is needed where it is not installed", {
  skip_if(requireNamespace("harmony", quietly = TRUE), "harmony is installed")
  expect_error(RunSEDRHarmony(NULL, group.by = "section"), class = "sedr_error_dependency",
               regexp = "harmony")
})


skip_if_not_installed("SeuratObject")

two_sections <- function() {
  a <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 1)
  b <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 2)
  colnames(b$counts) <- rownames(b$coords) <- paste0("b_", colnames(b$counts))
  counts <- cbind(a$counts, b$counts)
  pcs <- stats::prcomp(t(log1p(as.matrix(counts))), rank. = 10)$x
  list(orig = SeuratObject::CreateDimReducObject(pcs, key = "PC_", assay = "RNA"),
       groups = data.frame(group = rep(c("a", "b"), each = 100), row.names = rownames(pcs)),
       coords = rbind(a$coords, b$coords), spots = rownames(pcs))
}

s <- two_sections()

run_int <- function(...) {
  args <- list(object = NULL, orig = s$orig, groups = s$groups, coords = s$coords, epochs = 10,
               device = "cpu", verbose = FALSE)
  over <- list(...)
  args[names(over)] <- over
  do.call(SEDRIntegration, args)
}

test_that("SEDRIntegration returns one named DimReduc over all spots, trained without DEC", {
  out <- run_int()
  expect_named(out, "integrated.sedr")
  red <- out$integrated.sedr
  expect_s4_class(red, "DimReduc")
  emb <- SeuratObject::Embeddings(red)
  expect_equal(dim(emb), c(200L, 32L))
  expect_identical(rownames(emb), s$spots)
  expect_true(all(is.finite(emb)))
  expect_identical(SeuratObject::Key(red), "SEDRintegrated_")
  misc <- SeuratObject::Misc(red)
  expect_false(misc$params$dec)
  expect_equal(misc$params$input, "reduction")
  expect_equal(nrow(misc$losses), 10)
  # What SEDRClusters() needs to refine within each section, as after RunSEDR().
  expect_identical(unname(misc$sections), s$groups[s$spots, 1])
  expect_identical(rownames(misc$coords), s$spots)
  expect_equal(dim(misc$graph), c(200L, 200L))
  # Coordinates in another order are aligned by spot name; the result is the same.
  again <- run_int(coords = s$coords[rev(seq_len(200)), ], new.reduction = "x")
  expect_identical(SeuratObject::Embeddings(again$x), emb)
})

test_that("the graph is block diagonal: the sections only share the model", {
  # Same input, groups relabelled: a different block structure changes the result.
  one <- run_int(groups = data.frame(group = rep("all", 200), row.names = s$spots))
  two <- run_int(integrate = "none")
  expect_false(isTRUE(all.equal(SeuratObject::Embeddings(one[[1]]), SeuratObject::Embeddings(two[[1]]))))
})

test_that("SEDRIntegration mixes the sections with integrate = \"mnn\", and not by default", {
  mixed <- run_int(integrate = "mnn")
  plain <- run_int()
  expect_identical(SeuratObject::Misc(mixed[[1]])$params$integrate, "mnn")
  expect_gt(SeuratObject::Misc(mixed[[1]])$params$mnn.pairs, 0)
  expect_identical(SeuratObject::Misc(plain[[1]])$params$integrate, "none")
  expect_false(isTRUE(all.equal(SeuratObject::Embeddings(mixed[[1]]), SeuratObject::Embeddings(plain[[1]]))))
  expect_error(run_int(integrate = "both"), class = "sedr_error_input", regexp = "integrate")
  soft <- run_int(integrate = "soft")
  expect_identical(SeuratObject::Misc(soft[[1]])$params$integrate, "soft")
  expect_gte(SeuratObject::Misc(soft[[1]])$params$soft.rounds, 1)
})

test_that("SEDRIntegration gives classed errors for missing or bad inputs", {
  expect_error(run_int(coords = NULL), class = "sedr_error_input", regexp = "coords")
  expect_error(run_int(orig = matrix(1:4, 2)), class = "sedr_error_input", regexp = "DimReduc")
  expect_error(run_int(groups = NULL), class = "sedr_error_input")
  expect_error(run_int(coords = s$coords[1:150, ]), class = "sedr_error_input")
  expect_error(run_int(groups = data.frame(group = c(rep("a", 199), "b"), row.names = s$spots)),
               class = "sedr_error_input", regexp = "single spot")
  expect_error(run_int(new.reduction = ""), class = "sedr_error_input")
})
