# Input validation: every bad input is a classed error that names the
# argument, raised before anything is trained, and the user's object is left
# as it was. Also: Rust panics and libtorch exceptions become R errors.

tiny_opts <- function() SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2)

sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
counts <- sim$counts
coords <- sim$coords
n_spots <- ncol(counts)

# RunSEDR with tiny settings; anything in ... overrides them.
run_small <- function(object, ...) {
  # Not modifyList(): it would merge a list given as `options` into the
  # default options instead of replacing it.
  args <- list(epochs = 10, dec = FALSE, n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE,
               device = "cpu", options = tiny_opts())
  over <- list(...)
  args[names(over)] <- over
  do.call(RunSEDR, c(list(object), args))
}

# A classed SEDR error whose message and `arg` field name the argument.
expect_sedr_error <- function(expr, arg, class = "sedr_error_input") {
  cnd <- expect_error(expr, class = class, regexp = paste0("`", arg, "`"), fixed = TRUE)
  expect_identical(cnd$arg, arg)
  invisible(cnd)
}

test_that("the matrix input itself is validated (argument `object`)", {
  expect_sedr_error(run_small(matrix(numeric(0), 0, 0), coords = coords), "object")
  expect_sedr_error(run_small(counts[, 0], coords = coords), "object")
  # A list is a list of sections (RunSEDR.list; test-sections.R): its
  # coordinates must be a list too, and each element a count matrix.
  expect_sedr_error(run_small(list(counts), coords = coords), "coords")
  expect_sedr_error(run_small(list("counts"), coords = list(coords)), "object[[\"section1\"]]")
  expect_sedr_error(run_small(as.data.frame(as.matrix(counts)), coords = coords), "object")
  expect_sedr_error(run_small(as.matrix(counts)[, 1, drop = FALSE], coords = coords[1, , drop = FALSE]), "object")

  na <- as.matrix(counts)
  na[5, 7] <- NA
  expect_sedr_error(run_small(na, coords = coords), "object")
  nan <- as.matrix(counts)
  nan[5, 7] <- NaN
  expect_sedr_error(run_small(nan, coords = coords), "object")
  inf <- counts
  inf[5, 7] <- Inf
  expect_sedr_error(run_small(inf, coords = coords), "object")
  neg <- counts
  neg[3, 4] <- -2
  expect_error(run_small(neg, coords = coords), class = "sedr_error_input", regexp = "negative")
  frac <- counts
  frac[3, 4] <- 2.5
  expect_error(run_small(frac, coords = coords), class = "sedr_error_input", regexp = "non-integer")
  expect_sedr_error(run_small(counts / 3, coords = coords), "object")

  zero_spot <- counts
  zero_spot[, 17] <- 0
  cnd <- expect_sedr_error(run_small(zero_spot, coords = coords), "object")
  expect_match(conditionMessage(cnd), colnames(counts)[17], fixed = TRUE)

  dup_genes <- counts
  rownames(dup_genes)[2] <- rownames(dup_genes)[1]
  expect_error(run_small(dup_genes, coords = coords), class = "sedr_error_input",
               regexp = "`object`.*duplicated gene names")
  dup_cells <- counts
  colnames(dup_cells)[2] <- colnames(dup_cells)[1]
  expect_error(run_small(dup_cells, coords = unname(coords)), class = "sedr_error_input",
               regexp = "`object`.*duplicated spot names")
  # With named coordinates the duplicate is already caught in `coords`.
  dup_xy <- coords
  rownames(dup_xy) <- colnames(dup_cells)
  expect_sedr_error(run_small(dup_cells, coords = dup_xy), "coords")
})

test_that("all-zero genes are fine, an all-zero spot is not", {
  zero_genes <- counts
  zero_genes[1:10, ] <- 0
  zero_genes <- Matrix::drop0(zero_genes)
  res <- run_small(zero_genes, coords = coords)
  expect_equal(dim(res$embedding), c(n_spots, 32L))
  expect_true(all(is.finite(res$embedding)))
  expect_false(any(rownames(counts)[1:10] %in% res$features))
})

test_that("coordinates are validated (argument `coords`)", {
  na <- coords
  na[10, 1] <- NA
  expect_sedr_error(run_small(counts, coords = na), "coords")
  expect_sedr_error(run_small(counts, coords = coords[, 1, drop = FALSE]), "coords")
  expect_sedr_error(run_small(counts, coords = coords[, 1]), "coords")
  const <- coords
  const[] <- 5
  expect_sedr_error(run_small(counts, coords = const), "coords")
  other <- coords
  rownames(other) <- paste0("Other", seq_len(nrow(other)))
  expect_sedr_error(run_small(counts, coords = other), "coords")
  expect_sedr_error(run_small(counts, coords = coords[-1, ]), "coords")
  expect_sedr_error(run_small(counts, coords = unname(coords)[-1, ]), "coords")
  chr <- coords
  storage.mode(chr) <- "character"
  expect_sedr_error(run_small(counts, coords = chr), "coords")
})

