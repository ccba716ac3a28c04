#' Spatial domains from the SEDR embedding
#'
#' Clusters the SEDR embedding into `n.clusters` spatial domains.
#'
#' * `"mclust"` (default, as the paper): a Gaussian mixture with one shared
#'   full covariance (mclust's `"EEE"` model) on the embedding in double
#'   precision, after `set.seed(seed.use)`. The EM is mclust's (the same
#'   iterations, stopping rule and failure rules as `mclust::me()`), run in
#'   SEDR's Rust core: about 30 times faster on DLPFC, with the same fit to
#'   1e-10 (tested). EEE is
#'   affine-invariant, so it uses every embedding dimension however small its
#'   scale. The EM starts, as in mclust, from mclust's hierarchical
#'   clustering of all spots, merged up from a seeded k-means partition into
#'   `max(100, 10 * n.clusters)` small groups (from single spots when there
#'   are at most 4 times that many spots). mclust's default merges up from
#'   single spots, and above 2,000 spots clusters a random 2,000 of them:
#'   its time grows with the square of the spots (2.6-3.2 s of each call on
#'   the 1,600-spot demo tissue, against 0.2-0.4 s from the groups), and its
#'   result depends on which 2,000 are drawn. Over 60 seeds of
#'   `bench/domains.R` the groups gave the same accuracy (`bench/README.md`).
#'   On embeddings of 12 or more dimensions (SEDR's has 32) the tree is
#'   merged by mclust's VII criterion instead of its default VVV: there the
#'   two give the same merge costs to 1e-14, and VII is about 13 times faster.
#'   That hierarchical start is computed on the
#'   embedding pulled halfway (`init.smooth = 0.5`) towards its mean over
#'   each spot's spatial neighbourhood (one step of `smooth` below); the EM
#'   then fits the embedding itself, so the model is still mclust EEE on
#'   the SEDR embedding. Domains are spatially contiguous, and a start that
#'   follows them makes the fit less dependent on the seed: over 20 seeds
#'   on DLPFC 151673 the SD of the ARI fell from 0.043 to 0.027 (median
#'   0.588 to 0.578, worst seed 0.490 to 0.525) (`bench/README.md`). The
#'   full neighbourhood mean (`init.smooth = 1`) steadies DLPFC more (SD
#'   0.018), but on a cleanly separated simulated tissue it starts the EM
#'   with the spots along domain borders in the wrong domain, and the EM
#'   keeps them there (ARI 0.83 against 1.00). `init.smooth = 0` starts from
#'   the embedding itself, as mclust does. When the EEE fit fails (e.g. for a degenerate
#'   embedding) SEDR retries, in this order and with a warning naming what
#'   was used: EEE on the embedding's non-degenerate principal directions;
#'   then the `"VVI"` model; then k-means.
#' * `"leiden"` / `"louvain"`: Seurat's `FindClusters()` on a neighbour graph
#'   of the embedding, with the resolution searched to give `n.clusters`
#'   clusters (needs Seurat).
#' * `"dec"`: the hard assignment of the model's own DEC layer (its
#'   `dec.clusters` centres, not `n.clusters`).
#'
#' With `smooth = s > 0` the embedding is first averaged `s` times over
#' each spot's spatial neighbourhood (the spot and its graph neighbours,
#' equal weights) before `"mclust"`, `"leiden"` or `"louvain"`. This is not
#' in the paper (whose workflow is `smooth = 0`, the default). Over 5
#' seeds, two steps left the median ARI on STARmap about the same (0.676 to
#' 0.682) and lowered it on DLPFC 151673 (0.595 to 0.546)
#' (`bench/README.md`), so it is an option to compare, not the default. The graph is the one [RunSEDR()]
#' stored with the embedding, or `graph` for a plain matrix.
#'
#' The labels are then refined (`refine = 1`, as GraphST's label
#' refinement): each spot takes the label most of its 18 nearest spots
#' (`refine.k`) hold. This removes isolated mislabelled spots, and over the
#' five datasets of `bench/domains.R` raised the combined score from 0.554
#' to 0.564 without lowering any dataset by more than 0.004. Spots of a
#' domain thinner than about two spots can be voted away; `refine = 0`
#' keeps the mixture's labels as they are.
#'
#' @param object A `Seurat` object (after [RunSEDR()]), a
#'   `SingleCellExperiment`, a `sedr_result`, or an embedding matrix.
#' @param n.clusters Number of domains; or, with `method = "mclust"`, a
#'   range of numbers to choose from (e.g. `4:12`), or `NULL` for `4:12`
#'   (cut at one domain per 10 spots): the EEE mixture is fitted for each
#'   number (with the same start rule and seed) and one is kept as `select`
#'   says. The whole curve (`k`, the criterion, `chosen`) is stored: for a
#'   Seurat object in `Misc(object, "sedr_clusters_selection")`, for a
#'   `SingleCellExperiment` in `metadata(object)$sedr_clusters_selection`,
#'   for a matrix or `sedr_result` as the attribute
#'   `"sedr_clusters_selection"` of the returned factor.
#'   [SEDRClustersPlot()] draws it. The choice is a guide, not an estimate of
#'   the annotated number: give the number when it is known.
#' @param method `"mclust"`, `"leiden"`, `"louvain"` or `"dec"`.
#' @param reduction Reduction (Seurat) or `reducedDim` (SCE) holding the
#'   embedding.
#' @param col.name Metadata column for the labels (`"sedr_clusters"`).
#' @param seed.use Seed set before clustering (2023, as the reference).
#' @param mclust.init.size If not `NULL` (and fewer than the spots), mclust's
#'   hierarchical initialisation uses a seeded random subset of this many
#'   spots instead (mclust's `initialization = list(subset = )`); at least
#'   `n.clusters`. Above 50,000 spots mclust is fitted on a seeded subset of
#'   50,000 and the other spots are assigned with the fitted model.
#' @param smooth Number of neighbour-averaging steps applied to the
#'   embedding before clustering (0: none, as the paper).
#' @param init.smooth For mclust's starting partition only: the weight, in
#'   \[0, 1\], of each spot's neighbourhood mean against its own embedding
#'   (0.5; 0: mclust's own start). Needs the spatial graph, so on a plain
#'   matrix without `graph` the start uses the embedding itself.
#' @param refine Spatial label refinement after clustering (as GraphST's
#'   `refine_label`): `r` rounds (default 1 for `method = "mclust"`, the
#'   method it was measured with, 0 for the others; `TRUE` = 1; `0` /
#'   `FALSE` none)
#'   in which every spot takes the label held by most of its `refine.k`
#'   nearest spots by coordinates (the spot itself not counted; on a tie for
#'   the most votes it keeps its own label). All spots are updated at once
#'   in each round. With several sections (`RunSEDR(group.by = )`), only
#'   spots of the same section vote, as sections often share a coordinate
#'   frame. The coordinates are those [RunSEDR()] stored with the
#'   embedding, or `coords`; without any (a plain matrix, or an object made
#'   before they were stored) the default leaves the labels unrefined, and
#'   an explicit `refine > 0` is an error. Over 10 seeds on five datasets
#'   (`bench/domains.R`) one round over the 18 nearest spots raised the
#'   combined score from 0.554 to 0.564 (per seed +0.009, SD 0.003; STARmap
#'   +0.022, the layered simulated tissue +0.025, the DLPFC sections within
#'   +-0.004) and the worst run from 0.374 to 0.377 (`bench/README.md`).
#' @param refine.k Spots that vote in each refinement round: each spot's
#'   `refine.k` nearest spots by coordinates (the neighbour lists made
#'   symmetric, as [BuildSpatialGraph()] does, so a spot may have a few
#'   more). 18 (default) is the first two hexagonal rings of a Visium array
#'   (6 + 12 spots), and as a count of spots it adapts to the spot density.
#'   GraphST votes among 50; over the five datasets 36 and 50 gained less,
#'   and 50 cost the patchy simulated tissue 0.027 (`bench/README.md`).
#' @param smooth.lambda Spatial smoothing of the embedding's features before
#'   clustering (not in the paper; in the spirit of BANKSY): each spot's
#'   embedding becomes `(1 - smooth.lambda) * z + smooth.lambda * m`, where
#'   `m` is the mean embedding of its `smooth.k` nearest spots by coordinates
#'   (the spot itself not counted; with several sections, only spots of the
#'   same section), a number in \[0, 1) (0: none, the default). Unlike `smooth`,
#'   it keeps part of each spot's own embedding and uses the coordinates, as
#'   the refinement does, so it needs them (stored by [RunSEDR()], or
#'   `coords`). Applies to `"mclust"`, `"leiden"` and `"louvain"`. Over
#'   10 seeds on the five datasets of `bench/domains.R`, 0.2 (with the
#'   default vote) raised the worst run from 0.377 to 0.400 and the combined
#'   score from 0.564 to 0.570, but that rise is inside its seed-to-seed
#'   spread (per seed +0.012, SD 0.021), and 0.3 or more cost STARmap about
#'   0.04 (`bench/README.md`): an option to compare, not the default.
#' @param smooth.k Spots whose mean embedding is blended in with
#'   `smooth.lambda`: each spot's `smooth.k` nearest spots by coordinates
#'   (18, as `refine.k`; the same neighbour lists as the refinement).
#' @param coords For refinement: the spots' coordinates (a spots x 2 or 3
#'   numeric matrix, row names matching the embedding's), replacing the ones
#'   [RunSEDR()] stored; needed for refinement of a plain matrix.
#' @param graph For `smooth > 0` or `init.smooth > 0` on a plain matrix: the spots x spots
#'   adjacency, e.g. from [BuildSpatialGraph()]. Other inputs use the graph
#'   that [RunSEDR()] stored.
#' @param verbose Report which method produced the labels.
#' @param split.by For a `Seurat` object or `SingleCellExperiment`: a
#'   metadata column of sections; each section is clustered on its own, with
#'   its own spatial graph and, for `"dec"`, its own DEC assignment (see
#'   [SEDRCohorts]). Labels are per section: cluster 1 of one section has
#'   nothing to do with cluster 1 of another. Sections without an embedding
#'   (their training failed) get `NA`. `NULL` (default): the sections of
#'   `RunSEDR(split.by = )` when the embedding came from such a run (one
#'   model per section, so not one space to cluster jointly), else none.
#' @param select How a range of `n.clusters` is chosen from. `"stability"`
#'   (default): each number is fitted on three seeded random subsets of 80 %
#'   of the spots, scored by the mean pairwise adjusted Rand index of the
#'   subsets' labels on the spots each pair shares, and the most stable
#'   number (the largest on a tie) is fitted on all spots; the curve has
#'   columns `k`, `stability` and `chosen`. It costs three fits per number
#'   and one more of the chosen number.
#'   Two or three domains are often the most stable, so give a range that
#'   starts where a split would be useful (as `NULL`'s `4:12` does).
#'   `"bic"`: the largest BIC is kept (mclust's criterion,
#'   `2 * loglik - npar * log(n)`, where `npar = (G - 1) + G * p + p (p + 1) / 2`
#'   for `p` embedding dimensions); the curve has columns `k`, `BIC`,
#'   `loglik`, `model` and `chosen`. On SEDR embeddings BIC has grown up to
#'   the end of the range in every run measured, because the domains are
#'   not Gaussian blobs with one shared covariance; it suits embeddings
#'   whose domains are. Ignored for a single number. Over 60 seeds on the
#'   five datasets of `bench/domains.R` (`bench/README.md`, "Choosing the
#'   number of domains"), `n.clusters = NULL` (stability over 4:12) gave a
#'   higher ARI than BIC over 2:15 on every dataset (combined 0.384 to
#'   0.615, worst run 0.212 to 0.255) and picked within one of the
#'   annotated number in 75 of 300 runs (BIC: 0).
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
                         mclust.init.size = NULL, smooth = 0, init.smooth = 0.5, refine = 1, refine.k = 18,
                         smooth.lambda = 0, smooth.k = 18, coords = NULL, graph = NULL, verbose = TRUE, split.by = NULL,
                         select = c("stability", "bic"), ...) {
  check_dots(...)
  method <- match_choice(method, c("mclust", "leiden", "louvain", "dec"), "method")
  select <- match_choice(select, c("stability", "bic"), "select")
  split.by <- split.by %||% cohort_split_by(object, reduction)
  if (!is.null(split.by)) {
    # Each section on its own (cohort.R), with the other arguments as given.
    given <- setdiff(names(match.call())[-1],
                     c("object", "split.by", "reduction", "col.name", "graph", "coords", "verbose", ""))
    return(cluster_split(object, split.by, reduction, col.name, mget(given, envir = environment()), verbose,
                         coords = coords))
  }
  sections <- NULL
  if (methods::is(object, "Seurat")) {
    if (!reduction %in% SeuratObject::Reductions(object)) {
      sedr_abort(sprintf("\"%s\" is not a reduction of this object; run RunSEDR() first.", reduction), arg = "reduction")
    }
    emb <- SeuratObject::Embeddings(object, reduction)
    q <- SeuratObject::Misc(object[[reduction]], slot = "dec.q")
    graph <- graph %||% SeuratObject::Misc(object[[reduction]], slot = "graph")
    coords <- coords %||% SeuratObject::Misc(object[[reduction]], slot = "coords")
    sections <- SeuratObject::Misc(object[[reduction]], slot = "sections")
  } else if (methods::is(object, "SingleCellExperiment")) {
    rd <- if (reduction == "sedr") "SEDR" else reduction
    if (!rd %in% SingleCellExperiment::reducedDimNames(object)) {
      sedr_abort(sprintf("\"%s\" is not a reducedDim of this object; run RunSEDR() first.", rd), arg = "reduction")
    }
    emb <- SingleCellExperiment::reducedDim(object, rd)
    q <- S4Vectors_metadata(object)$SEDR$dec.q
    graph <- graph %||% S4Vectors_metadata(object)$SEDR$graph
    coords <- coords %||% S4Vectors_metadata(object)$SEDR$coords
    sections <- S4Vectors_metadata(object)$SEDR$sections
  } else if (inherits(object, "sedr_result")) {
    emb <- object$embedding
    q <- object$dec.q
    graph <- graph %||% object$graph
    coords <- coords %||% object$coords
    sections <- object$sections
  } else if (is.matrix(object) && is.numeric(object)) {
    emb <- object
    q <- NULL
  } else {
    sedr_abort("must be a Seurat object, a SingleCellExperiment, a sedr_result or a numeric matrix.", arg = "object")
  }
  # min() and max() propagate NA/NaN and show Inf without an n x d copy.
  if (length(emb) > 0 && !(is.finite(min(emb)) && is.finite(max(emb)))) sedr_abort("has NA, NaN or Inf in the embedding.", arg = "object")
  if (method != "dec") {
    if (missing(n.clusters)) {
      sedr_abort("is missing: give the number of domains, a range such as 4:12, or NULL to choose it among 4:12.",
                 arg = "n.clusters")
    }
    n.clusters <- check_n_clusters(n.clusters, nrow(emb))
    if (length(n.clusters) > 1 && method != "mclust") {
      sedr_abort("can be a range (or NULL) only with method = \"mclust\", which chooses among them; give one number.",
                 arg = "n.clusters")
    }
  }
  if (method == "mclust" && select == "stability" && length(n.clusters) > 1 && floor(0.8 * nrow(emb)) < max(n.clusters)) {
    sedr_abort(sprintf("goes up to %d, but select = \"stability\" fits subsets of %d spots; choose a smaller range.",
                       max(n.clusters), as.integer(floor(0.8 * nrow(emb)))), arg = "n.clusters")
  }
  if (method == "mclust" && !is.null(mclust.init.size)) {
    mclust.init.size <- check_count(mclust.init.size, "mclust.init.size", min = max(n.clusters))
  }
  refine_given <- !missing(refine)
  refine <- check_refine(refine)
  # The default refines what the evaluation measured (mclust); other methods
  # (and the model's own DEC assignment) only when asked.
  if (!refine_given && method != "mclust") refine <- 0L
  refine.k <- check_count(refine.k, "refine.k", min = 1)
  if (refine > 0 && is.null(coords)) {
    if (refine_given) {
      sedr_abort("needs the spots' coordinates: pass `coords`, or use the object RunSEDR() returned.", arg = "refine")
    }
    refine <- 0L
    if (verbose) cli::cli_inform("No spot coordinates stored with this embedding: domains not refined.")
  }
  smooth.lambda <- check_smooth_lambda(smooth.lambda)
  smooth.k <- check_count(smooth.k, "smooth.k", min = 1)
  if (smooth.lambda > 0 && method == "dec") {
    sedr_abort("applies to the embedding, which method = \"dec\" does not cluster; use 0.", arg = "smooth.lambda")
  }
  if (smooth.lambda > 0 && is.null(coords)) {
    sedr_abort("needs the spots' coordinates: pass `coords`, or use the object RunSEDR() returned.", arg = "smooth.lambda")
  }
  if (refine > 0 || smooth.lambda > 0) {
    coords <- refine_coords(coords, rownames(emb), nrow(emb))
    sections <- refine_sections(sections, rownames(emb))
  }
  smooth <- check_count(smooth, "smooth", min = 0)
  seed.use <- check_seed(seed.use)
  if (!is.numeric(init.smooth) || length(init.smooth) != 1 || is.na(init.smooth) || init.smooth < 0 || init.smooth > 1) {
    sedr_abort("must be one number in [0, 1] (0: mclust's start on the embedding itself).", arg = "init.smooth")
  }
  if (smooth > 0 && method != "dec") emb <- smooth_embedding(emb, graph, smooth)
  if (smooth.lambda > 0) emb <- blend_neighbour_mean(emb, refine_neighbours(coords, smooth.k, sections), smooth.lambda)
  # The start of the EM only; without a graph (a plain matrix) there is none to use.
  init <- if (method == "mclust" && init.smooth > 0 && !is.null(graph)) smoothed_start(emb, graph, init.smooth)
  selection <- NULL
  labels <- switch(method,
    mclust = if (length(n.clusters) == 1) {
      cluster_mclust(emb, n.clusters, seed.use, mclust.init.size, verbose, init = init)
    } else {
      cache <- new.env()
      fit_rows <- function(rows, G) {
        cluster_mclust(emb[rows, , drop = FALSE], G, seed.use, mclust.init.size, FALSE,
                       init = if (!is.null(init)) function(r) init(if (is.null(r)) rows else rows[r]),
                       cache = cache)
      }
      all_rows <- seq_len(nrow(emb))
      sel <- if (select == "bic") select_by_bic(n.clusters, function(G) fit_rows(all_rows, G))
             else select_by_stability(n.clusters, nrow(emb), fit_rows, function(G) fit_rows(all_rows, G), seed.use)
      selection <- sel$curve
      if (verbose) {
        cli::cli_inform(sprintf("Domains: mclust EEE, %d clusters, the %s among %d-%d.", selection$k[selection$chosen],
                                if (select == "bic") "largest BIC" else "most stable across subsets",
                                min(n.clusters), max(n.clusters)))
      }
      sel$labels
    },
    leiden = ,
    louvain = cluster_graph(emb, n.clusters, method, seed.use, verbose),
    dec = {
      if (is.null(q)) sedr_abort("has no DEC assignment; run RunSEDR() with dec = TRUE.", arg = "method")
      factor(max.col(q, ties.method = "first"))
    }
  )
  labels <- factor(as.character(labels), levels = levels(labels))  # drops the fit's attributes
  names(labels) <- rownames(emb)
  if (refine > 0) labels <- refine_labels_nearest(labels, coords, refine.k, sections, refine)
  if (methods::is(object, "Seurat")) {
    object[[col.name]] <- labels
    # Set (or, after a fixed number, clear) directly: Misc<- warns on overwrite.
    misc <- methods::slot(object, "misc")
    misc$sedr_clusters_selection <- selection
    methods::slot(object, "misc") <- misc
    return(object)
  }
  if (methods::is(object, "SingleCellExperiment")) {
    SummarizedExperiment::colData(object)[[col.name]] <- labels
    md <- S4Vectors_metadata(object)
    md$sedr_clusters_selection <- selection
    S4Vectors_metadata(object) <- md
    return(object)
  }
  attr(labels, "sedr_clusters_selection") <- selection
  labels
}

