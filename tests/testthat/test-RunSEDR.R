# RunSEDR(): the default (matrix), Seurat and SingleCellExperiment methods on
# tiny simulated tissues. Every model is small and trained briefly on the CPU.

tiny_opts <- function() SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2)

tiny_sim <- function(seed = 1) {
  SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200, seed = seed)
}

# RunSEDR with the small settings; anything in ... overrides them.
run_tiny <- function(object, ...) {
  # Not modifyList(): it would merge a list given as `options` into the
  # default options instead of replacing it.
  args <- list(epochs = 20, n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE,
               device = "cpu", options = tiny_opts())
  over <- list(...)
  args[names(over)] <- over
  do.call(RunSEDR, c(list(object), args))
}

sim <- tiny_sim()
res <- run_tiny(sim$counts, coords = sim$coords)

test_that("the default method returns a sedr_result with a spots x 32 embedding", {
  expect_s3_class(res, "sedr_result")
  spots <- colnames(sim$counts)
  expect_true(is.matrix(res$embedding) && is.double(res$embedding))
  expect_equal(dim(res$embedding), c(length(spots), 32L))
  expect_identical(rownames(res$embedding), spots)
  expect_identical(colnames(res$embedding), paste0("SEDR_", 1:32))
  expect_true(all(is.finite(res$embedding)))
  # The embedding is not degenerate.
  expect_gt(min(apply(res$embedding, 2, stats::sd)), 0)

  # Loss history: pre-training epochs then the DEC phase (dec defaults on).
  expect_s3_class(res$losses, "data.frame")
  expect_true(all(c("epoch", "phase", "total") %in% names(res$losses)))
  expect_equal(nrow(res$losses), 20 + 10)
  expect_equal(res$losses$epoch, 1:30)
  expect_equal(unique(res$losses$phase)[1], "pretrain")
  expect_true(all(is.finite(res$losses$total)))
  expect_true(res$params$dec)
  expect_equal(res$params$epochs, 20)
  expect_equal(res$params$input, "pca")
  expect_equal(res$params$input.dims, 20)
  expect_equal(res$device, "cpu")

  # DEC soft assignment: spots x dec.clusters, rows sum to 1.
  expect_equal(dim(res$dec.q), c(length(spots), 10L))
  expect_identical(rownames(res$dec.q), spots)
  expect_equal(unname(rowSums(res$dec.q)), rep(1, length(spots)), tolerance = 1e-4)
  expect_null(res$denoised)
  expect_length(res$features, 100)
  expect_true(all(res$features %in% rownames(sim$counts)))

  # The stored graph is the spatial graph of the coordinates.
  expect_identical(res$graph, BuildSpatialGraph(sim$coords, k.neighbors = 12))
  # The coordinates are stored for SEDRClusters()'s refinement.
  expect_identical(res$coords, sim$coords[spots, ])
  expect_output(print(res), "144 spots x 32 dims")
})

test_that("the same seed gives the identical embedding and clusters on the CPU", {
  again <- run_tiny(sim$counts, coords = sim$coords)
  expect_identical(again$embedding, res$embedding)
  expect_identical(again$dec.q, res$dec.q)
  expect_identical(again$losses, res$losses)
  cl1 <- SEDRClusters(res, n.clusters = 5, verbose = FALSE)
  cl2 <- SEDRClusters(again, n.clusters = 5, verbose = FALSE)
  expect_identical(cl1, cl2)
  expect_length(cl1, ncol(sim$counts))
  other <- run_tiny(sim$counts, coords = sim$coords, seed.use = 7)
  expect_false(isTRUE(all.equal(other$embedding, res$embedding)))
  expect_equal(other$params$seed.use, 7)
  expect_false(identical(other$params$seed, res$params$seed))
})

