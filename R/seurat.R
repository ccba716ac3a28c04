# Seurat (SeuratObject 4 and 5) and SingleCellExperiment methods. The
# version differences (slot = vs layer =) live in get_counts() only.

get_counts <- function(object, assay) {
  if (utils::packageVersion("SeuratObject") >= "5.0.0") {
    # Looked up at run time: these functions do not exist in SeuratObject 4.
    v5 <- function(f) getExportedValue("SeuratObject", f)
    layers <- v5("Layers")(object[[assay]], search = "counts")
    if (length(layers) > 1) object[[assay]] <- v5("JoinLayers")(object[[assay]], layers = "counts")
    v5("LayerData")(object, assay = assay, layer = "counts")
  } else {
    SeuratObject::GetAssayData(object, slot = "counts", assay = assay)
  }
}

seurat_coords <- function(object, coords, arg = "coords") {
  md <- object[[]]
  if (is.null(coords)) {
    if (length(SeuratObject::Images(object))) {
      xy <- SeuratObject::GetTissueCoordinates(object)
      xy <- as.matrix(xy[, vapply(xy, is.numeric, logical(1)), drop = FALSE][, 1:2])
      return(xy)
    }
    if (all(c("x", "y") %in% colnames(md))) coords <- c("x", "y")
    else sedr_abort("is NULL, and the object has no image and no meta.data columns `x` and `y`; pass coords = c(\"<x column>\", \"<y column>\") or a matrix.",
                    arg = arg)
  }
  if (is.character(coords)) {
    missing <- setdiff(coords, colnames(md))
    if (length(missing)) sedr_abort(sprintf("names unknown meta.data column(s): %s.", paste(missing, collapse = ", ")), arg = arg)
    xy <- md[, coords, drop = FALSE]
    rownames(xy) <- rownames(md)
    return(xy)
  }
  coords
}

#' @rdname RunSEDR
#' @param assay Assay with the raw counts (default: the default assay).
#' @param reduction Name of an existing reduction to use as the model input
#'   instead of the built-in recipe (e.g. `"pca"`).
#' @param dims Dimensions of `reduction` to use (default: all).
#' @param reduction.name,reduction.key Name and key of the new reduction.
#' @param assay.name Name of the assay holding denoised expression
#'   (imputation mode).
#' @export
RunSEDR.Seurat <- function(object, assay = NULL, features = NULL, reduction = NULL, dims = NULL,
                           k.neighbors = 12, coords = NULL, group.by = NULL, integrate = "mnn",
                           mode = c("clustering", "imputation"), epochs = NULL, dec = NULL,
                           device = "auto", n.threads = 1, seed.use = 42,
                           reduction.name = "sedr", reduction.key = "SEDR_", assay.name = "SEDR",
                           n.hvg = 2000, npcs = 200, min.spots = 50, min.counts = 10,
                           options = SEDROptions(), verbose = TRUE, ...) {
  check_dots(...)
  mode <- match_mode(mode)
  assay <- assay %||% SeuratObject::DefaultAssay(object)
  if (!is.character(assay) || length(assay) != 1 || !assay %in% SeuratObject::Assays(object)) {
    sedr_abort(sprintf("\"%s\" is not an assay of this object (it has: %s).", format(assay),
                       paste(SeuratObject::Assays(object), collapse = ", ")), arg = "assay")
  }
  cells <- colnames(object)
  xy <- check_coords(seurat_coords(object, coords))
  xy <- align_coords(xy, cells)
  group <- seurat_group(object[[]], group.by)
  input <- NULL
  counts <- NULL
  if (!is.null(reduction)) {
    input <- reduction_input(object, reduction, dims)
  } else {
    counts <- get_counts(object, assay)
    if (!length(counts) || ncol(counts) == 0) sedr_abort("has no counts.", arg = "assay")
  }
  res <- run_sedr(counts = counts, input = input, coords = xy, group = group, features = features,
                  k.neighbors = k.neighbors, mode = mode, epochs = epochs, dec = dec, device = device,
                  n.threads = n.threads, seed.use = seed.use, n.hvg = n.hvg, npcs = npcs,
                  min.spots = min.spots, min.counts = min.counts, options = options, verbose = verbose,
                  integrate = integrate)
  # Everything is computed; only now is the object modified.
  emb <- res$embedding
  colnames(emb) <- paste0(reduction.key, seq_len(ncol(emb)))
  misc <- list(params = res$params, losses = res$losses, dec.q = res$dec.q, features = res$features,
               timings = res$timings, versions = res$versions, group.by = group.by,
               graph = res$graph)
  object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
    embeddings = emb, key = reduction.key, assay = assay, misc = misc
  )
  if (!is.null(res$denoised)) {
    expr <- t(res$denoised$expression)
    new_assay <- SeuratObject::CreateAssayObject(data = methods::as(expr, "CsparseMatrix"))
    new_assay <- SeuratObject::SetAssayData(new_assay, slot = "scale.data", new.data = t(res$denoised$scaled))
    SeuratObject::VariableFeatures(new_assay) <- rownames(expr)
    object[[assay.name]] <- new_assay
  }
  object <- SeuratObject::LogSeuratCommand(object)
  object
}

