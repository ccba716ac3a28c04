# The recipe's spatial gene filter: Moran's I of the variable genes on the
# spatial graph (Rust core) against its textbook definition, and what
# RunSEDR() keeps and returns.

# Moran's I and its z-score under the normality assumption, dense, from the
# definitions: row-normalised weights of the graph A, genes in the columns of z.
moran_reference <- function(x, A) {
  W <- as.matrix(A)
  W <- W / pmax(rowSums(W), 1)
  n <- nrow(x)
  d <- sweep(x, 2, colMeans(x))
  s0 <- sum(W)
  i <- n / s0 * colSums(d * (W %*% d)) / colSums(d^2)
  s1 <- sum((W + t(W))^2) / 2
  s2 <- sum((rowSums(W) + colSums(W))^2)
  e <- -1 / (n - 1)
  v <- (n^2 * s1 - n * s2 + 3 * s0^2) / (s0^2 * (n^2 - 1)) - e^2
  list(i = i, z = (i - e) / sqrt(v))
}

sim <- SimulateSpatialTissue(n.rows = 15, n.cols = 15, n.genes = 120, n.domains = 3,
                             markers.per.domain = 8, seed = 3)
A <- BuildSpatialGraph(sim$coords, k.neighbors = 6)

test_that("Moran's I and its z-score match their definitions on the recipe's CPM", {
  counts <- .as_dgc(sim$counts)
  totals <- Matrix::colSums(counts)
  sel <- c(1L, 5L, 20L, 60L, 119L)
  for (how in c("cpm", "log")) {
    got <- .moran_filter(counts, sel, totals, how, list(graph = A, z = 2))
    norm <- as.matrix(Matrix::t(.normalize_counts(counts[sel, ], totals = totals, how = how)))
    ref <- moran_reference(norm, A)
    expect_equal(got$moran.i, unname(ref$i), tolerance = 1e-10)
    expect_equal(got$moran.z, unname(ref$z), tolerance = 1e-8)
    expect_identical(got$gene, rownames(counts)[sel])
  }
})

test_that("markers pass the filter and most null genes do not", {
  counts <- .as_dgc(sim$counts)
  f <- .moran_filter(counts, seq_len(nrow(counts)), Matrix::colSums(counts), "cpm", list(graph = A, z = 2))
  markers <- unlist(sim$markers)
  expect_true(all(f$kept[f$gene %in% markers]))
  expect_lt(mean(f$kept[!f$gene %in% markers]), 0.2)
  expect_identical(f$kept, f$moran.z >= 2)
  # At least ten genes stay, the ten with the highest z.
  strict <- .moran_filter(counts, seq_len(nrow(counts)), Matrix::colSums(counts), "cpm", list(graph = A, z = Inf))
  expect_identical(sum(strict$kept), 10L)
  expect_true(all(strict$moran.z[strict$kept] >= max(strict$moran.z[!strict$kept])))
})

test_that("RunSEDR keeps the spatial genes, reports them, and NULL keeps every variable gene", {
  args <- list(sim$counts, coords = sim$coords, k.neighbors = 6, epochs = 5, n.hvg = 100, npcs = 10,
               min.spots = 5, verbose = FALSE, device = "cpu",
               options = SEDROptions(dec.epochs = 2, dec.interval = 1, kmeans.restarts = 1))
  res <- do.call(RunSEDR, c(args, moran.z = 2))
  expect_s3_class(res$moran, "data.frame")
  expect_identical(nrow(res$moran), 100L)
  expect_identical(res$features, res$moran$gene[res$moran$kept])
  expect_lt(length(res$features), 100L)
  expect_identical(res$params$moran.z, 2)
  expect_identical(res$params$n.hvg, length(res$features))

  # The default keeps every variable gene.
  all <- do.call(RunSEDR, args)
  expect_null(all$moran)
  expect_length(all$features, 100L)
  expect_true(is.na(all$params$moran.z))

  # The R reference recipe keeps the same genes.
  old <- options(SEDR.recipe = "r")
  on.exit(options(old))
  ref <- do.call(RunSEDR, c(args, moran.z = 2))
  expect_identical(ref$features, res$features)
  expect_equal(ref$moran$moran.z, res$moran$moran.z, tolerance = 1e-10)
})

test_that("genes the user names and imputation's genes are not filtered", {
  genes <- rownames(sim$counts)[1:30]
  res <- RunSEDR(sim$counts, coords = sim$coords, k.neighbors = 6, features = genes, moran.z = 2, epochs = 3, npcs = 5,
                 verbose = FALSE, device = "cpu", options = SEDROptions(dec.epochs = 1, dec.interval = 1,
                                                                        kmeans.restarts = 1))
  expect_identical(res$features, genes)
  expect_null(res$moran)
  imp <- RunSEDR(sim$counts, coords = sim$coords, k.neighbors = 6, mode = "imputation", moran.z = 2, epochs = 3,
                 n.hvg = 50, min.spots = 5, verbose = FALSE, device = "cpu")
  expect_length(imp$features, 50L)
  expect_null(imp$moran)
})

test_that("a bad moran.z is a classed error naming it", {
  for (bad in list("2", c(1, 2), NA_real_, TRUE)) {
    expect_error(RunSEDR(sim$counts, coords = sim$coords, moran.z = bad, verbose = FALSE),
                 class = "sedr_error_input", regexp = "moran.z")
  }
})

test_that("Seurat and SingleCellExperiment objects keep the genes' Moran's I with the results", {
  small <- list(k.neighbors = 6, moran.z = 2, epochs = 3, n.hvg = 100, npcs = 5, min.spots = 5,
                verbose = FALSE, device = "cpu",
                options = SEDROptions(dec.epochs = 1, dec.interval = 1, kmeans.restarts = 1))
  ref <- do.call(RunSEDR, c(list(sim$counts, coords = sim$coords), small))
  skip_if_not_installed("SeuratObject")
  so <- do.call(RunSEDR, c(list(SimulationToSeurat(sim)), small))
  misc <- SeuratObject::Misc(so[["sedr"]])
  expect_identical(misc$moran, ref$moran)
  expect_identical(misc$features, ref$features)
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = sim$counts),
    colData = S4Vectors::DataFrame(x = sim$coords[, "x"], y = sim$coords[, "y"], row.names = colnames(sim$counts))
  )
  out <- do.call(RunSEDR, c(list(sce), small))
  expect_identical(S4Vectors::metadata(out)$SEDR$moran, ref$moran)
})
