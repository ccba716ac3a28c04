#' Spatial domains from the SEDR embedding
#'
#' Clusters the SEDR embedding into `n.clusters` spatial domains.
#'
#' * `"mclust"` (default, as the paper): a Gaussian mixture with one shared
#'   full covariance (`mclust::Mclust(..., modelNames = "EEE")`) on the
#'   embedding in double precision, after `set.seed(seed.use)`. EEE is
#'   affine-invariant, so it uses every embedding dimension however small its
#'   scale. When the EEE fit fails (Mclust returns `NULL`, e.g. for a
#'   degenerate embedding) SEDR retries, in this order and with a warning
#'   naming what was used: EEE on the embedding's non-degenerate principal
#'   directions; then the `"VVI"` model; then k-means.
#' * `"leiden"` / `"louvain"`: Seurat's `FindClusters()` on a neighbour graph
#'   of the embedding, with the resolution searched to give `n.clusters`
#'   clusters (needs Seurat).
#' * `"dec"`: the hard assignment of the model's own DEC layer (its
#'   `dec.clusters` centres, not `n.clusters`).
#'
#' @param object A `Seurat` object (after [RunSEDR()]), a
#'   `SingleCellExperiment`, a `sedr_result`, or an embedding matrix.
#' @param n.clusters Number of domains.
#' @param method `"mclust"`, `"leiden"`, `"louvain"` or `"dec"`.
#' @param reduction Reduction (Seurat) or `reducedDim` (SCE) holding the
#'   embedding.
#' @param col.name Metadata column for the labels (`"sedr_clusters"`).
#' @param seed.use Seed set before clustering (2023, as the reference).
#' @param mclust.init.size If not `NULL`, mclust's hierarchical initialisation
#'   uses a seeded random subset of this many spots (faster on large data).
#'   Above 50,000 spots mclust is fitted on a subset of 50,000 and the other
#'   spots are assigned with the fitted model.
#' @param verbose Report which method produced the labels.
#' @param ... Unused; unknown arguments are an error.
#' @return The object with the labels (a factor) added as `col.name`; for a
#'   matrix or `sedr_result`, the factor.
#' @export
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
#' res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 30, dec = FALSE,
#'                n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE)
#' table(SEDRClusters(res, n.clusters = 3))
SEDRClusters <- function(object, n.clusters, method = c("mclust", "leiden", "louvain", "dec"),
                         reduction = "sedr", col.name = "sedr_clusters", seed.use = 2023,
                         mclust.init.size = NULL, verbose = TRUE, ...) {
  check_dots(...)
  method <- match.arg(method)
  if (methods::is(object, "Seurat")) {
    if (!reduction %in% SeuratObject::Reductions(object)) {
      sedr_abort(sprintf("\"%s\" is not a reduction of this object; run RunSEDR() first.", reduction), arg = "reduction")
    }
    emb <- SeuratObject::Embeddings(object, reduction)
    q <- SeuratObject::Misc(object[[reduction]], slot = "dec.q")
  } else if (methods::is(object, "SingleCellExperiment")) {
    rd <- if (reduction == "sedr") "SEDR" else reduction
    if (!rd %in% SingleCellExperiment::reducedDimNames(object)) {
      sedr_abort(sprintf("\"%s\" is not a reducedDim of this object; run RunSEDR() first.", rd), arg = "reduction")
    }
    emb <- SingleCellExperiment::reducedDim(object, rd)
    q <- S4Vectors_metadata(object)$SEDR$dec.q
  } else if (inherits(object, "sedr_result")) {
    emb <- object$embedding
    q <- object$dec.q
  } else if (is.matrix(object) && is.numeric(object)) {
    emb <- object
    q <- NULL
  } else {
    sedr_abort("must be a Seurat object, a SingleCellExperiment, a sedr_result or a numeric matrix.", arg = "object")
  }
  if (any(!is.finite(emb))) sedr_abort("has NA, NaN or Inf in the embedding.", arg = "object")
  if (method != "dec") {
    n.clusters <- check_count(n.clusters, "n.clusters", min = 2)
    if (n.clusters > nrow(emb)) {
      sedr_abort(sprintf("(%d) exceeds the number of spots (%d).", n.clusters, nrow(emb)), arg = "n.clusters")
    }
  }
  labels <- switch(method,
    mclust = cluster_mclust(emb, n.clusters, seed.use, mclust.init.size, verbose),
    leiden = ,
    louvain = cluster_graph(emb, n.clusters, method, seed.use, verbose),
    dec = {
      if (is.null(q)) sedr_abort("has no DEC assignment; run RunSEDR() with dec = TRUE.", arg = "method")
      factor(max.col(q, ties.method = "first"))
    }
  )
  names(labels) <- rownames(emb)
  if (methods::is(object, "Seurat")) {
    object[[col.name]] <- labels
    return(object)
  }
  if (methods::is(object, "SingleCellExperiment")) {
    SummarizedExperiment::colData(object)[[col.name]] <- labels
    return(object)
  }
  labels
}