# The embedding averaged `steps` times over each spot and its neighbours:
# rows of (D + I)^-1 (A + I) applied to it, a sparse product per step.
smooth_embedding <- function(emb, graph, steps) {
  a <- check_graph(graph, nrow(emb), arg = "smooth")
  a <- a + Matrix::Diagonal(nrow(a))
  a <- Matrix::Diagonal(x = 1 / Matrix::rowSums(a)) %*% a
  x <- emb
  for (i in seq_len(steps)) x <- as.matrix(a %*% x)
  dimnames(x) <- dimnames(emb)
  x
}

# smooth_embedding(emb, graph, 1)[rows, ] with the same values (each row's
# sum runs over the same entries in the same order), from those rows of the
# graph only: no copy of the whole graph, its diagonal or the n x d product.
smooth_rows <- function(emb, graph, rows) {
  a <- check_graph(graph, nrow(emb), arg = "smooth", rows = rows)
  a <- a + Matrix::sparseMatrix(i = seq_along(rows), j = rows, x = 1, dims = dim(a))
  a <- Matrix::Diagonal(x = 1 / Matrix::rowSums(a)) %*% a
  # Four columns at a time: Matrix copies a dense right-hand side whole.
  blocks <- split(seq_len(ncol(emb)), (seq_len(ncol(emb)) - 1L) %/% 4L)
  x <- do.call(cbind, lapply(blocks, function(j) as.matrix(a %*% emb[, j, drop = FALSE])))
  dimnames(x) <- list(rownames(emb)[rows], colnames(emb))
  x
}