test_that("graph and section settings are validated", {
  # Fewer spots than k.neighbors + 1.
  few <- counts[, 1:10]
  expect_sedr_error(run_small(few, coords = coords[1:10, ], k.neighbors = 12), "k.neighbors")
  expect_sedr_error(run_small(counts, coords = coords, k.neighbors = 0), "k.neighbors")
  expect_sedr_error(run_small(counts, coords = coords, group.by = rep("a", n_spots - 1)), "group.by")
  expect_sedr_error(run_small(counts, coords = coords, group.by = c(NA, rep("a", n_spots - 1))), "group.by")
  single <- c("lonely", rep("a", n_spots - 1))
  cnd <- expect_sedr_error(run_small(counts, coords = coords, group.by = single), "group.by")
  expect_match(conditionMessage(cnd), "single spot")
  # A section smaller than k.neighbors + 1.
  small <- c(rep("s", 5), rep("a", n_spots - 5))
  expect_sedr_error(run_small(counts, coords = coords, group.by = small, k.neighbors = 6), "k.neighbors")
})

test_that("training settings are validated", {
  expect_sedr_error(run_small(counts, coords = coords, epochs = 0), "epochs")
  expect_sedr_error(run_small(counts, coords = coords, epochs = -5), "epochs")
  expect_sedr_error(run_small(counts, coords = coords, epochs = 1.5), "epochs")
  expect_sedr_error(run_small(counts, coords = coords, n.threads = 0), "n.threads")
  expect_sedr_error(SEDROptions(lr = -1), "lr")
  expect_sedr_error(SEDROptions(lr = 0), "lr")
  expect_sedr_error(SEDROptions(dropout = 1), "dropout")
  expect_sedr_error(SEDROptions(dec.clusters = 1), "dec.clusters")
  expect_sedr_error(SEDROptions(dec.epochs = 0), "dec.epochs")
  expect_sedr_error(SEDROptions(weight.decay = -0.1), "weight.decay")
  expect_sedr_error(SEDROptions(resample.negatives = NA), "resample.negatives")
  expect_sedr_error(run_small(counts, coords = coords, options = SEDROptions(lr = -1)), "lr")
  expect_sedr_error(run_small(counts, coords = coords, options = list(lr = 0.01)), "options")
  expect_sedr_error(run_small(counts, coords = coords, dec = NA), "dec")
  expect_sedr_error(run_small(counts, coords = coords, dec = "yes"), "dec")
  expect_sedr_error(run_small(counts, coords = coords, mode = "denoise"), "mode")
  expect_sedr_error(run_small(counts, coords = coords, seed.use = "a"), "seed.use")
  expect_sedr_error(run_small(counts, coords = coords, n.hvg = 1), "n.hvg")
  expect_sedr_error(run_small(counts, coords = coords, npcs = 1), "npcs")
  # More DEC centres than spots.
  expect_sedr_error(run_small(counts[, 1:20], coords = coords[1:20, ], k.neighbors = 6, dec = TRUE,
                              options = SEDROptions(dec.clusters = 30, dec.epochs = 10)),
                    "dec.clusters")
  # Unknown arguments (typos) are errors, not silently ignored.
  expect_error(run_small(counts, coords = coords, n.epochs = 5), class = "sedr_error_input",
               regexp = "unknown argument.*n.epochs")
  expect_error(run_small(counts, coords = coords, lr = 0.1), class = "sedr_error_input",
               regexp = "unknown argument.*lr")
})

test_that("features are validated", {
  expect_sedr_error(run_small(counts, coords = coords, features = c("Gene1", "NotAGene")), "features")
  expect_sedr_error(run_small(counts, coords = coords, features = "Gene1"), "features")
})

test_that("device strings are validated; CUDA without CUDA is a device error", {
  expect_sedr_error(run_small(counts, coords = coords, device = "gpu"), "device")
  expect_sedr_error(run_small(counts, coords = coords, device = "cuda:x"), "device")
  expect_sedr_error(run_small(counts, coords = coords, device = "CPU"), "device")
  expect_sedr_error(run_small(counts, coords = coords, device = c("cpu", "cuda")), "device")
  expect_sedr_error(run_small(counts, coords = coords, device = NA_character_), "device")
  skip_if(isTRUE(SEDRBackendInfo()$cuda_available), "CUDA is available")
  cnd <- expect_sedr_error(run_small(counts, coords = coords, device = "cuda"), "device",
                           class = "sedr_error_device")
  expect_false(inherits(cnd, "sedr_error_input"))
  expect_s3_class(cnd, "sedr_error")
  expect_sedr_error(run_small(counts, coords = coords, device = "cuda:0"), "device",
                    class = "sedr_error_device")
})

test_that("SEDRClusters validates n.clusters", {
  emb <- matrix(stats::rnorm(200), 50, 4, dimnames = list(paste0("s", 1:50), NULL))
  expect_sedr_error(SEDRClusters(emb, n.clusters = 1, verbose = FALSE), "n.clusters")
  expect_sedr_error(SEDRClusters(emb, n.clusters = 51, verbose = FALSE), "n.clusters")
  expect_sedr_error(SEDRClusters(emb, n.clusters = NA, verbose = FALSE), "n.clusters")
})

