plot_sim <- function() {
  SimulateSpatialTissue(n.rows = 8, n.cols = 8, n.genes = 60, n.domains = 3,
                        markers.per.domain = 5)
}

test_that(".sedr_palette gives up to 20 distinct fixed colours", {
  p20 <- .sedr_palette(20)
  expect_length(p20, 20L)
  expect_equal(anyDuplicated(toupper(p20)), 0L)
  expect_match(p20, "^#[0-9A-Fa-f]{6}$")
  # Smaller palettes are prefixes, so colours are stable as n grows.
  expect_equal(.sedr_palette(5), p20[1:5])
  expect_length(unique(.sedr_palette(25)), 25L)
})

test_that("SEDRSpatialPlot draws coordinates coloured by labels", {
  sim <- plot_sim()
  p <- SEDRSpatialPlot(sim$coords, labels = sim$domain)
  expect_s3_class(p, "ggplot")
  built <- ggplot2::ggplot_build(p)
  d <- built$data[[1]]
  expect_equal(nrow(d), 64L)
  expect_equal(sort(d$x), sort(unname(sim$coords[, "x"])))
  # Reversed y axis: built y is -y, and a fixed aspect ratio.
  expect_equal(sort(d$y), sort(-unname(sim$coords[, "y"])))
  expect_s3_class(p$coordinates, "CoordFixed")
  # Colours follow the palette in level order.
  pal <- .sedr_palette(3)
  expect_equal(d$colour, pal[as.integer(sim$domain)])
  expect_equal(p$labels$colour, "label")
})

test_that("SEDRSpatialPlot reads labels and coordinates from objects", {
  sim <- plot_sim()
  p_sim <- SEDRSpatialPlot(sim)
  expect_equal(nrow(p_sim$data), 64L)
  expect_equal(p_sim$data$label, unname(sim$domain))

  df <- data.frame(sim$coords, sedr_clusters = as.character(sim$domain))
  p_df <- SEDRSpatialPlot(df)
  expect_equal(as.character(p_df$data$label), as.character(sim$domain))
  expect_equal(levels(p_df$data$label), levels(sim$domain))

  # Unnamed coordinate columns: the first two are x and y.
  xy <- unname(sim$coords[, c("x", "y")])
  p_xy <- SEDRSpatialPlot(xy, labels = as.integer(sim$domain))
  expect_equal(p_xy$data$x, unname(sim$coords[, "x"]))
})

test_that("SEDRSpatialPlot works on a Seurat object", {
  skip_if_not_installed("SeuratObject")
  sim <- plot_sim()
  obj <- SimulationToSeurat(sim)
  obj$sedr_clusters <- factor(rev(as.integer(sim$domain)))
  p <- SEDRSpatialPlot(obj)
  expect_equal(p$data$x, unname(sim$coords[, "x"]))
  expect_equal(as.integer(as.character(p$data$label)),
               rev(as.integer(sim$domain)))
  p2 <- SEDRSpatialPlot(obj, group.by = "domain")
  expect_equal(as.character(p2$data$label), as.character(sim$domain))
  # Explicit coordinates, matched by spot name even when shuffled.
  shuffled <- sim$coords[rev(rownames(sim$coords)), ] * 2
  p3 <- SEDRSpatialPlot(obj, coords = shuffled)
  expect_equal(p3$data$x, 2 * unname(sim$coords[, "x"]))
  expect_error(SEDRSpatialPlot(obj, group.by = "nope"), "`group.by`",
               class = "sedr_error_input")
})

test_that("SEDRSpatialPlot accepts palettes and point sizes", {
  sim <- plot_sim()
  cols <- c(Domain1 = "red", Domain2 = "green", Domain3 = "blue")
  p <- SEDRSpatialPlot(sim, palette = rev(cols), pt.size = 2)
  d <- ggplot2::ggplot_build(p)$data[[1]]
  expect_equal(d$colour, unname(cols[as.character(sim$domain)]))
  expect_equal(unique(d$size), 2)
  expect_error(SEDRSpatialPlot(sim, palette = c("red", "blue")),
               "`palette`", class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, palette = c(Domain1 = "red")),
               "Domain2", class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, pt.size = -1), "`pt.size`")
})

test_that("SEDRSpatialPlot validates its inputs", {
  sim <- plot_sim()
  expect_error(SEDRSpatialPlot(sim$coords), "`labels`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim$coords, labels = 1:3), "`labels`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(list(1)), "`object`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, coords = matrix(1:4, 2)), "`coords`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, group.by = 1), "`group.by`")
})

