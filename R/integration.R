#' SEDR as an integration method for Seurat v5's `IntegrateLayers()`
#'
#' With Seurat 5, sections kept as separate layers of one assay are
#' integrated with `IntegrateLayers(object, method = SEDRIntegration, ...)`.
#' SEDR trains one model on the joint reduction (`orig.reduction`, usually
#' the PCA of all sections) over a block-diagonal spatial graph: each spot's
#' neighbours come from its own section only. With `integrate = "mnn"`
#' (before training) or `integrate = "soft"` (a Harmony-style correction of
#' the trained embedding) the sections are mixed (see [RunSEDR()]). DEC is off by default, as in the
#' reference's integration recipe. The result is a new reduction
#' (`new.reduction`, default `"integrated.sedr"`) to cluster with
#' [SEDRClusters()] or, where the harmony package is installed, to pass to
#' [RunSEDRHarmony()].
#'
#' `IntegrateLayers()` hands the method the assay, not the Seurat object,
#' so the spot coordinates must be passed through it: `coords` is a matrix
#' with one row per spot (spot names as row names), for example
#' `GetTissueCoordinates()` of every image bound by rows, or the `x`/`y`
#' columns of the meta data. Seurat 4 (what Debian ships) has no
#' `IntegrateLayers()`; there use [RunSEDR()] with `group.by`, which trains
#' the same model.
#'
#' @param object The assay `IntegrateLayers()` passes (its layers split by
#'   section). Only its spot names are used.
#' @param orig The joint reduction (`DimReduc`) to integrate, passed by
#'   `IntegrateLayers()` from `orig.reduction`.
#' @param groups The data frame of section labels (one row per spot) passed
#'   by `IntegrateLayers()`; its first column is used.
#' @param coords Spot coordinates: a numeric matrix or data frame, spots x 2
#'   (or 3), with spot names as row names. Required.
#' @param new.reduction Name of the reduction to create.
#' @param reduction.key Key of the new reduction.
#' @param dims Dimensions of `orig` to use (default: all).
#' @param layers,features,scale.layer,assay Passed by `IntegrateLayers()`;
#'   unused (the input is `orig`).
#' @inheritParams RunSEDR.default
#' @param ... Unused arguments from `IntegrateLayers()` are ignored.
#' @return A named list with one `DimReduc`, as `IntegrateLayers()` expects.
#' @export
#' @examples
#' # Two simulated sections; IntegrateLayers() would pass `orig` and `groups`.
#' a <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 1)
#' b <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 2)
#' colnames(b$counts) <- rownames(b$coords) <- paste0("b_", colnames(b$counts))
#' counts <- cbind(a$counts, b$counts)
#' pcs <- stats::prcomp(t(log1p(as.matrix(counts))), rank. = 10)$x
#' if (requireNamespace("SeuratObject", quietly = TRUE)) {
#'   orig <- SeuratObject::CreateDimReducObject(pcs, key = "PC_", assay = "RNA")
#'   groups <- data.frame(group = rep(c("a", "b"), each = 100), row.names = rownames(pcs))
#'   out <- SEDRIntegration(NULL, orig = orig, groups = groups,
#'                          coords = rbind(a$coords, b$coords), epochs = 20,
#'                          device = "cpu", verbose = FALSE)
#'   dim(SeuratObject::Embeddings(out$integrated.sedr))
#' }
SEDRIntegration <- function(object = NULL, orig, groups, coords, new.reduction = "integrated.sedr",
                            reduction.key = "SEDRintegrated_", dims = NULL, k.neighbors = 12,
                            integrate = "none",
                            epochs = NULL, dec = FALSE, device = "auto", n.threads = 1,
                            seed.use = 42, options = SEDROptions(), verbose = TRUE,
                            layers = NULL, features = NULL, scale.layer = NULL, assay = NULL, ...) {
  if (!requireNamespace("SeuratObject", quietly = TRUE)) {
    sedr_abort("needs the SeuratObject package.", kind = "dependency", arg = "object")
  }
  if (missing(orig) || !methods::is(orig, "DimReduc")) {
    sedr_abort("must be the joint reduction (a DimReduc); IntegrateLayers() passes it from `orig.reduction`.",
               arg = "orig")
  }
  if (missing(coords) || is.null(coords)) {
    sedr_abort("is required: IntegrateLayers() does not pass the images. Give a matrix of spot coordinates with spot names as row names.",
               arg = "coords")
  }
  if (!is.character(new.reduction) || length(new.reduction) != 1 || !nzchar(new.reduction)) {
    sedr_abort("must be one non-empty name.", arg = "new.reduction")
  }
  emb <- check_reduction_matrix(SeuratObject::Embeddings(orig), dims)
  spots <- rownames(emb)
  if (missing(groups) || is.null(groups)) {
    sedr_abort("must give the section of each spot; IntegrateLayers() passes it.", arg = "groups")
  }
  group <- if (is.data.frame(groups)) {
    if (!ncol(groups)) sedr_abort("has no column.", arg = "groups")
    g <- groups[[1]]
    if (!is.null(rownames(groups)) && all(spots %in% rownames(groups))) g <- groups[spots, 1]
    g
  } else {
    groups
  }
  xy <- align_coords(check_coords(coords), spots)
  res <- run_sedr(counts = NULL, input = emb, coords = xy, group = group, features = NULL,
                  k.neighbors = k.neighbors, mode = "clustering", epochs = epochs, dec = dec,
                  device = device, n.threads = n.threads, seed.use = seed.use, n.hvg = NA,
                  npcs = NA, min.spots = NA, min.counts = NA, options = options, verbose = verbose,
                  integrate = integrate)
  out <- res$embedding
  colnames(out) <- paste0(reduction.key, seq_len(ncol(out)))
  # The graph, coordinates and sections let SEDRClusters() start from the
  # smoothed embedding and refine within each section, as after RunSEDR().
  misc <- list(params = res$params, losses = res$losses, timings = res$timings, versions = res$versions,
               orig.key = SeuratObject::Key(orig), graph = res$graph, coords = res$coords,
               sections = res$sections)
  value <- list(SeuratObject::CreateDimReducObject(embeddings = out, key = reduction.key,
                                                   assay = SeuratObject::DefaultAssay(orig), misc = misc))
  names(value) <- new.reduction
  value
}