seurat_group <- function(md, group.by) {
  if (is.null(group.by)) return(NULL)
  if (!is.character(group.by) || length(group.by) != 1 || !group.by %in% colnames(md)) {
    sedr_abort("must name one meta.data column holding the section of each spot.", arg = "group.by")
  }
  md[[group.by]]
}

reduction_input <- function(object, reduction, dims) {
  if (!is.character(reduction) || length(reduction) != 1 || !reduction %in% SeuratObject::Reductions(object)) {
    sedr_abort(sprintf("\"%s\" is not a reduction of this object (it has: %s).", format(reduction),
                       paste(SeuratObject::Reductions(object), collapse = ", ")), arg = "reduction")
  }
  emb <- SeuratObject::Embeddings(object, reduction)
  check_reduction_matrix(emb, dims)
}

check_reduction_matrix <- function(emb, dims) {
  dims <- dims %||% seq_len(ncol(emb))
  if (!is.numeric(dims) || any(dims != round(dims)) || any(dims < 1) || any(dims > ncol(emb))) {
    sedr_abort(sprintf("must be whole numbers between 1 and %d (the reduction's dimensions).", ncol(emb)), arg = "dims")
  }
  if (length(dims) < 2) sedr_abort("must select at least 2 dimensions.", arg = "dims")
  emb <- emb[, dims, drop = FALSE]
  if (any(!is.finite(emb))) sedr_abort("contains NA, NaN or Inf values.", arg = "reduction")
  storage.mode(emb) <- "double"
  emb
}

#' @rdname RunSEDR
#' @param assay.type For a `SingleCellExperiment`: the assay with raw counts.
#' @param use.dimred For a `SingleCellExperiment`: an existing `reducedDim` to
#'   use instead of the recipe.
#' @param name Name of the new `reducedDim`.
#' @export
RunSEDR.SingleCellExperiment <- function(object, assay.type = "counts", features = NULL,
                                         use.dimred = NULL, dims = NULL, k.neighbors = 12,
                                         coords = NULL, group.by = NULL, integrate = "mnn",
                                         mode = c("clustering", "imputation"), epochs = NULL,
                                         dec = NULL, device = "auto", n.threads = 1, seed.use = 42,
                                         name = "SEDR", n.hvg = 2000, npcs = 200, min.spots = 50,
                                         min.counts = 10, options = SEDROptions(), verbose = TRUE, ...) {
  check_dots(...)
  mode <- match_mode(mode)
  cd <- as.data.frame(SummarizedExperiment::colData(object))
  cells <- colnames(object)
  if (is.null(coords)) {
    if (methods::is(object, "SpatialExperiment")) {
      coords <- SpatialExperiment::spatialCoords(object)
    } else if (all(c("x", "y") %in% colnames(cd))) {
      coords <- c("x", "y")
    } else {
      sedr_abort("is NULL and there are no spatialCoords() nor colData columns `x`, `y`; pass them.", arg = "coords")
    }
  }
  if (is.character(coords)) {
    if (!all(coords %in% colnames(cd))) sedr_abort("names unknown colData columns.", arg = "coords")
    coords <- as.matrix(cd[, coords, drop = FALSE])
  }
  xy <- check_coords(coords)
  if (is.null(rownames(xy))) rownames(xy) <- cells
  xy <- align_coords(xy, cells)
  group <- if (is.null(group.by)) NULL else {
    if (!is.character(group.by) || length(group.by) != 1 || !group.by %in% colnames(cd)) sedr_abort("must name a colData column.", arg = "group.by")
    cd[[group.by]]
  }
  input <- counts <- NULL
  if (!is.null(use.dimred)) {
    if (!use.dimred %in% SingleCellExperiment::reducedDimNames(object)) {
      sedr_abort(sprintf("\"%s\" is not a reducedDim of this object.", use.dimred), arg = "use.dimred")
    }
    input <- check_reduction_matrix(SingleCellExperiment::reducedDim(object, use.dimred), dims)
    rownames(input) <- cells
  } else {
    if (!assay.type %in% SummarizedExperiment::assayNames(object)) {
      sedr_abort(sprintf("\"%s\" is not an assay of this object.", assay.type), arg = "assay.type")
    }
    counts <- methods::as(methods::as(SummarizedExperiment::assay(object, assay.type), "CsparseMatrix"), "generalMatrix")
  }
  res <- run_sedr(counts = counts, input = input, coords = xy, group = group, features = features,
                  k.neighbors = k.neighbors, mode = mode, epochs = epochs, dec = dec, device = device,
                  n.threads = n.threads, seed.use = seed.use, n.hvg = n.hvg, npcs = npcs,
                  min.spots = min.spots, min.counts = min.counts, options = options, verbose = verbose,
                  integrate = integrate)
  SingleCellExperiment::reducedDim(object, name) <- res$embedding
  md <- S4Vectors_metadata(object)
  md$SEDR <- res[c("params", "losses", "dec.q", "features", "timings", "versions", "denoised", "graph")]
  S4Vectors_metadata(object) <- md
  object
}

# metadata() lives in S4Vectors, which SummarizedExperiment re-exports.
S4Vectors_metadata <- function(x) methods::slot(x, "metadata")
`S4Vectors_metadata<-` <- function(x, value) {
  methods::slot(x, "metadata") <- value
  x
}
