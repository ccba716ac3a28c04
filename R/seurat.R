# Seurat (SeuratObject 4 and 5) and SingleCellExperiment methods. The
# version differences (slot = vs layer =, Assay vs Assay5) live in the
# seurat_* helpers below only.

# TRUE on SeuratObject >= 5 (layers, Assay5), FALSE on SeuratObject 4.
seurat_v5 <- function() utils::packageVersion("SeuratObject") >= "5.0.0"

# A SeuratObject 5 function, looked up at run time: these do not exist in
# SeuratObject 4, so naming them with :: would fail there.
so5 <- function(f) getExportedValue("SeuratObject", f)

# One layer ("counts", "data") of an assay as genes x spots. On SeuratObject
# 5, a layer split by sample ("counts.A", "counts.B") is joined on a copy;
# the user's object is not changed.
seurat_layer <- function(object, assay, layer) {
  if (seurat_v5()) {
    layers <- so5("Layers")(object[[assay]], search = layer)
    if (!length(layers)) {
      sedr_abort(sprintf("\"%s\" has no \"%s\" layer.", assay, layer), arg = "assay")
    }
    if (length(layers) > 1) object[[assay]] <- so5("JoinLayers")(object[[assay]], layers = layer)
    m <- so5("LayerData")(object, assay = assay, layer = layer)
    # Joined layers are bound section by section: put the spots back in the
    # object's order, which the coordinates and groups follow.
    spots <- colnames(object)
    if (!identical(colnames(m), spots) && all(spots %in% colnames(m))) m <- m[, spots, drop = FALSE]
    m
  } else {
    SeuratObject::GetAssayData(object, slot = layer, assay = assay)
  }
}

get_counts <- function(object, assay) seurat_layer(object, assay, "counts")

# The denoised expression as an assay: an Assay5 with `data` and
# `scale.data` layers on SeuratObject 5, a v3 Assay on SeuratObject 4.
# `expr` and `scaled` are genes x spots.
denoised_assay <- function(expr, scaled) {
  data <- methods::as(expr, "CsparseMatrix")
  if (seurat_v5()) {
    assay <- so5("CreateAssay5Object")(data = data)
    assay <- so5("LayerData<-")(assay, layer = "scale.data", value = scaled)
    # No nCount_/nFeature_ columns for denoised values (SeuratObject would
    # look for a counts layer and warn that there is none).
    misc <- methods::slot(assay, "misc")
    misc$calcN <- FALSE
    methods::slot(assay, "misc") <- misc
  } else {
    assay <- SeuratObject::CreateAssayObject(data = data)
    assay <- SeuratObject::SetAssayData(assay, slot = "scale.data", new.data = scaled)
  }
  SeuratObject::VariableFeatures(assay) <- rownames(expr)
  assay
}

# Spot coordinates from every image / FOV of the object, bound by rows
# (spots x 2, spot names as row names); NULL when there is no image. Visium
# images name their spots in the row names, FOVs in a `cell` column; a
# segmentation gives several vertices per cell, which are averaged.
seurat_image_coords <- function(object) {
  images <- SeuratObject::Images(object)
  if (!length(images)) return(NULL)
  parts <- lapply(images, function(img) {
    xy <- tryCatch(SeuratObject::GetTissueCoordinates(object[[img]]), error = function(e) NULL)
    if (is.null(xy) || !NROW(xy)) return(NULL)
    xy <- as.data.frame(xy)
    spots <- if ("cell" %in% colnames(xy)) as.character(xy$cell) else rownames(xy)
    num <- xy[, vapply(xy, is.numeric, logical(1)), drop = FALSE]
    if (ncol(num) < 2) return(NULL)
    m <- as.matrix(num[, 1:2])
    if (anyDuplicated(spots)) {
      m <- rowsum(m, spots, reorder = FALSE) / as.vector(table(spots)[unique(spots)])
      spots <- rownames(m)
    }
    rownames(m) <- spots
    m
  })
  parts <- parts[!vapply(parts, is.null, logical(1))]
  if (!length(parts)) return(NULL)
  xy <- do.call(rbind, parts)
  colnames(xy) <- c("x", "y")
  xy[!duplicated(rownames(xy)), , drop = FALSE]
}