#' Harmony on the SEDR embedding
#'
#' The SEDR authors' integration recipe: Harmony (Korsunsky et al. 2019) run
#' on the `sedr` reduction, with the sections as the batch variable. It
#' needs the `harmony` package (CRAN; not part of Debian, so not a
#' dependency of SEDR). SEDR's own mixing ([RunSEDR()] with `group.by` and
#' `integrate = "soft"`, a Harmony-style correction written in this package, or
#' `"mnn"`) needs no other package; this bridge is for comparing
#' with, or adding to, the published recipe. Harmony's argument naming
#' changed in version 1.0 (`reduction.use`, before `reduction`); both work.
#'
#' @param object A `Seurat` object with a SEDR reduction.
#' @param group.by Meta data column with the section of each spot.
#' @param reduction The reduction to correct (`"sedr"`).
#' @param reduction.name Name of the corrected reduction (`"sedr.harmony"`).
#' @param ... Further arguments to `harmony::RunHarmony()` (e.g. `theta`).
#' @return The object with the reduction `reduction.name` added.
#' @export
#' @examples
#' if (requireNamespace("harmony", quietly = TRUE) &&
#'     requireNamespace("SeuratObject", quietly = TRUE)) {
#'   a <- SimulationToSeurat(SimulateSpatialTissue(n.rows = 10, n.cols = 10, seed = 1))
#'   b <- SimulationToSeurat(SimulateSpatialTissue(n.rows = 10, n.cols = 10, seed = 2))
#'   obj <- merge(a, b, add.cell.ids = c("a", "b"))
#'   obj$section <- sub("_.*", "", colnames(obj))
#'   obj <- RunSEDR(obj, group.by = "section", epochs = 20, n.hvg = 100, npcs = 20,
#'                  min.spots = 5, verbose = FALSE)
#'   obj <- RunSEDRHarmony(obj, group.by = "section", verbose = FALSE)
#' }
RunSEDRHarmony <- function(object, group.by, reduction = "sedr", reduction.name = "sedr.harmony", ...) {
  if (!requireNamespace("harmony", quietly = TRUE)) {
    sedr_abort("needs the harmony package (install.packages(\"harmony\")); SEDR's own mixing is RunSEDR(group.by = , integrate = \"soft\"), a Harmony-style correction written in SEDR.",
               kind = "dependency", arg = "object")
  }
  if (!methods::is(object, "Seurat")) sedr_abort("must be a Seurat object.", arg = "object")
  if (!is.character(reduction) || length(reduction) != 1 || !reduction %in% SeuratObject::Reductions(object)) {
    sedr_abort("must name a reduction of the object; run RunSEDR() first.", arg = "reduction")
  }
  if (missing(group.by) || !is.character(group.by) || length(group.by) != 1 ||
      !group.by %in% colnames(object[[]])) {
    sedr_abort("must name one meta.data column holding the section of each spot.", arg = "group.by")
  }
  if (!is.character(reduction.name) || length(reduction.name) != 1 || !nzchar(reduction.name)) {
    sedr_abort("must be one non-empty name.", arg = "reduction.name")
  }
  run <- utils::getS3method("RunHarmony", "Seurat", envir = asNamespace("harmony"))
  args <- list(object, group.by.vars = group.by, reduction.save = reduction.name,
               dims.use = seq_len(ncol(SeuratObject::Embeddings(object, reduction))), ...)
  args[[if ("reduction.use" %in% names(formals(run))) "reduction.use" else "reduction"]] <- reduction
  do.call(harmony::RunHarmony, args)
}