test_that("spots x genes orientation, dense input and data-frame coordinates are accepted", {
  tr <- run_tiny(Matrix::t(sim$counts), coords = sim$coords)
  expect_identical(rownames(tr$embedding), colnames(sim$counts))
  expect_identical(tr$embedding, res$embedding)
  dense <- run_tiny(as.matrix(sim$counts), coords = as.data.frame(sim$coords))
  expect_identical(dense$embedding, res$embedding)
  # Coordinates in another row order are aligned by spot name.
  perm <- rev(seq_len(nrow(sim$coords)))
  shuffled <- run_tiny(sim$counts, coords = sim$coords[perm, ])
  expect_identical(shuffled$embedding, res$embedding)
})

test_that("features and dec = FALSE are honoured by the default method", {
  genes <- rownames(sim$counts)[1:40]
  r <- run_tiny(sim$counts, coords = sim$coords, features = genes, dec = FALSE, epochs = 10)
  expect_setequal(r$features, genes)
  expect_false(r$params$dec)
  expect_null(r$dec.q)
  expect_equal(nrow(r$losses), 10)
  expect_true(all(r$losses$phase == "pretrain"))
})

test_that("mini-batch training (forced by batch.size) runs, is recorded and is reproducible", {
  opts <- SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2, batch.size = 100)
  mb <- run_tiny(sim$counts, coords = sim$coords, options = opts)
  expect_equal(mb$params$batch.size, 100)
  expect_equal(res$params$batch.size, 0)  # tiny data: automatic = full batch
  expect_equal(dim(mb$embedding), dim(res$embedding))
  expect_true(all(is.finite(mb$embedding)))
  expect_false(isTRUE(all.equal(mb$embedding, res$embedding)))
  expect_equal(nrow(mb$losses), 30)
  expect_true(all(is.finite(mb$losses$total)))
  expect_identical(run_tiny(sim$counts, coords = sim$coords, options = opts)$embedding, mb$embedding)
  # A batch as large as the data is full-batch training.
  big <- run_tiny(sim$counts, coords = sim$coords,
                  options = SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2, batch.size = 1e6))
  expect_identical(big$embedding, res$embedding)
  expect_error(SEDROptions(batch.size = 50), class = "sedr_error_input")
  expect_error(SEDROptions(batch.size = -1), class = "sedr_error_input")
  expect_equal(SEDROptions(batch.size = Inf)$batch.size, 0)
})

test_that("the decoder option switches the denoising decoder", {
  gcn <- run_tiny(sim$counts, coords = sim$coords, mode = "imputation", n.hvg = 40, epochs = 10,
                  options = SEDROptions(decoder = "gcn"))
  mlp <- run_tiny(sim$counts, coords = sim$coords, mode = "imputation", n.hvg = 40, epochs = 10)
  expect_equal(gcn$params$decoder, "gcn")
  expect_equal(dim(gcn$denoised$expression), dim(mlp$denoised$expression))
  expect_true(all(gcn$denoised$expression >= 0))
  expect_false(isTRUE(all.equal(gcn$denoised$scaled, mlp$denoised$scaled)))
  expect_error(SEDROptions(decoder = "linear"), class = "sedr_error_input")
})

test_that("mask.replace: replacement by default for clustering, the reference's added token on request", {
  with_mask <- function(flag) do.call(SEDROptions, c(unclass(tiny_opts()), list(mask.replace = flag)))
  added <- run_tiny(sim$counts, coords = sim$coords, options = with_mask(FALSE))
  replaced <- run_tiny(sim$counts, coords = sim$coords, options = with_mask(TRUE))
  # The default (res) is replacement; FALSE trains a different model.
  expect_identical(replaced$embedding, res$embedding)
  expect_false(isTRUE(all.equal(added$embedding, res$embedding)))
  expect_true(all(is.finite(added$embedding)))
  expect_error(SEDROptions(mask.replace = "yes"), class = "sedr_error_input", regexp = "mask.replace")
  expect_error(SEDROptions(mask.replace = NA), class = "sedr_error_input", regexp = "mask.replace")
})

