# Helpers of SEDRClusters(): spatial label refinement, choosing the number of
# domains (by BIC or by stability across subsets), and the plot of that choice.

# `refine`: FALSE / TRUE or a whole number of rounds >= 0, as an integer.
check_refine <- function(refine) {
  if (is.logical(refine) && length(refine) == 1 && !is.na(refine)) return(as.integer(refine))
  if (!is.numeric(refine) || length(refine) != 1 || is.na(refine) || refine != round(refine) ||
      refine < 0 || refine > 100) {
    sedr_abort("must be FALSE, TRUE or a whole number of rounds between 0 and 100 (0: no refinement).",
               arg = "refine")
  }
  as.integer(refine)
}

# `n.clusters`: one whole number >= 2 (returned as is), or a range of them to
# choose from (sorted, unique, each at most the number of spots). NULL means
# `default.range` cut at one domain per 10 spots, so that every fit (also on
# the 80 % subsets of select = "stability") has spots to spare per domain.
check_n_clusters <- function(n.clusters, n.spots, default.range = 4:12) {
  if (is.null(n.clusters)) {
    n.clusters <- default.range[default.range <= n.spots %/% 10]
    if (length(n.clusters) < 2) {
      sedr_abort(sprintf("NULL chooses among %d-%d domains, which %d spots are too few for; give the number of domains.",
                         min(default.range), max(default.range), n.spots), arg = "n.clusters")
    }
  }
  ok <- is.numeric(n.clusters) && length(n.clusters) >= 1 && !anyNA(n.clusters) &&
    all(is.finite(n.clusters)) && all(n.clusters == round(n.clusters))
  if (!ok) {
    sedr_abort("must be a whole number of domains (>= 2), a range of them such as 4:12, or NULL (choose among 4:12).",
               arg = "n.clusters")
  }
  if (any(n.clusters < 2)) {
    sedr_abort(sprintf("must be >= 2 (a domain count), but has %s.", paste(n.clusters[n.clusters < 2], collapse = ", ")),
               arg = "n.clusters")
  }
  if (any(n.clusters > n.spots)) {
    sedr_abort(sprintf("(%d) exceeds the number of spots (%d).", as.integer(max(n.clusters)), n.spots), arg = "n.clusters")
  }
  sort(unique(as.integer(n.clusters)))
}

# The spots' coordinates for refinement, checked and in the embedding's
# order (by name when both have names, else by position).
refine_coords <- function(coords, spots, n) {
  coords <- check_coords(coords)
  if (nrow(coords) != n && (is.null(spots) || is.null(rownames(coords)))) {
    sedr_abort(sprintf("has %d rows but the embedding has %d spots.", nrow(coords), n), arg = "coords")
  }
  if (is.null(spots) || is.null(rownames(coords))) return(coords)
  align_coords(coords, spots)
}

# The sections RunSEDR() stored (one label per spot, named by spot) in the
# embedding's order; NULL when there are none or they do not cover the
# embedding's spots (e.g. an embedding that was subset and renamed).
refine_sections <- function(sections, spots) {
  if (is.null(sections) || is.null(spots) || is.null(names(sections))) return(NULL)
  if (!all(spots %in% names(sections))) return(NULL)
  unname(sections[spots])
}

# Who votes in refinement: each spot's k nearest spots by coordinates within
# its own section (sections may share a coordinate frame), symmetrised
# (BuildSpatialGraph), at most all other spots of the smallest section.
refine_neighbours <- function(coords, k, sections = NULL) {
  near <- nearest_within(coords, k, sections)
  BuildSpatialGraph(coords, k.neighbors = near$k, group = near$sections)
}

# The k and sections refine_neighbours() uses: k at most the size of the
# smallest section minus one; sections of a single spot mean none.
nearest_within <- function(coords, k, sections) {
  smallest <- if (is.null(sections)) nrow(coords) else min(table(sections))
  if (smallest < 2) sections <- NULL
  if (is.null(sections)) smallest <- nrow(coords)
  list(k = min(k, smallest - 1L), sections = sections)
}

# `smooth.lambda`: one number in [0, 1).
check_smooth_lambda <- function(smooth.lambda) {
  if (!is.numeric(smooth.lambda) || length(smooth.lambda) != 1 || is.na(smooth.lambda) ||
      smooth.lambda < 0 || smooth.lambda >= 1) {
    sedr_abort("must be one number in [0, 1): the weight of the neighbours' mean embedding (0: none).",
               arg = "smooth.lambda")
  }
  as.numeric(smooth.lambda)
}