seurat_coords <- function(object, coords, arg = "coords") {
  md <- object[[]]
  if (is.null(coords)) {
    xy <- seurat_image_coords(object)
    if (!is.null(xy)) return(xy)
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
#' @param split.by For a `Seurat` object or `SingleCellExperiment`: a
#'   metadata column of sections. One independent model is trained per
#'   section (clustering mode), on `BPPARAM`, and all results are written
#'   into the one object; see [SEDRCohorts] for seeds, results and failures.
#'   Needs the BiocParallel package. `n.threads` is then per section (per
#'   worker).
#' @param BPPARAM With `split.by`: the BiocParallel back-end (`NULL`:
#'   `BiocParallel::SerialParam()`), e.g. `MulticoreParam(2)`, `SnowParam()`
#'   or `BatchtoolsParam()`.
#' @param on.error With `split.by`, when some sections fail: `"error"`
#'   (default; an error of class `sedr_error_sections` that carries the
#'   object with the other sections as `$object`) or `"warning"` (return the
#'   object, warn).
#' @export
RunSEDR.Seurat <- function(object, assay = NULL, features = NULL, reduction = NULL, dims = NULL,
                           k.neighbors = 12, coords = NULL, group.by = NULL, integrate = "none",
                           mode = c("clustering", "imputation"), epochs = NULL, dec = NULL,
                           device = "auto", n.threads = 1, seed.use = 42,
                           reduction.name = "sedr", reduction.key = "SEDR_", assay.name = "SEDR",
                           n.hvg = 2000, npcs = 200, min.spots = 50, min.counts = 10, normalize = "cpm", moran.z = NULL,
                           options = SEDROptions(), verbose = TRUE, split.by = NULL, BPPARAM = NULL,
                           on.error = c("error", "warning"), ...) {
  check_dots(...)
  mode <- match_choice(mode, c("clustering", "imputation"), "mode")
  if (is.null(split.by) && !is.null(BPPARAM)) sedr_abort("needs split.by (one model per section).", arg = "BPPARAM")
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
  if (!is.null(split.by)) {
    # One model per section (cohort.R); everything is computed before the object changes.
    on.error <- match_choice(on.error, c("error", "warning"), "on.error")
    sections <- cohort_sections(object[[]], split.by)
    BPPARAM <- check_bpparam(BPPARAM)
    co <- cohort_fit(counts, input, xy, sections,
                     args = mget(cohort_arg_names, envir = environment()),
                     seed.use = seed.use, group.by = group.by, BPPARAM = BPPARAM, split.by = split.by,
                     key = reduction.key, verbose = verbose)
    object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
      embeddings = co$embedding, key = reduction.key, assay = assay, misc = co$misc
    )
    object <- SeuratObject::LogSeuratCommand(object)
    return(cohort_finish(object, co$misc, on.error))
  }
  res <- run_sedr(counts = counts, input = input, coords = xy, group = group, features = features,
                  k.neighbors = k.neighbors, mode = mode, epochs = epochs, dec = dec, device = device,
                  n.threads = n.threads, seed.use = seed.use, n.hvg = n.hvg, npcs = npcs,
                  min.spots = min.spots, min.counts = min.counts, normalize = normalize, moran.z = moran.z, options = options,
                  verbose = verbose, integrate = integrate)
  # Everything is computed; only now is the object modified.
  emb <- res$embedding
  colnames(emb) <- paste0(reduction.key, seq_len(ncol(emb)))
  misc <- list(params = res$params, losses = res$losses, dec.q = res$dec.q, features = res$features, moran = res$moran,
               timings = res$timings, versions = res$versions, group.by = group.by,
               graph = res$graph, coords = res$coords, sections = res$sections)
  object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
    embeddings = emb, key = reduction.key, assay = assay, misc = misc
  )
  if (!is.null(res$denoised)) {
    object[[assay.name]] <- denoised_assay(t(res$denoised$expression), t(res$denoised$scaled))
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
                                         coords = NULL, group.by = NULL, integrate = "none",
                                         mode = c("clustering", "imputation"), epochs = NULL,
                                         dec = NULL, device = "auto", n.threads = 1, seed.use = 42,
                                         name = "SEDR", n.hvg = 2000, npcs = 200, min.spots = 50,
                                         min.counts = 10, normalize = "cpm", moran.z = NULL, options = SEDROptions(), verbose = TRUE,
                                         split.by = NULL, BPPARAM = NULL, on.error = c("error", "warning"), ...) {
  check_dots(...)
  mode <- match_choice(mode, c("clustering", "imputation"), "mode")
  if (is.null(split.by) && !is.null(BPPARAM)) sedr_abort("needs split.by (one model per section).", arg = "BPPARAM")
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
  if (!is.null(split.by)) {
    # One model per section (cohort.R); everything is computed before the object changes.
    on.error <- match_choice(on.error, c("error", "warning"), "on.error")
    sections <- cohort_sections(cd, split.by, where = "colData")
    BPPARAM <- check_bpparam(BPPARAM)
    if (!is.null(counts)) colnames(counts) <- cells
    co <- cohort_fit(counts, input, xy, sections,
                     args = mget(cohort_arg_names, envir = environment()),
                     seed.use = seed.use, group.by = group.by, BPPARAM = BPPARAM, split.by = split.by,
                     key = "SEDR_", verbose = verbose)
    SingleCellExperiment::reducedDim(object, name) <- co$embedding
    md <- S4Vectors_metadata(object)
    md$SEDR <- co$misc
    S4Vectors_metadata(object) <- md
    return(cohort_finish(object, co$misc, on.error))
  }
  res <- run_sedr(counts = counts, input = input, coords = xy, group = group, features = features,
                  k.neighbors = k.neighbors, mode = mode, epochs = epochs, dec = dec, device = device,
                  n.threads = n.threads, seed.use = seed.use, n.hvg = n.hvg, npcs = npcs,
                  min.spots = min.spots, min.counts = min.counts, normalize = normalize, moran.z = moran.z, options = options,
                  verbose = verbose, integrate = integrate)
  SingleCellExperiment::reducedDim(object, name) <- res$embedding
  md <- S4Vectors_metadata(object)
  md$SEDR <- res[c("params", "losses", "dec.q", "features", "moran", "timings", "versions", "denoised", "graph", "coords", "sections")]
  S4Vectors_metadata(object) <- md
  object
}

# metadata() lives in S4Vectors, which SummarizedExperiment re-exports.
S4Vectors_metadata <- function(x) methods::slot(x, "metadata")
`S4Vectors_metadata<-` <- function(x, value) {
  methods::slot(x, "metadata") <- value
  x
}