test_that("SEDRLossPlot draws one panel per component, wide or long", {
  wide <- data.frame(epoch = rep(1:20, 2),
                     phase = rep(c("pretrain", "train"), each = 20))
  wide$total <- exp(-wide$epoch / 5) + 0.1
  wide$mse <- wide$total / 2
  wide$dec_kl <- ifelse(wide$phase == "train", 0.01, NA)
  p <- SEDRLossPlot(wide)
  expect_s3_class(p, "ggplot")
  expect_equal(levels(p$data$component), c("total", "mse", "dec_kl"))
  # NA entries (no KL loss while pretraining) are dropped.
  expect_equal(nrow(p$data), 20 * 2 * 2 + 20)
  expect_true(any(vapply(p$scales$scales, function(s) {
    "y" %in% s$aesthetics && s$trans$name == "log-10"
  }, logical(1))))
  expect_equal(nrow(ggplot2::ggplot_build(p)$layout$layout), 3L)

  long <- p$data
  p_long <- SEDRLossPlot(long)
  expect_equal(p_long$data, p$data)
})

test_that("SEDRLossPlot uses a linear axis for non-positive losses", {
  losses <- data.frame(epoch = 1:5, total = c(1, 0.5, 0, -0.2, -0.3))
  p <- SEDRLossPlot(losses)
  has_log <- any(vapply(p$scales$scales, function(s) {
    "y" %in% s$aesthetics && identical(s$trans$name, "log-10")
  }, logical(1)))
  expect_false(has_log)
  expect_equal(as.character(unique(p$data$phase)), "train")
  expect_equal(p$labels$y, "loss")
})

test_that("SEDRLossPlot validates its input", {
  expect_error(SEDRLossPlot(1:3), "`losses`", class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(step = 1, total = 1)), "epoch",
               class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(epoch = 1:2, phase = "a")),
               "numeric loss", class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(epoch = 1:2, total = NA_real_)),
               "finite", class = "sedr_error_input")
})

# ---- SEDRUmapPlot ------------------------------------------------------------

# Three well separated blobs in 6 dimensions, named spots, shuffled labels.
umap_blobs <- function(n = 30) {
  lab <- rep(c("A", "B", "C"), each = n)
  centre <- rbind(A = rep(0, 6), B = rep(8, 6), C = c(8, -8, 8, -8, 8, -8))
  withr_seed <- function(expr) .with_seed(7, expr)
  emb <- withr_seed(centre[lab, ] + matrix(stats::rnorm(3 * n * 6), ncol = 6))
  dimnames(emb) <- list(paste0("s", seq_len(3 * n)), paste0("SEDR_", 1:6))
  list(emb = emb, labels = stats::setNames(factor(lab), rownames(emb)))
}

test_that("SEDRUmapPlot draws a seeded UMAP of an embedding matrix", {
  skip_if_umap_unavailable()
  b <- umap_blobs()
  p <- SEDRUmapPlot(b$emb, labels = b$labels)
  expect_s3_class(p, "ggplot")
  expect_named(p$data, c("spot", "UMAP_1", "UMAP_2", "label"))
  expect_equal(p$data$spot, rownames(b$emb))
  expect_equal(p$data$label, unname(b$labels))
  expect_equal(p$labels$colour, "label")
  # Same settings as a direct uwot call under the same seed.
  direct <- .with_seed(42, uwot::umap(b$emb, n_neighbors = 15, min_dist = 0.3,
                                       n_threads = 1, verbose = FALSE))
  expect_equal(p$data$UMAP_1, direct[, 1], ignore_attr = TRUE)
  expect_equal(p$data$UMAP_2, direct[, 2], ignore_attr = TRUE)
  # Reproducible, seed-dependent, and the caller's RNG stream is untouched.
  set.seed(99)
  before <- .Random.seed
  p2 <- SEDRUmapPlot(b$emb, labels = b$labels)
  expect_identical(.Random.seed, before)
  expect_identical(p2$data, p$data)
  p3 <- SEDRUmapPlot(b$emb, labels = b$labels, seed.use = 3)
  expect_false(isTRUE(all.equal(p3$data$UMAP_1, p$data$UMAP_1)))
  # The blobs stay apart: each spot's nearest UMAP neighbour shares its label.
  d <- as.matrix(stats::dist(p$data[, c("UMAP_1", "UMAP_2")]))
  diag(d) <- Inf
  expect_equal(mean(p$data$label[apply(d, 1, which.min)] == p$data$label), 1)
  # Colours: the package palette in level order.
  built <- ggplot2::ggplot_build(p)$data[[1]]
  expect_equal(built$colour, .sedr_palette(3)[as.integer(b$labels)])
})