# The start of mclust's EM: the embedding moved `weight` of the way towards
# its graph neighbours' mean, as a function of the rows wanted (NULL: all).
# cluster_mclust() fits at most `max.fit` spots, so at millions of spots only
# those rows are smoothed.
smoothed_start <- function(emb, graph, weight) {
  function(rows = NULL) {
    if (is.null(rows)) return((1 - weight) * emb + weight * smooth_embedding(emb, graph, 1))
    (1 - weight) * emb[rows, , drop = FALSE] + weight * smooth_rows(emb, graph, rows)
  }
}

# The spatial graph as a sparse spots x spots matrix with unit weights (only
# its `rows`, if given), or a classed error; a missing graph names `arg`, the
# option that needs it.
check_graph <- function(graph, n, arg, rows = NULL) {
  if (is.null(graph)) {
    sedr_abort("needs the spatial graph: pass `graph = BuildSpatialGraph(coords)` for a plain matrix, or use the object RunSEDR() returned.",
               arg = arg)
  }
  if (!methods::is(graph, "sparseMatrix") && !is.matrix(graph)) {
    sedr_abort("must be a spots x spots adjacency matrix, e.g. from BuildSpatialGraph().", arg = "graph")
  }
  if (nrow(graph) != n || ncol(graph) != n) {
    sedr_abort(sprintf("is %d x %d but the embedding has %d spots.", nrow(graph), ncol(graph), n), arg = "graph")
  }
  a <- methods::as(methods::as(graph, "CsparseMatrix"), "generalMatrix")
  if (!is.null(rows)) a <- a[rows, , drop = FALSE]
  a@x <- rep(1, length(a@x))
  a
}