test_that("average.epochs returns the mean embedding of the last epochs, off by default", {
  with_avg <- function(m) {
    o <- unclass(tiny_opts())
    o$average.epochs <- m
    do.call(SEDROptions, o)
  }
  expect_equal(SEDROptions()$average.epochs, 0)
  # Averaging only reads the model: one epoch is the last epoch's embedding.
  expect_identical(run_tiny(sim$counts, coords = sim$coords, options = with_avg(1))$embedding, res$embedding)
  avg <- run_tiny(sim$counts, coords = sim$coords, options = with_avg(5))
  expect_false(isTRUE(all.equal(avg$embedding, res$embedding)))
  expect_true(all(is.finite(avg$embedding)))
  expect_identical(avg$losses, res$losses)
  expect_equal(unname(rowSums(avg$dec.q)), rep(1, ncol(sim$counts)), tolerance = 1e-4)
  expect_identical(run_tiny(sim$counts, coords = sim$coords, options = with_avg(5))$embedding, avg$embedding)
  expect_error(SEDROptions(average.epochs = -1), class = "sedr_error_input", regexp = "average.epochs")
  expect_error(SEDROptions(average.epochs = 2.5), class = "sedr_error_input", regexp = "average.epochs")
  # More than the 20 + 10 epochs trained.
  expect_error(run_tiny(sim$counts, coords = sim$coords, options = with_avg(31)),
               class = "sedr_error_input", regexp = "average.epochs")
})

test_that("the default method honours group.by: block-diagonal graph, DEC off by default", {
  grp <- ifelse(sim$coords[, "x"] < stats::median(sim$coords[, "x"]), "left", "right")
  r <- run_tiny(sim$counts, coords = sim$coords, group.by = grp, k.neighbors = 6, epochs = 10)
  expect_false(r$params$dec)
  expect_null(r$dec.q)
  left <- grp == "left"
  expect_equal(Matrix::nnzero(r$graph[left, !left]), 0)
  expect_equal(min(Matrix::rowSums(r$graph)), 6)
  expect_true(all(is.finite(r$embedding)))
  expect_equal(dim(r$embedding), c(ncol(sim$counts), 32L))
})

test_that("Seurat round trip: reduction, misc, command log and clusters", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  out <- run_tiny(obj)
  expect_s4_class(out, "Seurat")
  expect_true("sedr" %in% SeuratObject::Reductions(out))
  red <- out[["sedr"]]
  expect_identical(SeuratObject::Key(red), "SEDR_")
  emb <- SeuratObject::Embeddings(out, "sedr")
  expect_identical(rownames(emb), SeuratObject::Cells(out))
  expect_equal(ncol(emb), 32L)
  expect_identical(colnames(emb), paste0("SEDR_", 1:32))
  # Same data, same seed: the embedding equals the matrix method's.
  expect_equal(unname(emb), unname(res$embedding))
  misc <- SeuratObject::Misc(red)
  expect_true(all(c("params", "losses", "dec.q", "graph", "coords") %in% names(misc)))
  expect_equal(dim(misc$graph), c(ncol(out), ncol(out)))
  expect_identical(rownames(misc$coords), SeuratObject::Cells(out))
  expect_equal(misc$params$mode, "clustering")
  expect_true(misc$params$dec)
  expect_s3_class(misc$losses, "data.frame")
  expect_equal(nrow(misc$losses), 30)
  expect_equal(unname(rowSums(misc$dec.q)), rep(1, ncol(out)), tolerance = 1e-4)
  expect_identical(rownames(misc$dec.q), SeuratObject::Cells(out))
  # The call is logged.
  expect_true(any(grepl("^RunSEDR", names(out@commands))))
  cmd <- out@commands[[grep("^RunSEDR", names(out@commands))[1]]]
  expect_equal(cmd@params$epochs, 20)
  # Nothing else of the object changed.
  expect_identical(out[[]], obj[[]])
  expect_identical(SeuratObject::DefaultAssay(out), SeuratObject::DefaultAssay(obj))
  expect_identical(SeuratObject::Assays(out), SeuratObject::Assays(obj))

  cl <- SEDRClusters(out, n.clusters = 4, verbose = FALSE)
  expect_true("sedr_clusters" %in% colnames(cl[[]]))
  expect_true(is.factor(cl$sedr_clusters))
  expect_lte(nlevels(cl$sedr_clusters), 4)
  expect_false(anyNA(cl$sedr_clusters))
  expect_identical(names(cl$sedr_clusters), SeuratObject::Cells(out))
  # smooth uses the graph stored in misc.
  sm <- SEDRClusters(out, n.clusters = 4, smooth = 2, col.name = "sm", verbose = FALSE)
  expect_false(anyNA(sm$sm))
  cl2 <- SEDRClusters(out, n.clusters = 3, col.name = "dom3", verbose = FALSE)
  expect_true("dom3" %in% colnames(cl2[[]]))
  expect_lte(nlevels(cl2$dom3), 3)

  # reduction.name / reduction.key are honoured.
  out2 <- run_tiny(obj, reduction.name = "sedr2", reduction.key = "S2_", epochs = 10, dec = FALSE)
  expect_true("sedr2" %in% SeuratObject::Reductions(out2))
  expect_identical(SeuratObject::Key(out2[["sedr2"]]), "S2_")
  expect_null(SeuratObject::Misc(out2[["sedr2"]])$dec.q)
})