test_that("SEDRUmapPlot uses dims, passes ... to uwot and matches labels by name", {
  skip_if_umap_unavailable()
  b <- umap_blobs(10)
  p <- SEDRUmapPlot(b$emb, labels = b$labels, dims = 1:2, n.neighbors = 5,
                    min.dist = 0.1, seed.use = 1, n_epochs = 20)
  direct <- .with_seed(1, uwot::umap(b$emb[, 1:2], n_neighbors = 5,
                                      min_dist = 0.1, n_threads = 1,
                                      n_epochs = 20, verbose = FALSE))
  expect_equal(p$data$UMAP_1, direct[, 1], ignore_attr = TRUE)
  shuffled <- rev(b$labels)
  p2 <- SEDRUmapPlot(b$emb, labels = shuffled, dims = 1:2, n.neighbors = 5,
                     min.dist = 0.1, seed.use = 1, n_epochs = 20)
  expect_equal(p2$data$label, unname(b$labels))
  # More neighbours than spots is lowered, not an error.
  expect_s3_class(SEDRUmapPlot(b$emb[1:8, ], labels = b$labels[1:8],
                               n.neighbors = 50), "ggplot")
})

test_that("SEDRUmapPlot reads sedr_result, Seurat and SingleCellExperiment objects", {
  skip_if_umap_unavailable()
  b <- umap_blobs(10)
  res <- structure(list(embedding = b$emb), class = "sedr_result")
  p_res <- SEDRUmapPlot(res, labels = b$labels)
  expect_equal(p_res$data$spot, rownames(b$emb))
  expect_equal(p_res$data$label, unname(b$labels))
  expect_error(SEDRUmapPlot(res), "`labels`", class = "sedr_error_input")

  skip_if_not_installed("SeuratObject")
  counts <- Matrix::Matrix(stats::rpois(20 * 30, 5), 20, 30, sparse = TRUE,
                           dimnames = list(paste0("g", 1:20), rownames(b$emb)))
  obj <- SeuratObject::CreateSeuratObject(counts)
  obj[["sedr"]] <- SeuratObject::CreateDimReducObject(
    embeddings = b$emb, key = "SEDR_", assay = "RNA")
  obj$sedr_clusters <- b$labels
  obj$other <- as.character(rev(b$labels))
  p <- SEDRUmapPlot(obj)
  expect_equal(p$data[, c("UMAP_1", "UMAP_2")], p_res$data[, c("UMAP_1", "UMAP_2")])
  expect_equal(p$data$label, unname(b$labels))
  expect_equal(p$scales$get_scales("colour")$name, "sedr_clusters")
  # A stored UMAP is drawn as it is, with nothing computed.
  stored <- cbind(umapsedr_1 = seq_len(30), umapsedr_2 = -seq_len(30))
  rownames(stored) <- rownames(b$emb)
  obj[["umap.sedr"]] <- SeuratObject::CreateDimReducObject(
    embeddings = stored, key = "umapsedr_", assay = "RNA")
  p_stored <- SEDRUmapPlot(obj, umap.reduction = "umap.sedr")
  expect_equal(p_stored$data$UMAP_1, as.numeric(1:30))
  expect_equal(p_stored$data$UMAP_2, -as.numeric(1:30))
  p_other <- SEDRUmapPlot(obj, group.by = "other", umap.reduction = "umap.sedr")
  expect_equal(as.character(p_other$data$label), as.character(rev(b$labels)))
  expect_equal(p_other$scales$get_scales("colour")$name, "other")
  expect_error(SEDRUmapPlot(obj, umap.reduction = "umap.sedr", n_epochs = 5),
               "`...`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(obj, reduction = "pca"), "`reduction`",
               class = "sedr_error_input")
  expect_error(SEDRUmapPlot(obj, umap.reduction = "umap"), "`umap.reduction`",
               class = "sedr_error_input")
  expect_error(SEDRUmapPlot(obj, group.by = "nope"), "`group.by`",
               class = "sedr_error_input")

  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = as.matrix(counts)),
    colData = S4Vectors::DataFrame(domain = b$labels, row.names = rownames(b$emb)),
    reducedDims = list(SEDR = b$emb))
  p_sce <- SEDRUmapPlot(sce, group.by = "domain")
  expect_equal(p_sce$data[, c("UMAP_1", "UMAP_2")], p_res$data[, c("UMAP_1", "UMAP_2")])
  expect_equal(p_sce$data$label, unname(b$labels))
  expect_error(SEDRUmapPlot(sce, group.by = "domain", reduction = "PCA"),
               "`reduction`", class = "sedr_error_input")
})