test_that("the Seurat method validates its input and leaves the object unchanged on error", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  scores <- stats::prcomp(t(as.matrix(log1p(counts[1:50, ]))), rank. = 5)$x
  colnames(scores) <- paste0("PC_", 1:5)
  obj[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = scores, key = "PC_", assay = "Spatial")
  before <- obj
  try_on_obj <- function(arg, ..., class = "sedr_error_input") {
    expect_sedr_error(obj <- run_small(obj, ...), arg, class = class)
    expect_identical(obj, before)
  }
  try_on_obj("assay", assay = "RNA")
  try_on_obj("reduction", reduction = "umap")
  try_on_obj("dims", reduction = "pca", dims = 1:6)
  try_on_obj("dims", reduction = "pca", dims = 0:3)
  try_on_obj("dims", reduction = "pca", dims = 1)
  try_on_obj("reduction", reduction = "pca", mode = "imputation")
  try_on_obj("features", features = c("Gene1", "Gene2", "Nope"))
  try_on_obj("coords", coords = "x")
  try_on_obj("coords", coords = c("x", "nope"))
  other <- coords
  rownames(other) <- paste0("Other", seq_len(nrow(other)))
  try_on_obj("coords", coords = other)
  try_on_obj("group.by", group.by = "nope")
  try_on_obj("k.neighbors", k.neighbors = 200)
  try_on_obj("epochs", epochs = 0)
  try_on_obj("n.threads", n.threads = 0)
  try_on_obj("device", device = "gpu")
  try_on_obj("device", device = "cuda:x")
  try_on_obj("lr", options = SEDROptions(lr = -1))
  expect_error(obj <- run_small(obj, nonsense.arg = "x"), class = "sedr_error_input",
               regexp = "unknown argument")
  expect_identical(obj, before)
  if (!isTRUE(SEDRBackendInfo()$cuda_available)) {
    try_on_obj("device", device = "cuda", class = "sedr_error_device")
  }
  # Constant coordinates and a section with one spot.
  flat <- obj
  flat$x <- 1
  flat$y <- 2
  flat_before <- flat
  expect_sedr_error(flat <- run_small(flat), "coords")
  expect_identical(flat, flat_before)
  obj$section <- c("one", rep("rest", ncol(obj) - 1))
  before <- obj
  try_on_obj("group.by", group.by = "section")
  # An object with nothing wrong still works after all of this.
  ok <- run_small(obj)
  expect_true("sedr" %in% SeuratObject::Reductions(ok))
})

test_that("the SingleCellExperiment method validates its input", {
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(assays = list(counts = counts))
  before <- sce
  expect_sedr_error(sce <- run_small(sce), "coords")
  SummarizedExperiment::colData(sce)$x <- coords[, "x"]
  SummarizedExperiment::colData(sce)$y <- coords[, "y"]
  before <- sce
  expect_sedr_error(sce <- run_small(sce, assay.type = "logcounts"), "assay.type")
  expect_sedr_error(sce <- run_small(sce, use.dimred = "PCA"), "use.dimred")
  expect_sedr_error(sce <- run_small(sce, coords = c("x", "z")), "coords")
  expect_sedr_error(sce <- run_small(sce, group.by = "section"), "group.by")
  expect_sedr_error(sce <- run_small(sce, group.by = c("x", "y")), "group.by")
  expect_sedr_error(sce <- run_small(sce, epochs = 0), "epochs")
  expect_error(sce <- run_small(sce, foo = 1), class = "sedr_error_input", regexp = "unknown argument")
  expect_identical(sce, before)
})

test_that("a Rust panic is an internal error and R carries on", {
  cnd <- expect_error(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_fail, "panic")),
                      class = "sedr_error_internal")
  expect_s3_class(cnd, "sedr_error")
  expect_match(conditionMessage(cnd), "deliberate panic")
  expect_match(conditionMessage(cnd), "bug in SEDR")
  # The next call works.
  res <- run_small(counts, coords = coords)
  expect_equal(dim(res$embedding), c(n_spots, 32L))
  expect_true(all(is.finite(res$embedding)))
})

test_that("a libtorch exception is a torch error and R carries on", {
  cnd <- expect_error(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_fail, "torch")),
                      class = "sedr_error_torch")
  expect_s3_class(cnd, "sedr_error")
  expect_false(inherits(cnd, "sedr_error_internal"))
  expect_match(conditionMessage(cnd), "libtorch failed")
  # An input error from Rust keeps its kind and argument.
  cnd <- expect_error(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_fail, "nonsense")),
                      class = "sedr_error_input")
  expect_identical(cnd$arg, "what")
  # A malformed result is an internal error.
  expect_error(SEDR:::unwrap_rust(list(1)), class = "sedr_error_internal")
  expect_true(is.list(SEDRBackendInfo()))
})