test_that("Seurat: reduction = 'pca' trains on an existing reduction (dims subset)", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  x <- t(as.matrix(log1p(sim$counts[1:60, ])))
  pc <- stats::prcomp(x, rank. = 10)
  scores <- pc$x
  colnames(scores) <- paste0("PC_", 1:10)
  obj[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = scores, key = "PC_", assay = "Spatial")
  out <- run_tiny(obj, reduction = "pca", dims = 1:5, epochs = 10)
  emb <- SeuratObject::Embeddings(out, "sedr")
  expect_equal(dim(emb), c(ncol(obj), 32L))
  expect_identical(rownames(emb), colnames(obj))
  expect_true(all(is.finite(emb)))
  p <- SeuratObject::Misc(out[["sedr"]])$params
  expect_equal(p$input, "reduction")
  expect_equal(p$input.dims, 5)
  expect_true(is.na(p$n.hvg))
  # The PCA itself is untouched.
  expect_identical(SeuratObject::Embeddings(out, "pca"), SeuratObject::Embeddings(obj, "pca"))
  # Another dims subset gives another embedding.
  out3 <- run_tiny(obj, reduction = "pca", dims = 1:3, epochs = 10)
  expect_equal(SeuratObject::Misc(out3[["sedr"]])$params$input.dims, 3)
  expect_false(isTRUE(all.equal(SeuratObject::Embeddings(out3, "sedr"), emb)))
})

test_that("Seurat: imputation adds a denoised assay and keeps the default assay", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  out <- run_tiny(obj, mode = "imputation", epochs = 10)
  expect_true("SEDR" %in% SeuratObject::Assays(out))
  expect_identical(SeuratObject::DefaultAssay(out), "Spatial")
  dat <- SEDR:::seurat_layer(out, "SEDR", "data")
  expect_identical(colnames(dat), colnames(obj))
  vf <- SeuratObject::VariableFeatures(out[["SEDR"]])
  expect_length(vf, 100)
  expect_identical(rownames(dat), vf)
  expect_identical(vf, SeuratObject::Misc(out[["sedr"]])$features)
  expect_true(all(vf %in% rownames(obj)))
  expect_false(anyNA(as.matrix(dat)))
  expect_true(all(dat >= 0))
  expect_gt(sum(dat), 0)
  sc <- SEDR:::seurat_layer(out, "SEDR", "scale.data")
  expect_equal(dim(sc), dim(dat))
  expect_true(all(is.finite(sc)))
  p <- SeuratObject::Misc(out[["sedr"]])$params
  expect_equal(p$mode, "imputation")
  expect_false(p$dec)
  expect_equal(p$input, "scaled")
  # Denoised expression tracks the input: per-gene correlation with the CPM is
  # positive for most genes even after a short run.
  cpm <- t(t(as.matrix(sim$counts[vf, ])) / colSums(as.matrix(sim$counts))) * 1e6
  r <- vapply(vf, function(g) suppressWarnings(stats::cor(cpm[g, ], as.numeric(dat[g, ]))), numeric(1))
  expect_gt(mean(r > 0, na.rm = TRUE), 0.5)
  # The original counts assay is untouched.
  expect_identical(SEDR:::seurat_layer(out, "Spatial", "counts"),
                   SEDR:::seurat_layer(obj, "Spatial", "counts"))
  # assay.name is honoured.
  out2 <- run_tiny(obj, mode = "imputation", epochs = 10, assay.name = "denoised")
  expect_true("denoised" %in% SeuratObject::Assays(out2))
  expect_false("SEDR" %in% SeuratObject::Assays(out2))
})

