# Seurat-facing behaviour that differs between SeuratObject 4 (Assay) and 5
# (Assay5, layers). make test runs this file twice: with Debian's
# SeuratObject 4 and with SeuratObject 5 building Assay5 objects. No
# warning may reach the user on either version.

skip_if_not_installed("SeuratObject")

so_v5 <- utils::packageVersion("SeuratObject") >= "5.0.0"
v5_assays <- so_v5 && identical(getOption("Seurat.object.assay.version"), "v5")

sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200, seed = 3)
small_args <- list(epochs = 10, dec = FALSE, n.hvg = 60, npcs = 10, min.spots = 5,
                   verbose = FALSE, device = "cpu")
run_small <- function(object, ...) {
  args <- small_args
  over <- list(...)
  args[names(over)] <- over
  do.call(RunSEDR, c(list(object), args))
}

test_that("the object has the assay class of its SeuratObject version", {
  obj <- SimulationToSeurat(sim)
  expected <- if (v5_assays) "Assay5" else "Assay"
  expect_true(methods::is(obj[["Spatial"]], expected))
})

test_that("imputation adds an Assay5 (data, scale.data) on SeuratObject 5, an Assay on 4, without warnings", {
  obj <- SimulationToSeurat(sim)
  expect_no_warning(out <- run_small(obj, mode = "imputation"))
  den <- out[["SEDR"]]
  if (so_v5) {
    expect_true(methods::is(den, "Assay5"))
    expect_setequal(SeuratObject::Layers(den), c("data", "scale.data"))
  } else {
    expect_true(methods::is(den, "Assay"))
  }
  data <- SEDR:::seurat_layer(out, "SEDR", "data")
  scaled <- SEDR:::seurat_layer(out, "SEDR", "scale.data")
  expect_equal(dim(data), c(60, ncol(obj)))
  expect_identical(dim(scaled), dim(data))
  expect_identical(colnames(data), colnames(obj))
  expect_true(all(data >= 0))
  expect_setequal(SeuratObject::VariableFeatures(den), rownames(data))
  # The default assay and the meta data are not touched (no nCount_SEDR).
  expect_identical(SeuratObject::DefaultAssay(out), "Spatial")
  expect_false(any(grepl("SEDR", colnames(out[[]]))))
  # The gene plot reads the new assay on either version.
  expect_no_warning(p <- SEDRGenePlot(out, rownames(data)[1]))
  expect_s3_class(p, "ggplot")
})

test_that("a default assay other than the counts assay is left as it is", {
  obj <- SimulationToSeurat(sim)
  obj[["other"]] <- SeuratObject::CreateAssayObject(counts = SEDR:::get_counts(obj, "Spatial")[1:50, ])
  SeuratObject::DefaultAssay(obj) <- "other"
  expect_no_warning(out <- run_small(obj, assay = "Spatial"))
  expect_identical(SeuratObject::DefaultAssay(out), "other")
  expect_identical(SeuratObject::DefaultAssay(out[["sedr"]]), "Spatial")
  expect_identical(SeuratObject::Misc(out[["sedr"]])$params$n.hvg, 60L)
  ref <- run_small(SimulationToSeurat(sim))
  expect_identical(SeuratObject::Embeddings(out, "sedr"), SeuratObject::Embeddings(ref, "sedr"))
})

test_that("coordinates come from every image / FOV of the object", {
  obj <- SimulationToSeurat(sim)
  xy <- sim$coords
  left <- rownames(xy)[xy[, 1] < stats::median(xy[, 1])]
  right <- setdiff(rownames(xy), left)
  fov <- function(cells, key) {
    SeuratObject::CreateFOV(data.frame(x = xy[cells, 1], y = xy[cells, 2], cell = cells),
                            type = "centroids", assay = "Spatial", key = key)
  }
  obj[["left"]] <- fov(left, "left_")
  obj[["right"]] <- fov(right, "right_")
  # Without x / y columns the images are the only source of coordinates.
  obj$x <- NULL
  obj$y <- NULL
  expect_no_warning(from_images <- run_small(obj))
  from_matrix <- run_small(obj, coords = xy)
  expect_identical(SeuratObject::Embeddings(from_images, "sedr"),
                   SeuratObject::Embeddings(from_matrix, "sedr"))
})

test_that("split counts layers (SeuratObject 5) are joined on a copy; the object keeps its layers", {
  skip_if_not(v5_assays, "needs SeuratObject 5 with Assay5 objects")
  obj <- SimulationToSeurat(sim)
  obj$section <- ifelse(sim$coords[colnames(obj), 1] < stats::median(sim$coords[, 1]), "A", "B")
  obj[["Spatial"]] <- split(obj[["Spatial"]], f = obj$section)
  layers_before <- SeuratObject::Layers(obj[["Spatial"]])
  expect_true(all(c("counts.A", "counts.B") %in% layers_before))
  expect_no_warning(out <- run_small(obj, group.by = "section"))
  expect_identical(SeuratObject::Layers(out[["Spatial"]]), layers_before)
  expect_identical(rownames(SeuratObject::Embeddings(out, "sedr")), colnames(obj))
  # The same counts, unsplit, give the same model input and embedding.
  joined <- SimulationToSeurat(sim)
  joined$section <- obj$section
  ref <- run_small(joined, group.by = "section")
  expect_identical(SeuratObject::Embeddings(out, "sedr"), SeuratObject::Embeddings(ref, "sedr"))
})

test_that("SEDRIntegration accepts the arguments IntegrateLayers() passes", {
  obj <- SimulationToSeurat(sim)
  section <- ifelse(sim$coords[colnames(obj), 1] < stats::median(sim$coords[, 1]), "A", "B")
  pcs <- stats::prcomp(t(log1p(as.matrix(SEDR:::get_counts(obj, "Spatial")))), rank. = 10)$x
  orig <- SeuratObject::CreateDimReducObject(pcs, key = "PC_", assay = "Spatial")
  assay <- obj[["Spatial"]]
  if (v5_assays) assay <- split(assay, f = section)
  layers <- if (v5_assays) c("counts.A", "counts.B") else "counts"
  # IntegrateLayers() calls method(object = <assay>, orig = , layers = ,
  # scale.layer = , features = , groups = , ...) plus the user's arguments.
  out <- expect_no_warning(SEDRIntegration(
    object = assay, orig = orig, layers = layers, scale.layer = "scale.data",
    features = rownames(obj)[1:50], groups = data.frame(group = section, row.names = colnames(obj)),
    coords = sim$coords, epochs = 10, device = "cpu", n.threads = 1, verbose = FALSE
  ))
  expect_named(out, "integrated.sedr")
  emb <- SeuratObject::Embeddings(out$integrated.sedr)
  expect_identical(rownames(emb), colnames(obj))
  expect_identical(SeuratObject::Misc(out$integrated.sedr)$params$n.threads, 1L)
})

test_that("thread counts above the cores are capped with a classed warning and recorded", {
  obj <- SimulationToSeurat(sim)
  expect_warning(out <- run_small(obj, n.threads = 1e5), class = "sedr_warning_threads")
  used <- SeuratObject::Misc(out[["sedr"]])$params$n.threads
  expect_identical(used, SEDR:::available_cores())
  ref <- run_small(obj, n.threads = used)
  expect_identical(SeuratObject::Embeddings(out, "sedr"), SeuratObject::Embeddings(ref, "sedr"))
})