# The graph (check_graph()) without self loops: who counts as a spot's
# neighbour when its neighbours vote or are averaged.
neighbour_matrix <- function(graph, n, arg) {
  a <- check_graph(graph, n, arg = arg)
  Matrix::diag(a) <- 0
  Matrix::drop0(a)
}

# Each spot's embedding blended with the mean embedding of its spatial
# neighbours in `graph` (the spot itself not counted):
# (1 - lambda) z_i + lambda mean_j z_j. A spot without neighbours keeps its own.
blend_neighbour_mean <- function(emb, graph, lambda) {
  a <- neighbour_matrix(graph, nrow(emb), arg = "smooth.lambda")
  deg <- Matrix::rowSums(a)
  nbr <- as.matrix(Matrix::Diagonal(x = 1 / pmax(deg, 1)) %*% a %*% emb)
  w <- ifelse(deg > 0, lambda, 0)
  out <- (1 - w) * emb + w * nbr
  dimnames(out) <- dimnames(emb)
  out
}

# Majority vote of the spatial neighbours, `rounds` times (as GraphST's
# refine_label, which votes among a spot's 50 nearest spots): a spot takes the
# label most of its neighbours have; on a tie for the most votes, and without
# neighbours, it keeps its own. Each round updates all spots at once, so the
# result does not depend on the order of the spots. The vote runs in Rust
# (crate::refine): at millions of spots R's sparse product and the copies of
# the graph it needs cost gigabytes.
# The neighbours are those of `graph` (symmetrised, self loops ignored).
refine_labels <- function(labels, graph, rounds) {
  if (rounds == 0) return(labels)
  a <- check_graph(graph, length(labels), arg = "refine")
  relabel(labels, unwrap_rust(.Call(wrap__sedr_vote_graph, a@p, a@i, as.integer(labels), as.integer(rounds), 1L)))
}

# refine_labels() among each spot's k nearest spots by coordinates
# (refine_neighbours()), built and used in Rust without handing the graph to R.
refine_labels_nearest <- function(labels, coords, k, sections, rounds) {
  near <- nearest_within(coords, k, sections)
  if (rounds == 0 || near$k < 1) return(labels)
  codes <- unwrap_rust(.Call(wrap__sedr_vote_knn, as.double(coords), nrow(coords), ncol(coords), as.integer(near$k),
                             check_group(near$sections, nrow(coords)), as.integer(labels), as.integer(rounds), 1L))
  relabel(labels, codes)
}

# The voted codes as a factor with the input's names and the levels still used.
relabel <- function(labels, codes) {
  lev <- levels(labels)
  out <- factor(lev[codes], levels = lev[sort(unique(codes))])
  names(out) <- names(labels)
  out
}

# Free parameters of an mclust model with G components in p dimensions
# (mclust's nMclustParams for the two models SEDRClusters fits).
mclust_npar <- function(model, G, p) {
  cov <- switch(model, EEE = p * (p + 1) / 2, VVI = G * p)
  (G - 1) + G * p + cov
}

# mclust's BIC, 2 loglik - npar log(n) (larger is better), of one fit.
mclust_bic <- function(loglik, model, G, p, n) 2 * loglik - mclust_npar(model, G, p) * log(n)

# Fit every G in `range` and keep the one with the largest BIC. `fit_one(G)`
# returns labels with attributes loglik, model, p and n (see cluster_mclust);
# a G whose fit has no likelihood (the k-means fallback) gets BIC NA and is
# not chosen unless nothing else fitted.
select_by_bic <- function(range, fit_one) {
  fits <- lapply(range, fit_one)
  curve <- data.frame(
    k = range,
    BIC = vapply(fits, function(f) {
      ll <- attr(f, "loglik")
      if (is.null(ll)) NA_real_ else mclust_bic(ll, attr(f, "model"), attr(f, "G"), attr(f, "p"), attr(f, "n"))
    }, 0),
    loglik = vapply(fits, function(f) attr(f, "loglik") %||% NA_real_, 0),
    entropy = vapply(fits, function(f) attr(f, "entropy") %||% NA_real_, 0),
    model = vapply(fits, function(f) attr(f, "model") %||% "k-means", "")
  )
  best <- if (all(is.na(curve$BIC))) 1L else which.max(curve$BIC)
  curve$chosen <- seq_len(nrow(curve)) == best
  list(labels = fits[[best]], curve = curve)
}