test_that("Seurat: group.by on two sections keeps them apart and turns DEC off", {
  skip_if_not_installed("SeuratObject")
  sim2 <- tiny_sim(seed = 2)
  c1 <- sim$counts
  c2 <- sim2$counts
  colnames(c1) <- paste0("A_", colnames(c1))
  colnames(c2) <- paste0("B_", colnames(c2))
  counts <- cbind(c1, c2)
  obj <- SeuratObject::CreateSeuratObject(counts = counts, assay = "Spatial")
  # Both sections use the same coordinate frame (they overlap in space).
  meta <- data.frame(x = c(sim$coords[, "x"], sim2$coords[, "x"]),
                     y = c(sim$coords[, "y"], sim2$coords[, "y"]),
                     section = rep(c("A", "B"), each = ncol(c1)),
                     row.names = colnames(counts))
  obj <- SeuratObject::AddMetaData(obj, meta)
  out <- run_tiny(obj, group.by = "section", epochs = 10)
  emb <- SeuratObject::Embeddings(out, "sedr")
  expect_identical(rownames(emb), colnames(obj))
  expect_true(all(is.finite(emb)))
  misc <- SeuratObject::Misc(out[["sedr"]])
  expect_false(misc$params$dec)
  expect_null(misc$dec.q)
  expect_identical(misc$group.by, "section")
  expect_true(all(misc$losses$phase == "pretrain"))
  cl <- SEDRClusters(out, n.clusters = 4, verbose = FALSE)
  expect_length(cl$sedr_clusters, ncol(obj))
  expect_false(anyNA(cl$sedr_clusters))
  # The same data through the default method: the graph has no edge across
  # sections, and the embedding matches the Seurat method's.
  r <- run_tiny(counts, coords = as.matrix(meta[, c("x", "y")]), group.by = meta$section, epochs = 10)
  a <- meta$section == "A"
  expect_equal(Matrix::nnzero(r$graph[a, !a]), 0)
  expect_gt(Matrix::nnzero(r$graph[a, a]), 0)
  expect_equal(unname(r$embedding), unname(emb))
  # dec = TRUE can be forced with group.by.
  forced <- run_tiny(obj, group.by = "section", epochs = 10, dec = TRUE)
  expect_true(SeuratObject::Misc(forced[["sedr"]])$params$dec)
  expect_false(is.null(SeuratObject::Misc(forced[["sedr"]])$dec.q))
})

test_that("Seurat: coordinates from named meta.data columns or a matrix", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(sim)
  obj$px <- obj$x
  obj$py <- obj$y
  a <- run_tiny(obj, coords = c("px", "py"), epochs = 10, dec = FALSE)
  b <- run_tiny(obj, coords = sim$coords, epochs = 10, dec = FALSE)
  c0 <- run_tiny(obj, epochs = 10, dec = FALSE)
  expect_identical(SeuratObject::Embeddings(a, "sedr"), SeuratObject::Embeddings(c0, "sedr"))
  expect_identical(SeuratObject::Embeddings(b, "sedr"), SeuratObject::Embeddings(c0, "sedr"))
})