#' @importFrom mclust Mclust mclustBIC
cluster_mclust <- function(emb, G, seed, init.size, verbose, max.fit = 50000L) {
  x <- emb
  storage.mode(x) <- "double"
  fit_on <- NULL
  .with_seed(seed, {
    if (nrow(x) > max.fit) fit_on <- sort(sample.int(nrow(x), max.fit))
    init_subset <- if (!is.null(init.size) && init.size < nrow(x)) sort(sample.int(nrow(x), init.size)) else NULL
    attempt <- function(data, model) {
      init <- if (is.null(init_subset) || !is.null(fit_on)) list() else list(subset = init_subset)
      if (!is.null(fit_on)) data <- data[fit_on, , drop = FALSE]
      fit <- tryCatch(suppressWarnings(Mclust(data, G = G, modelNames = model, initialization = init, verbose = FALSE)),
                      error = function(e) NULL)
      fit
    }
    used <- "mclust EEE"
    data <- x
    fit <- attempt(data, "EEE")
    if (is.null(fit)) {
      # EEE is affine-invariant: rotating onto the non-degenerate principal
      # directions changes nothing but removes exact collinearity.
      pc <- stats::prcomp(x, center = TRUE, scale. = FALSE)
      keep <- pc$sdev > max(pc$sdev) * 1e-6
      data <- pc$x[, keep, drop = FALSE]
      fit <- attempt(data, "EEE")
      used <- "mclust EEE on non-degenerate principal directions"
    }
    if (is.null(fit)) {
      fit <- attempt(data, "VVI")
      used <- "mclust VVI"
    }
    if (is.null(fit)) {
      distinct <- nrow(unique(data))
      if (distinct < G) {
        sedr_abort(sprintf("(%d) exceeds the number of distinct embedding points (%d).", G, distinct), arg = "n.clusters")
      }
      km <- stats::kmeans(data, centers = G, nstart = 10)
      labels <- km$cluster
      used <- "k-means"
    } else if (!is.null(fit_on)) {
      labels <- stats::predict(fit, newdata = data)$classification
    } else {
      labels <- fit$classification
    }
    if (used != "mclust EEE") {
      sedr_warn(sprintf("mclust EEE could not fit this embedding; labels come from %s.", used), kind = "mclust")
    } else if (verbose) {
      cli::cli_inform(sprintf("Domains: mclust EEE, %d clusters%s.", G,
                              if (is.null(fit_on)) "" else sprintf(" (fitted on %d spots, others predicted)", length(fit_on))))
    }
    factor(labels, levels = sort(unique(labels)))
  })
}

cluster_graph <- function(emb, G, method, seed, verbose) {
  if (!requireNamespace("Seurat", quietly = TRUE)) {
    sedr_abort("needs the Seurat package for leiden/louvain; install it or use method = \"mclust\".", arg = "method")
  }
  colnames(emb) <- paste0("SEDR_", seq_len(ncol(emb)))
  nn <- Seurat::FindNeighbors(emb, verbose = FALSE)$snn
  algo <- if (method == "louvain") 1 else 4
  count <- function(res) {
    cl <- tryCatch(
      Seurat::FindClusters(nn, resolution = res, algorithm = algo, random.seed = seed %||% 0, verbose = FALSE)[[1]],
      error = function(e) sedr_abort(sprintf("%s clustering failed (%s); use method = \"louvain\" or \"mclust\".",
                                             method, conditionMessage(e)), kind = "dependency", arg = "method"))
    list(k = length(unique(cl)), cl = cl)
  }
  lo <- 0.01; hi <- 3
  best <- count(1)
  for (i in 1:30) {
    mid <- (lo + hi) / 2
    r <- count(mid)
    if (abs(r$k - G) < abs(best$k - G)) best <- r
    if (r$k == G) break
    if (r$k < G) lo <- mid else hi <- mid
  }
  if (best$k != G) sedr_warn(sprintf("%s found %d clusters, not %d, at the closest resolution.", method, best$k, G), kind = "clusters")
  factor(as.integer(as.character(best$cl)) + 1L)
}