# Fit every G in `range` on `n.subsets` seeded random subsets of `fraction`
# of the n spots and score G by the mean pairwise ARI of the subsets' labels
# on the spots each pair shares: a number of domains that the data support
# comes out the same whichever spots are left out. The largest score wins,
# and the largest G among equal scores: when a finer partition reproduces as
# exactly as a coarser one (typically both perfectly, on well-separated
# domains), its extra splits are supported too, and stability's known pull
# towards few clusters should not decide. `fit_all(G)` then gives the
# labels of all spots. `fit_subset(rows, G)` clusters the spots `rows`. The
# subsets are drawn from `seed` (NULL: R's generator as it stands).
select_by_stability <- function(range, n, fit_subset, fit_all, seed, n.subsets = 3L, fraction = 0.8) {
  subsets <- .with_seed(seed, lapply(seq_len(n.subsets), function(b) sort(sample.int(n, floor(fraction * n)))))
  pairs <- utils::combn(n.subsets, 2)
  stability <- vapply(range, function(G) {
    labels <- lapply(subsets, function(rows) {
      out <- rep(NA_integer_, n)
      out[rows] <- as.integer(fit_subset(rows, G))
      out
    })
    mean(apply(pairs, 2, function(p) {
      a <- labels[[p[1]]]
      b <- labels[[p[2]]]
      both <- !is.na(a) & !is.na(b)
      mclust::adjustedRandIndex(a[both], b[both])
    }))
  }, 0)
  best <- max(which(stability == max(stability)))
  curve <- data.frame(k = range, stability = stability, chosen = seq_along(range) == best)
  list(labels = fit_all(range[best]), curve = curve)
}

# The column of a selection curve that chose the number of domains.
selection_criterion <- function(curve) if ("stability" %in% names(curve)) "stability" else "BIC"

#' Plot the choice of the number of domains
#'
#' Shows the curve that [SEDRClusters()] computed when it was given a
#' range of `n.clusters` (or `NULL`), with the chosen number marked: mclust's
#' BIC, `2 * loglik - npar * log(n)` (`select = "bic"`), or the stability
#' of the domains across subsets of the spots (`select = "stability"`);
#' larger is better for both.
#'
#' @param object A `Seurat` object or `SingleCellExperiment` after
#'   `SEDRClusters(n.clusters = <range>)`, the factor that it returned for a
#'   matrix or `sedr_result`, or the curve itself (a data frame with columns
#'   `k`, `chosen` and `BIC` or `stability`).
#' @return A ggplot object.
#' @export
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200, n.domains = 3)
#' res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 30, dec = FALSE,
#'                n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE)
#' cl <- SEDRClusters(res, n.clusters = 2:6, verbose = FALSE)
#' SEDRClustersPlot(cl)
SEDRClustersPlot <- function(object) {
  curve <- clusters_selection(object)
  if (is.null(curve)) {
    sedr_abort("holds no choice of the number of domains; run SEDRClusters() with a range of n.clusters (e.g. 4:12) or NULL first.",
               arg = "object")
  }
  best <- curve[curve$chosen, , drop = FALSE]
  criterion <- selection_criterion(curve)
  label <- if (criterion == "BIC") c("BIC (mclust EEE)", "largest BIC")
           else c("stability (mean ARI between subsets)", "most stable")
  ggplot2::ggplot(curve, ggplot2::aes(x = !!as.name("k"), y = !!as.name(criterion))) +
    ggplot2::geom_line(na.rm = TRUE) +
    ggplot2::geom_point(na.rm = TRUE) +
    ggplot2::geom_vline(xintercept = best$k, linetype = "dashed", colour = "firebrick") +
    ggplot2::geom_point(data = best, colour = "firebrick", size = 3, na.rm = TRUE) +
    ggplot2::scale_x_continuous(breaks = curve$k) +
    ggplot2::labs(x = "number of domains", y = label[1],
                  title = sprintf("Chosen: %d domains (%s)", best$k, label[2])) +
    ggplot2::theme_bw()
}

# The stored selection curve of any object SEDRClusters() returns, or NULL.
clusters_selection <- function(object) {
  curve <- if (is.data.frame(object)) object
    else if (methods::is(object, "Seurat")) SeuratObject::Misc(object, slot = "sedr_clusters_selection")
    else if (methods::is(object, "SingleCellExperiment")) S4Vectors_metadata(object)$sedr_clusters_selection
    else attr(object, "sedr_clusters_selection")
  if (is.null(curve)) return(NULL)
  if (!is.data.frame(curve) || !all(c("k", "chosen") %in% names(curve)) ||
      !any(c("BIC", "stability") %in% names(curve))) {
    sedr_abort("must hold a curve with columns k, chosen and BIC or stability, as SEDRClusters() stores.", arg = "object")
  }
  curve
}