test_that("SingleCellExperiment round trip", {
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = sim$counts),
    colData = S4Vectors::DataFrame(x = sim$coords[, "x"], y = sim$coords[, "y"],
                                   row.names = colnames(sim$counts))
  )
  out <- run_tiny(sce)
  expect_s4_class(out, "SingleCellExperiment")
  expect_true("SEDR" %in% SingleCellExperiment::reducedDimNames(out))
  emb <- SingleCellExperiment::reducedDim(out, "SEDR")
  expect_equal(dim(emb), c(ncol(sce), 32L))
  expect_identical(rownames(emb), colnames(sce))
  expect_equal(unname(emb), unname(res$embedding))
  md <- S4Vectors::metadata(out)$SEDR
  expect_true(all(c("params", "losses", "dec.q", "coords") %in% names(md)))
  expect_equal(unname(md$coords), unname(sim$coords), ignore_attr = TRUE)
  expect_true(md$params$dec)
  expect_equal(nrow(md$losses), 30)
  expect_equal(unname(rowSums(md$dec.q)), rep(1, ncol(sce)), tolerance = 1e-4)
  # The counts are untouched.
  expect_identical(SummarizedExperiment::assay(out, "counts"), SummarizedExperiment::assay(sce, "counts"))
  cl <- SEDRClusters(out, n.clusters = 4, verbose = FALSE)
  labels <- SummarizedExperiment::colData(cl)$sedr_clusters
  expect_true(is.factor(labels))
  expect_length(labels, ncol(sce))
  expect_lte(nlevels(labels), 4)
  dec_labels <- SEDRClusters(out, method = "dec", verbose = FALSE)
  expect_length(SummarizedExperiment::colData(dec_labels)$sedr_clusters, ncol(sce))
  # name = and use.dimred = are honoured.
  SingleCellExperiment::reducedDim(sce, "PCA") <- stats::prcomp(t(as.matrix(log1p(sim$counts[1:60, ]))), rank. = 6)$x
  out2 <- run_tiny(sce, use.dimred = "PCA", name = "S2", epochs = 10)
  expect_true("S2" %in% SingleCellExperiment::reducedDimNames(out2))
  expect_equal(S4Vectors::metadata(out2)$SEDR$params$input, "reduction")
  expect_equal(S4Vectors::metadata(out2)$SEDR$params$input.dims, 6)
})

test_that("SpatialExperiment: spatialCoords are used by default", {
  skip_if_not_installed("SpatialExperiment")
  spe <- SpatialExperiment::SpatialExperiment(
    assays = list(counts = sim$counts),
    spatialCoords = sim$coords
  )
  out <- run_tiny(spe, epochs = 10, dec = FALSE)
  emb <- SingleCellExperiment::reducedDim(out, "SEDR")
  expect_equal(dim(emb), c(ncol(sim$counts), 32L))
  expect_identical(rownames(emb), colnames(sim$counts))
  ref <- run_tiny(sim$counts, coords = sim$coords, epochs = 10, dec = FALSE)
  expect_equal(unname(emb), unname(ref$embedding))
})

test_that("epochs and dec.epochs default to the mode's schedule, and explicit values win", {
  sim <- SimulateSpatialTissue(n.rows = 8, n.cols = 8, n.genes = 100, seed = 4)
  run <- function(...) RunSEDR(sim$counts, coords = sim$coords, n.hvg = 50, npcs = 10, min.spots = 2,
                               verbose = FALSE, device = "cpu", ...)
  opts <- SEDROptions(dec.clusters = 3, kmeans.restarts = 1)
  cl <- run(options = opts)
  expect_equal(c(cl$params$epochs, cl$params$dec.epochs), c(100, 100))
  expect_equal(as.vector(table(cl$losses$phase)[c("pretrain", "dec")]), c(100, 100))
  im <- run(mode = "imputation", options = opts)
  expect_equal(c(im$params$epochs, im$params$dec.epochs), c(200, 200))
  expect_equal(nrow(im$losses), 200)  # no DEC phase by default in imputation
  own <- run(epochs = 7, options = SEDROptions(dec.clusters = 3, kmeans.restarts = 1, dec.epochs = 3))
  expect_equal(c(own$params$epochs, own$params$dec.epochs, nrow(own$losses)), c(7, 3, 10))
  expect_error(run(epochs = 0), class = "sedr_error")
})