test_that("SEDRUmapPlot validates its inputs", {
  skip_if_umap_unavailable()
  b <- umap_blobs(10)
  expect_error(SEDRUmapPlot(list(1)), "`object`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels[1:5]), "`labels`",
               class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, n.neighbors = 1),
               "`n.neighbors`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, min.dist = -1),
               "`min.dist`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, seed.use = "a"),
               "`seed.use`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, dims = 1:9),
               "`dims`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, palette = "red"),
               "`palette`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, labels = b$labels, umap.reduction = "u"),
               "`umap.reduction`", class = "sedr_error_input")
  expect_error(SEDRUmapPlot(b$emb, group.by = 2), "`group.by`",
               class = "sedr_error_input")
  bad <- b$emb
  bad[1, 1] <- NA
  expect_error(SEDRUmapPlot(bad, labels = b$labels), class = "sedr_error_input")
})

# ---- SEDRGenePlot ------------------------------------------------------------

# CPM of the simulation's counts, genes x spots (dense; the data are tiny).
sim_cpm <- function(sim) {
  m <- as.matrix(sim$counts)
  t(t(m) / colSums(m)) * 1e6
}

# A Seurat object with a hand-made "SEDR" assay standing in for RunSEDR()'s
# denoised output: the first 10 genes, CPM averaged with a constant.
seurat_with_denoised <- function(sim) {
  obj <- SimulationToSeurat(sim)
  den <- (sim_cpm(sim)[1:10, ] + 1000) / 2
  obj[["SEDR"]] <- SEDR:::denoised_assay(den, den)
  list(obj = obj, den = den)
}

test_that("SEDRGenePlot draws raw and denoised log1p(CPM) side by side (Seurat)", {
  skip_if_not_installed("patchwork")
  skip_if_not_installed("SeuratObject")
  sim <- plot_sim()
  s <- seurat_with_denoised(sim)
  p <- SEDRGenePlot(s$obj, "Gene3")
  expect_s3_class(p, "patchwork")
  expect_s3_class(p, "ggplot")
  expect_length(p$patches$plots, 1L)  # two panels: one patch plus the last
  raw <- p[[1]]$data
  den <- p[[2]]$data
  expect_named(raw, c("spot", "x", "y", "value"))
  expect_equal(raw$spot, colnames(sim$counts))
  expect_equal(raw$x, unname(sim$coords[, "x"]))
  expect_equal(raw$value, unname(log1p(sim_cpm(sim)["Gene3", ])))
  expect_equal(den$value, unname(log1p(s$den["Gene3", ])))
  expect_equal(p[[1]]$labels$title, "raw")
  expect_equal(p[[2]]$labels$title, "SEDR denoised")
  expect_equal(p$patches$annotation$title, "Gene3")
  # Each panel's colour range spans its 1st to 99th percentile.
  lim <- p[[1]]$scales$get_scales("colour")$limits
  expect_equal(lim, unname(stats::quantile(raw$value, c(0.01, 0.99))))
  expect_false(anyNA(ggplot2::ggplot_build(p[[1]])$data[[1]]$colour))
  p_full <- SEDRGenePlot(s$obj, "Gene3", clip.quantiles = NULL)
  expect_null(p_full[[2]]$scales$get_scales("colour")$limits)
  # Panels are restyled together with `&`.
  p2 <- p & ggplot2::theme(legend.position = "bottom")
  expect_equal(p2[[2]]$theme$legend.position, "bottom")
})

test_that("SEDRGenePlot explains what is missing (Seurat)", {
  skip_if_not_installed("patchwork")
  skip_if_not_installed("SeuratObject")
  sim <- plot_sim()
  plain <- SimulationToSeurat(sim)
  expect_error(SEDRGenePlot(plain, "Gene3"), "mode = \"imputation\"",
               class = "sedr_error_input")
  s <- seurat_with_denoised(sim)
  expect_error(SEDRGenePlot(s$obj, "Gene50"), "denoised genes",
               class = "sedr_error_input")
  expect_error(SEDRGenePlot(s$obj, "Gene50"), "`feature`")
  expect_error(SEDRGenePlot(s$obj, c("Gene1", "Gene2")), "`feature`",
               class = "sedr_error_input")
  expect_error(SEDRGenePlot(s$obj, "Gene3", assay = "SEDR"), "`assay`",
               class = "sedr_error_input")
  expect_error(SEDRGenePlot(s$obj, "Gene3", denoised.assay = "denoised"),
               "no assay \"denoised\"", class = "sedr_error_input")
  expect_error(SEDRGenePlot(s$obj, "Gene3", clip.quantiles = c(0.9, 0.1)),
               "`clip.quantiles`", class = "sedr_error_input")
  expect_error(SEDRGenePlot(sim, "Gene3"), "`object`",
               class = "sedr_error_input")
})