# mclust EEE (see ?SEDRClusters for the initialisation). mclust's default
# initialisation for more than 2,000 spots, hierarchical clustering (hc) of a
# random 2,000 of them, is ~3-4 s of a ~5.5 s Mclust() call on DLPFC's
# 3,639 x 32 embedding and depends on which 2,000 are drawn; most of the
# rest is mclust's EM, replaced by em_eee() (eee.R, in Rust). Running hc on
# all spots instead, merging up from a k-means partition into ~100 small
# groups rather than from single spots, uses every spot (see mclust_fit).
# Measured on ten DLPFC 151673 embeddings (bench/README.md): median ARI
# 0.523 against 0.516 for Mclust(). `init`, if given (smoothed_start():
# rows of the spatially smoothed embedding, by row indices or NULL for all),
# replaces the embedding for the start only. Tried and not kept: the
# highest-likelihood of several starts (on these embeddings as often a worse
# partition as a better one), the consensus (medoid) of five subset starts
# (no steadier, slower), and averaging the label-aligned posteriors of five
# starts (no steadier, 2.8 s). With the smoothed start, 200 or 400 k-means
# groups and the best of three starts gave the same spread; 50 groups a wider.
cluster_mclust <- function(emb, G, seed, init.size, verbose, init = NULL, max.fit = 50000L, cache = NULL) {
  x <- emb
  storage.mode(x) <- "double"
  fit_on <- NULL
  .with_seed(seed, {
    if (nrow(x) > max.fit) fit_on <- sort(sample.int(nrow(x), max.fit))
    attempt <- function(data, init, model) {
      if (!is.null(fit_on)) data <- data[fit_on, , drop = FALSE]
      mclust_fit(data, G, model, init.size, init = if (!is.null(init)) init(fit_on), cache = cache)
    }
    used <- "mclust EEE"
    data <- x
    fit <- attempt(data, init, "EEE")
    if (is.null(fit)) {
      # EEE is affine-invariant: rotating onto the non-degenerate principal
      # directions changes nothing but removes exact collinearity.
      pc <- stats::prcomp(x, center = TRUE, scale. = FALSE)
      keep <- pc$sdev > max(pc$sdev) * 1e-6
      data <- pc$x[, keep, drop = FALSE]
      if (!is.null(init)) {
        start <- init
        init <- function(rows) scale(start(rows), center = pc$center, scale = FALSE) %*% pc$rotation[, keep, drop = FALSE]
      }
      fit <- attempt(data, init, "EEE")
      used <- "mclust EEE on non-degenerate principal directions"
    }
    if (is.null(fit)) {
      fit <- attempt(data, init, "VVI")
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
      labels <- predict_mixture(data, fit)
    } else {
      labels <- mclust::map(fit$z)
    }
    # What BIC needs (select_by_bic); the k-means fallback has no likelihood.
    fit_info <- if (used != "k-means") {
      z <- fit$z
      list(loglik = fit$loglik, model = fit$modelName, G = G, p = ncol(data), n = nrow(z),
           entropy = -sum(z[z > 0] * log(z[z > 0])))
    }
    if (used != "mclust EEE") {
      sedr_warn(sprintf("mclust EEE could not fit this embedding; labels come from %s.", used), kind = "mclust")
    } else if (verbose) {
      cli::cli_inform(sprintf("Domains: mclust EEE, %d clusters%s.", G,
                              if (is.null(fit_on)) "" else sprintf(" (fitted on %d spots, others predicted)", length(fit_on))))
    }
    out <- factor(labels, levels = sort(unique(labels)))
    attributes(out) <- c(attributes(out), fit_info)
    out
  })
}

