#' SEDR as an integration method for Seurat v5's `IntegrateLayers()`
#'
#' With Seurat 5, sections kept as separate layers of one assay are
#' integrated with `IntegrateLayers(object, method = SEDRIntegration, ...)`.
#' SEDR trains one model on the joint reduction (`orig.reduction`, usually
#' the PCA of all sections) over a block-diagonal spatial graph: each spot's
#' neighbours come from its own section only, so sections share the
#' feature encoder but never an edge. DEC is off by default, as in the
#' reference's integration recipe. The result is a new reduction
#' (`new.reduction`, default `"integrated.sedr"`) to cluster with
#' [SEDRClusters()] or to feed to Harmony (see the integration vignette).
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
                  npcs = NA, min.spots = NA, min.counts = NA, options = options, verbose = verbose)
  out <- res$embedding
  colnames(out) <- paste0(reduction.key, seq_len(ncol(out)))
  misc <- list(params = res$params, losses = res$losses, timings = res$timings, versions = res$versions,
               orig.key = SeuratObject::Key(orig))
  value <- list(SeuratObject::CreateDimReducObject(embeddings = out, key = reduction.key,
                                                   assay = SeuratObject::DefaultAssay(orig), misc = misc))
  names(value) <- new.reduction
  value
}