test_that("SEDRGenePlot works on a sedr_result from RunSEDR(mode = \"imputation\")", {
  skip_if_not_installed("patchwork")
  sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100,
                               n.domains = 3, markers.per.domain = 5)
  imp <- RunSEDR(sim$counts, coords = sim$coords, mode = "imputation",
                 epochs = 5, n.hvg = 30, min.spots = 5, device = "cpu",
                 verbose = FALSE)
  gene <- colnames(imp$denoised$expression)[1]
  p <- SEDRGenePlot(imp, gene, counts = sim$counts, coords = sim$coords)
  expect_equal(p[[1]]$data$value, unname(log1p(sim_cpm(sim)[gene, ])))
  expect_equal(p[[2]]$data$value,
               unname(log1p(imp$denoised$expression[, gene])))
  # Spots x genes counts and shuffled coordinates give the same plot.
  shuffled <- sim$coords[rev(rownames(sim$coords)), ]
  p_t <- SEDRGenePlot(imp, gene, counts = Matrix::t(sim$counts),
                      coords = shuffled)
  expect_equal(p_t[[1]]$data, p[[1]]$data)
  expect_error(SEDRGenePlot(imp, gene, coords = sim$coords), "`counts`",
               class = "sedr_error_input")
  expect_error(SEDRGenePlot(imp, gene, counts = sim$counts), "`coords`",
               class = "sedr_error_input")
  expect_error(SEDRGenePlot(imp, gene, counts = "x", coords = sim$coords),
               "`counts`", class = "sedr_error_input")
  expect_error(SEDRGenePlot(imp, gene, counts = sim$counts[, 1:50],
                            coords = sim$coords), "`counts`",
               class = "sedr_error_input")
  clustering <- structure(list(embedding = matrix(0, 2, 2), denoised = NULL),
                          class = "sedr_result")
  expect_error(SEDRGenePlot(clustering, gene, counts = sim$counts,
                            coords = sim$coords),
               "mode = \"imputation\"", class = "sedr_error_input")
})

test_that("SEDRGenePlot works on a SingleCellExperiment", {
  skip_if_not_installed("patchwork")
  skip_if_not_installed("SingleCellExperiment")
  sim <- plot_sim()
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = sim$counts),
    colData = S4Vectors::DataFrame(x = sim$coords[, "x"], y = sim$coords[, "y"],
                                   row.names = colnames(sim$counts)))
  expect_error(SEDRGenePlot(sce, "Gene3"), "mode = \"imputation\"",
               class = "sedr_error_input")
  den <- t(sim_cpm(sim)[c("Gene3", "Gene7"), ]) / 2
  S4Vectors::metadata(sce)$SEDR <- list(denoised = list(expression = den))
  p <- SEDRGenePlot(sce, "Gene7")
  expect_equal(p[[1]]$data$value, unname(log1p(sim_cpm(sim)["Gene7", ])))
  expect_equal(p[[2]]$data$value, unname(log1p(den[, "Gene7"])))
  expect_equal(p[[2]]$data$y, unname(sim$coords[, "y"]))
  expect_error(SEDRGenePlot(sce, "Gene7", assay = "logcounts"), "`assay`",
               class = "sedr_error_input")
})

test_that("SEDRSpatialPlot's legend.title names the legend", {
  sim <- SimulateSpatialTissue(n.rows = 8, n.cols = 8, n.genes = 50, n.domains = 2,
                               markers.per.domain = 5)
  default <- SEDRSpatialPlot(sim$coords, labels = sim$domain)
  expect_identical(default$scales$get_scales("colour")$name, "label")
  titled <- SEDRSpatialPlot(sim$coords, labels = sim$domain, legend.title = "domain")
  expect_identical(titled$scales$get_scales("colour")$name, "domain")
  expect_error(SEDRSpatialPlot(sim$coords, labels = sim$domain, legend.title = 1),
               class = "sedr_error_input", regexp = "`legend.title`")
})