# The spots' most probable components under a fitted mixture (the spots left
# out of the fit are assigned this way), in blocks of rows: the E-step's
# temporaries are several n x p and n x G matrices, gigabytes at millions of
# spots. Each row's posterior depends on that row alone.
predict_mixture <- function(data, fit, block = 65536L) {
  labels <- integer(nrow(data))
  for (from in seq(1L, nrow(data), by = block)) {
    r <- from:min(nrow(data), from + block - 1L)
    x <- data[r, , drop = FALSE]
    z <- if (fit$modelName == "EEE") eee_estep(x, fit)$z
         else suppressWarnings(mclust::estep(x, modelName = fit$modelName, parameters = fit$parameters)$z)
    labels[r] <- mclust::map(z)
  }
  labels
}

# One mclust EM fit (mclust::me) of `model` with G components on all rows of
# `data`, or NULL when mclust cannot fit it (singular covariance and the
# like). The EM starts from mclust's hierarchical clustering (of the
# SVD-scaled data, by its default model VVV or by VII where the two build the
# same tree; see hc_labels) cut into G groups, run on
# * a random subset of `init.size` spots, if given and smaller than the data:
#   then one M-step on the subset and one E-step on all spots, as
#   Mclust(initialization = list(subset = ...)) does;
# * otherwise all spots. Above 4 x `groups` spots hc merges up from a
#   k-means partition into `groups` groups (hc's cost grows as the square of
#   what it starts from: from single spots it took 2.6-3.2 s of every
#   SEDRClusters() call on the 1,600-spot demo tissue); below that from
#   single spots.
# Uses the caller's RNG stream (k-means centres, the subset). Neither the
# k-means partition nor the tree depends on G: when several G are fitted on
# the same rows from the same seed (select_by_bic, select_by_stability),
# `cache` (an environment, or NULL) holds them so that they are built once.
# mclust's hc(), me(), mstep() and estep() evaluate a call to their
# model-specific worker (hcVVV, meVVI, ...) in the caller's frame, so the
# package namespace must see those workers: they are imported.
#' @importFrom mclust hcVII hcVVV meVVI mstepEEE mstepVVI estepEEE estepVVI
#' @noRd
mclust_fit <- function(data, G, model, init.size = NULL, groups = max(100L, 10L * G), init = NULL,
                       cache = NULL) {
  n <- nrow(data)
  if (is.null(init)) init <- data
  hc_labels <- function(xs, partition = NULL) {
    # The same data and partition give the same tree, whatever G; the key
    # names the partition itself, not only its number of groups.
    part_sum <- if (is.null(partition)) 0 else sum(as.numeric(partition) * seq_along(partition))
    key <- paste(c(dim(xs), part_sum, sum(xs[seq_len(min(50L, nrow(xs))), ])), collapse = "/")
    h <- if (!is.null(cache)) cache[[key]]
    if (is.null(h)) {
      # hc's VVV merge cost is VII's, l log((trace + alpha) / l), with the
      # within-group determinant added inside the log. On the SVD-scaled
      # SEDR embeddings of bench/domains.R (15 of them, every dataset) that
      # term moved no merge cost by more than 1e-14 from 12 dimensions on
      # (2e-9 at 8, 4e-3 at 4), so the trees are VVV's, built ~13x faster
      # (0.30 -> 0.02 s at DLPFC size). Below 12 dimensions VVV, mclust's
      # default, is kept.
      model <- if (ncol(xs) >= 12L) "VII" else "VVV"
      h <- if (is.null(partition)) mclust::hc(xs, modelName = model, use = "SVD")
           else mclust::hc(xs, modelName = model, use = "SVD", partition = partition)
      if (!is.null(cache)) cache[[key]] <- h
    }
    mclust::hclass(h, G)[, 1]
  }
  fit <- tryCatch(suppressWarnings({
    if (!is.null(init.size) && init.size < n) {
      sub <- sort(sample.int(n, init.size))
      ms <- mclust::mstep(data[sub, , drop = FALSE], modelName = model, z = mclust::unmap(hc_labels(init[sub, , drop = FALSE])))
      z <- mclust::estep(data, modelName = model, parameters = ms$parameters)$z
    } else {
      # k-means fails with fewer distinct spots than groups; hc's own start
      # (identical spots grouped) is then small enough anyway.
      partition <- if (n > 4L * groups) kmeans_partition(init, groups, cache)
      z <- mclust::unmap(hc_labels(init, partition))
    }
    if (anyNA(z)) NULL
    else if (model == "EEE") em_eee(data, z)  # mclust's EM, in Rust (eee.R)
    else mclust::me(data, modelName = model, z = z)
  }), error = function(e) NULL)
  if (is.null(fit) || !is.finite(fit$loglik) || anyNA(fit$z)) return(NULL)
  fit
}

# The seeded k-means partition of `x` into `groups` groups that mclust_fit's
# hc merges up from (NULL where k-means fails). With `cache`, a partition
# drawn before from the same data and the same RNG state is reused, and the
# RNG state that drawing it left is restored: the partition and everything
# drawn after it are what drawing it again would give.
kmeans_partition <- function(x, groups, cache = NULL) {
  key <- NULL
  if (!is.null(cache)) {
    state <- .rng_state()
    key <- paste("kmeans", nrow(x), ncol(x), groups, sum(x), sum(as.numeric(state) * seq_along(state)), sep = "/")
    hit <- cache[[key]]
    if (!is.null(hit)) {
      if (!is.null(hit$state)) assign(".Random.seed", hit$state, envir = globalenv())
      return(hit$partition)
    }
  }
  partition <- tryCatch(stats::kmeans(x, centers = groups, iter.max = 30)$cluster, error = function(e) NULL)
  if (!is.null(key)) cache[[key]] <- list(partition = partition, state = .rng_state())
  partition
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
