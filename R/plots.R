# Plots for SEDR results: spatial domains on the tissue, a UMAP of the
# embedding, raw vs denoised expression of a gene, and training loss curves.
# All return ggplot (or patchwork) objects so users can restyle them.

#' Plot spatial domains on tissue coordinates
#'
#' Draws one point per spot at its tissue coordinates, coloured by a discrete
#' label such as the SEDR clusters. The y axis is reversed so the tissue
#' appears as in the image, and both axes use the same scale.
#'
#' `object` can be
#' * a Seurat object: labels come from the metadata column `group.by`;
#'   coordinates from `coords` if given, else from metadata columns `x` and
#'   `y` if present, else from `SeuratObject::GetTissueCoordinates()`;
#' * a numeric matrix or data frame of coordinates (columns `x` and `y`, or
#'   the first two columns): labels come from `labels`, or, for a data frame,
#'   from its column `group.by`;
#' * a `sedr_simulation` from [SimulateSpatialTissue()]: labels default to the
#'   true domains.
#'
#' @param object A Seurat object, a coordinate matrix or data frame, or a
#'   `sedr_simulation`.
#' @param group.by Name of the metadata (or data frame) column holding the
#'   labels.
#' @param coords Optional spot coordinates (matrix or data frame, columns `x`
#'   and `y` or the first two columns), one row per spot, overriding those
#'   found in `object`. With row names, rows are matched to spot names.
#' @param labels Optional vector of labels, one per spot; overrides
#'   `group.by`.
#' @param pt.size Point size; by default it shrinks with the number of spots.
#' @param palette Optional vector of colours, at least one per label (named
#'   vectors are matched to label values). Defaults to a fixed 20-colour
#'   palette.
#' @param legend.title Title of the colour legend. By default the column the
#'   labels came from (`group.by`), or `"label"` for labels given directly.
#'
#' @return A ggplot object.
#'
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100,
#'                              n.domains = 3, markers.per.domain = 5)
#' SEDRSpatialPlot(sim$coords, labels = sim$domain)
#' # A simulation directly (its true domains), with colours of your own.
#' SEDRSpatialPlot(sim, palette = c("grey70", "steelblue", "darkorange"))
#' @export
SEDRSpatialPlot <- function(object, group.by = "sedr_clusters", coords = NULL,
                            labels = NULL, pt.size = NULL, palette = NULL,
                            legend.title = NULL) {
  .check_string(group.by, "group.by", "a single column name, e.g. \"sedr_clusters\"")
  if (!is.null(legend.title)) .check_string(legend.title, "legend.title", "a single string, e.g. \"domain\"")
  spot_data <- .spatial_plot_data(object, group.by, coords, labels)
  pt.size <- .point_size(pt.size, nrow(spot_data))

  lev <- levels(spot_data$label)
  colours <- .resolve_palette(palette, lev)

  ggplot2::ggplot(
    spot_data,
    ggplot2::aes(x = !!as.name("x"), y = !!as.name("y"),
                 colour = !!as.name("label"))
  ) +
    ggplot2::geom_point(size = pt.size, stroke = 0) +
    ggplot2::scale_colour_manual(values = colours, na.value = "grey80",
                                 drop = FALSE,
                                 name = legend.title %||% attr(spot_data, "title")) +
    ggplot2::scale_y_reverse() +
    ggplot2::coord_fixed() +
    ggplot2::guides(
      colour = ggplot2::guide_legend(override.aes = list(size = 3))
    ) +
    ggplot2::theme_void() +
    ggplot2::theme(legend.key = ggplot2::element_blank())
}

#' Plot SEDR training loss curves
#'
#' Draws one panel per loss component, with a line per training phase.
#' Accepts the loss history in wide form (columns `epoch`, optionally `phase`,
#' and one numeric column per component, e.g. `total`, `mse`, `graph`, `sce`,
#' `dec_kl`) or in long form (columns `epoch`, optionally `phase`, then
#' `component` and `value`). The y axis is logarithmic when all losses are
#' positive.
#'
#' @param losses A data frame of losses, as described above.
#'
#' @return A ggplot object.
#'
#' @examples
#' losses <- data.frame(epoch = 1:50, phase = "train",
#'                      total = exp(-(1:50) / 10) + 0.1,
#'                      mse = exp(-(1:50) / 12) + 0.05)
#' SEDRLossPlot(losses)
#'
#' # The history RunSEDR() records (also Misc(obj[["sedr"]])$losses in Seurat).
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
#' res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 20,
#'                options = SEDROptions(dec.epochs = 20), n.hvg = 100,
#'                npcs = 20, min.spots = 5, verbose = FALSE)
#' SEDRLossPlot(res$losses)
#' @export
SEDRLossPlot <- function(losses) {
  long <- .losses_long(losses)
  log_y <- all(long$value > 0)
  per_line <- max(table(interaction(long$component, long$phase, drop = TRUE)))

  p <- ggplot2::ggplot(
    long,
    ggplot2::aes(x = !!as.name("epoch"), y = !!as.name("value"),
                 colour = !!as.name("phase"), group = !!as.name("phase"))
  ) +
    ggplot2::geom_line() +
    ggplot2::facet_wrap("component", scales = "free_y") +
    ggplot2::scale_colour_manual(values = .sedr_palette(nlevels(long$phase))) +
    ggplot2::labs(x = "epoch", y = if (log_y) "loss (log scale)" else "loss") +
    ggplot2::theme_minimal()
  # Points make short histories (or single epochs) visible.
  if (per_line <= 30L) p <- p + ggplot2::geom_point(size = 0.8)
  if (log_y) p <- p + ggplot2::scale_y_log10()
  p
}

#' Plot a UMAP of the SEDR embedding
#'
#' Computes a two-dimensional UMAP of the SEDR embedding (with
#' [uwot::umap()], seeded) and draws one point per spot, coloured by a
#' discrete label such as the SEDR domains or a manual annotation. Pass
#' `umap.reduction` to draw a UMAP that is already stored in the object
#' instead (e.g. one from `Seurat::RunUMAP(obj, reduction = "sedr")`).
#'
#' `object` can be
#' * a Seurat object: the embedding is the reduction `reduction`, labels come
#'   from the metadata column `group.by`;
#' * a `SingleCellExperiment`: the embedding is `reducedDim(object, "SEDR")`
#'   (for `reduction = "sedr"`, else the `reducedDim` named `reduction`),
#'   labels come from the `colData` column `group.by`;
#' * a `sedr_result` from [RunSEDR()], or a numeric embedding matrix (spots x
#'   dimensions): labels must be given in `labels`.
#'
#' Any reduction works, so the same call on `reduction = "pca"` gives a
#' baseline to compare with.
#'
#' @param object A Seurat object, a `SingleCellExperiment`, a `sedr_result`
#'   or an embedding matrix (spots x dimensions).
#' @param group.by Name of the metadata (Seurat) or `colData` (SCE) column
#'   holding the labels.
#' @param reduction Reduction (Seurat) or `reducedDim` (SCE) holding the
#'   embedding; `"sedr"` means `"SEDR"` for a `SingleCellExperiment`, as in
#'   [SEDRClusters()].
#' @param labels Optional vector of labels, one per spot (matched by name
#'   when named by spot); overrides `group.by`. Required for a `sedr_result`
#'   or a matrix.
#' @param dims Dimensions of the embedding to use (default: all).
#' @param umap.reduction Optional name of a reduction (Seurat) or
#'   `reducedDim` (SCE) that already holds a UMAP of the embedding; its first
#'   two columns are drawn and nothing is computed (`dims`, `n.neighbors`,
#'   `min.dist` and `seed.use` are then unused).
#' @param n.neighbors Number of neighbours of the UMAP graph (15); lowered to
#'   the number of spots minus one on tiny data.
#' @param min.dist Minimum distance between embedded points (0.3, as
#'   Seurat's `RunUMAP()`).
#' @param seed.use Random seed for the UMAP (42); `NULL` uses the generator
#'   as it stands. The caller's random number stream is left unchanged.
#' @param pt.size Point size; by default it shrinks with the number of spots.
#' @param palette Optional vector of colours, at least one per label (named
#'   vectors are matched to label values). Defaults to a fixed 20-colour
#'   palette, the one of [SEDRSpatialPlot()].
#' @param ... Further arguments to [uwot::umap()], e.g. `metric = "cosine"`
#'   or `n_threads` (1 by default, which keeps the result reproducible).
#'
#' @return A ggplot object. Its data (`p$data`) has one row per spot with
#'   columns `spot`, `UMAP_1`, `UMAP_2` and `label`, so the coordinates can
#'   be reused.
#'
#' @seealso [SEDRSpatialPlot()] for the same labels on the tissue.
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
#' res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 30, dec = FALSE,
#'                n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE)
#' SEDRUmapPlot(res, labels = sim$domain)
#'
#' # Seurat: labels from a metadata column (any reduction works, e.g. "pca").
#' if (requireNamespace("SeuratObject", quietly = TRUE)) {
#'   obj <- SimulationToSeurat(sim)
#'   obj <- RunSEDR(obj, epochs = 30, dec = FALSE, n.hvg = 100, npcs = 20,
#'                  min.spots = 5, verbose = FALSE)
#'   obj <- SEDRClusters(obj, n.clusters = 5, verbose = FALSE)
#'   SEDRUmapPlot(obj, group.by = "sedr_clusters", n.neighbors = 30) +
#'     ggplot2::ggtitle("SEDR domains")
#' }
#' @export
SEDRUmapPlot <- function(object, group.by = "sedr_clusters",
                         reduction = "sedr", labels = NULL, dims = NULL,
                         umap.reduction = NULL, n.neighbors = 15,
                         min.dist = 0.3, seed.use = 42, pt.size = NULL,
                         palette = NULL, ...) {
  .check_string(group.by, "group.by", "a single column name, e.g. \"sedr_clusters\"")
  .check_string(reduction, "reduction", "a single reduction name, e.g. \"sedr\"")
  if (!is.null(umap.reduction)) {
    .check_string(umap.reduction, "umap.reduction", "a single reduction name, e.g. \"umap.sedr\"")
  }
  src <- .umap_plot_source(object, group.by, reduction, labels, umap.reduction)
  # Labels and colours first, so that bad input fails before the UMAP runs.
  points <- if (is.null(src$umap)) src$embedding else src$umap
  spots <- rownames(points)
  n <- nrow(points)
  lab <- .label_factor(src$labels, spots, n)
  colours <- .resolve_palette(palette, levels(lab))
  pt.size <- .point_size(pt.size, n)

  if (is.null(src$umap)) {
    emb <- check_reduction_matrix(src$embedding, dims)
    n.neighbors <- .check_whole(n.neighbors, "n.neighbors", min = 2)
    .check_number(min.dist, "min.dist")
    if (min.dist < 0) sedr_abort("must be >= 0.", arg = "min.dist")
    if (!is.null(seed.use)) {
      seed.use <- .check_whole(seed.use, "seed.use", min = -.Machine$integer.max)
    }
    if (nrow(emb) < 3L) {
      sedr_abort(paste0("has ", nrow(emb), " spots; a UMAP needs at least 3."),
                 arg = "object")
    }
    if (!requireNamespace("uwot", quietly = TRUE)) {
      sedr_abort(paste0("SEDRUmapPlot() needs the uwot package to compute the ",
                        "UMAP; install it with install.packages(\"uwot\"), or ",
                        "pass `umap.reduction`."), kind = "dependency")
    }
    dots <- list(...)
    if (length(dots) && (is.null(names(dots)) || any(names(dots) == ""))) {
      sedr_abort("must be named arguments of uwot::umap().", arg = "...")
    }
    # One thread by default: uwot's multi-threaded optimisation is not
    # reproducible for a given seed.
    args <- list(X = emb, n_neighbors = min(n.neighbors, nrow(emb) - 1L),
                 min_dist = min.dist, n_threads = 1, verbose = FALSE)
    args[names(dots)] <- dots
    xy <- .with_seed(seed.use, do.call(uwot::umap, args))
  } else {
    if (...length()) {
      sedr_abort(paste0("are not used with `umap.reduction` (nothing is ",
                        "computed); drop them or `umap.reduction`."),
                 arg = "...")
    }
    xy <- src$umap
    if (!is.numeric(xy) || ncol(xy) < 2L) {
      sedr_abort("must name a reduction with at least two dimensions.",
                 arg = "umap.reduction")
    }
  }
  umap_data <- data.frame(spot = spots %||% as.character(seq_len(n)),
                          UMAP_1 = as.numeric(xy[, 1]),
                          UMAP_2 = as.numeric(xy[, 2]), label = lab,
                          row.names = NULL, stringsAsFactors = FALSE)

  ggplot2::ggplot(
    umap_data,
    ggplot2::aes(x = !!as.name("UMAP_1"), y = !!as.name("UMAP_2"),
                 colour = !!as.name("label"))
  ) +
    ggplot2::geom_point(size = pt.size, stroke = 0) +
    ggplot2::scale_colour_manual(values = colours, na.value = "grey80",
                                 drop = FALSE, name = src$title) +
    ggplot2::guides(
      colour = ggplot2::guide_legend(override.aes = list(size = 3))
    ) +
    ggplot2::labs(x = "UMAP 1", y = "UMAP 2") +
    ggplot2::theme_classic()
}

#' Plot raw and denoised expression of a gene on the tissue
#'
#' Draws one gene twice on the tissue coordinates, side by side: its raw
#' expression and its SEDR-denoised expression (from
#' `RunSEDR(mode = "imputation")`). Both panels show `log1p` of counts per
#' million: the raw panel from the counts of the original assay, the
#' denoised panel from the denoised values, which `RunSEDR()` returns on the
#' CPM scale. Each panel has its own colour range, since denoised values are
#' smoother and have a narrower range than raw ones; by default it spans the
#' panel's 1st to 99th percentile, so that a few extreme spots (often zeros
#' in the raw counts) do not wash out the pattern. Add
#' `& ggplot2::scale_colour_viridis_c(limits = c(lo, hi))` to share one
#' range between the panels.
#'
#' `object` can be
#' * a Seurat object after `RunSEDR(mode = "imputation")`: denoised values
#'   from the `data` of assay `denoised.assay`, raw counts from assay
#'   `assay`; coordinates from `coords`, else metadata columns `x` and `y`,
#'   else the image's tissue coordinates;
#' * a `SingleCellExperiment` after `RunSEDR(mode = "imputation")`: denoised
#'   values from `metadata(object)$SEDR$denoised`, raw counts from the assay
#'   `assay` (default `"counts"`); coordinates from `coords`, else
#'   `spatialCoords()` of a `SpatialExperiment`, else `colData` columns `x`
#'   and `y`;
#' * a `sedr_result` from `RunSEDR(counts, coords, mode = "imputation")`: it
#'   does not keep its input, so pass the same `counts` and `coords`.
#'
#' @param object A Seurat object, a `SingleCellExperiment` or a `sedr_result`
#'   with denoised expression.
#' @param feature One gene name, among the denoised genes (the variable genes
#'   that `RunSEDR()` modelled).
#' @param assay Assay with the raw counts: for Seurat the default assay by
#'   default, for a `SingleCellExperiment` `"counts"`.
#' @param denoised.assay For Seurat: the assay with the denoised expression
#'   (`"SEDR"`, `assay.name` of [RunSEDR()]).
#' @param counts For a `sedr_result`: the raw counts given to `RunSEDR()`
#'   (genes x spots or spots x genes).
#' @param coords Spot coordinates (matrix or data frame, columns `x` and `y`
#'   or the first two), one row per spot, matched by spot name when named.
#'   Required for a `sedr_result`; overrides those found in other objects.
#' @param pt.size Point size; by default it shrinks with the number of spots.
#' @param clip.quantiles Two probabilities: each panel's colour range spans
#'   these quantiles of its values, and values outside are drawn in the end
#'   colours (`c(0.01, 0.99)`); `NULL` uses the full range.
#'
#' @return A patchwork of two ggplot objects (raw, then denoised), itself a
#'   ggplot: `p & ggplot2::theme(...)` restyles both panels, `p[[1]]` and
#'   `p[[2]]` are the panels. Each panel's data has columns `spot`, `x`, `y`
#'   and `value` (`log1p(CPM)`).
#'
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
#' imp <- RunSEDR(sim$counts, coords = sim$coords, mode = "imputation",
#'                epochs = 30, n.hvg = 100, min.spots = 5, verbose = FALSE)
#' # A marker gene of the first domain that the model denoised.
#' gene <- intersect(sim$markers[[1]], colnames(imp$denoised$expression))[1]
#' SEDRGenePlot(imp, gene, counts = sim$counts, coords = sim$coords)
#'
#' # Seurat: the denoised values are in the "SEDR" assay.
#' if (requireNamespace("SeuratObject", quietly = TRUE)) {
#'   obj <- SimulationToSeurat(sim)
#'   obj <- RunSEDR(obj, mode = "imputation", epochs = 30, n.hvg = 100,
#'                  min.spots = 5, verbose = FALSE)
#'   SEDRGenePlot(obj, gene) & ggplot2::theme(legend.position = "bottom")
#' }
#' @export
SEDRGenePlot <- function(object, feature, assay = NULL,
                         denoised.assay = "SEDR", counts = NULL,
                         coords = NULL, pt.size = NULL,
                         clip.quantiles = c(0.01, 0.99)) {
  .check_string(feature, "feature", "a single gene name")
  if (!is.null(assay)) .check_string(assay, "assay", "a single assay name")
  .check_string(denoised.assay, "denoised.assay", "a single assay name")
  if (!requireNamespace("patchwork", quietly = TRUE)) {
    sedr_abort(paste0("SEDRGenePlot() needs the patchwork package to put the ",
                      "two panels side by side; install it with ",
                      "install.packages(\"patchwork\")."), kind = "dependency")
  }
  src <- .gene_plot_source(object, feature, assay, denoised.assay, counts,
                           coords)
  spots <- names(src$denoised)
  if (is.null(src$coords)) {
    sedr_abort(paste0("is needed: a sedr_result does not keep the spot ",
                      "coordinates; pass those given to RunSEDR()."),
               arg = "coords")
  }
  xy <- .align_xy(.coords_xy(src$coords), spots)
  pt.size <- .point_size(pt.size, length(spots))
  if (!is.null(clip.quantiles) &&
      !(is.numeric(clip.quantiles) && length(clip.quantiles) == 2L &&
        !anyNA(clip.quantiles) && all(clip.quantiles >= 0) &&
        all(clip.quantiles <= 1) && clip.quantiles[1] < clip.quantiles[2])) {
    sedr_abort(paste0("must be two increasing probabilities in [0, 1], e.g. ",
                      "c(0.01, 0.99), or NULL."), arg = "clip.quantiles")
  }

  panel <- function(value, title) {
    d <- data.frame(spot = spots, x = xy[, 1], y = xy[, 2],
                    value = log1p(unname(value[spots])),
                    row.names = NULL, stringsAsFactors = FALSE)
    limits <- if (is.null(clip.quantiles)) NULL else
      unname(stats::quantile(d$value, clip.quantiles))
    # A constant panel (e.g. a gene absent from every spot) has no range.
    if (!is.null(limits) && limits[1] == limits[2]) limits <- NULL
    ggplot2::ggplot(
      d, ggplot2::aes(x = !!as.name("x"), y = !!as.name("y"),
                      colour = !!as.name("value"))
    ) +
      ggplot2::geom_point(size = pt.size, stroke = 0) +
      ggplot2::scale_colour_viridis_c(name = "log1p(CPM)", limits = limits,
                                      oob = .squish) +
      ggplot2::scale_y_reverse() +
      ggplot2::coord_fixed() +
      ggplot2::ggtitle(title) +
      ggplot2::theme_void()
  }
  patchwork::wrap_plots(panel(src$raw, "raw"),
                        panel(src$denoised, "SEDR denoised"), nrow = 1) +
    patchwork::plot_annotation(title = feature)
}

# ---- internals -------------------------------------------------------------

# A fixed palette: the ten saturated Tableau colours first, then their light
# partners, so that up to 10 domains get strong, distinct colours and up to
# 20 stay distinguishable. Beyond 20, evenly spaced HCL hues.
.sedr_palette <- function(n) {
  base <- c(
    "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD",
    "#8C564B", "#E377C2", "#17BECF", "#BCBD22", "#7F7F7F",
    "#AEC7E8", "#FFBB78", "#98DF8A", "#FF9896", "#C5B0D5",
    "#C49C94", "#F7B6D2", "#9EDAE5", "#DBDB8D", "#C7C7C7"
  )
  n <- as.integer(n)
  if (n <= 20L) return(base[seq_len(n)])
  grDevices::hcl.colors(n, palette = "Dynamic")
}

# Colours for the label levels: the default palette, or the user's, checked.
.resolve_palette <- function(palette, lev) {
  if (is.null(palette)) {
    return(stats::setNames(.sedr_palette(length(lev)), lev))
  }
  if (!is.character(palette) || anyNA(palette)) {
    sedr_abort("must be a character vector of colours.", arg = "palette")
  }
  if (!is.null(names(palette))) {
    missing <- setdiff(lev, names(palette))
    if (length(missing)) {
      sedr_abort(paste0("has no colour for label(s) ",
                        paste(.head_str(missing), collapse = ", "),
                        "; name one colour per label or pass an unnamed ",
                        "vector."), arg = "palette")
    }
    return(palette[lev])
  }
  if (length(palette) < length(lev)) {
    sedr_abort(paste0("has ", length(palette), " colours but there are ",
                      length(lev), " labels; give at least ", length(lev),
                      " colours, or leave `palette` NULL."), arg = "palette")
  }
  stats::setNames(palette[seq_along(lev)], lev)
}

# First few elements for messages, with an ellipsis when cut.
.head_str <- function(x, n = 5L) {
  if (length(x) > n) c(x[seq_len(n)], "...") else x
}

# Build data.frame(x, y, label) from the accepted kinds of `object`.
.spatial_plot_data <- function(object, group.by, coords, labels) {
  spots <- NULL
  # Legend title: the column the labels came from, when they came from one.
  title <- if (is.null(labels)) group.by else "label"
  if (inherits(object, "Seurat")) {
    meta <- object[[]]
    spots <- rownames(meta)
    if (is.null(labels)) labels <- .meta_labels(meta, group.by)
    if (is.null(coords)) coords <- .seurat_plot_coords(object)
  } else if (inherits(object, "sedr_simulation")) {
    spots <- rownames(object$coords)
    if (is.null(labels)) {
      labels <- object$domain
      title <- "domain"
    }
    if (is.null(coords)) coords <- object$coords
  } else if (is.matrix(object) || is.data.frame(object)) {
    if (is.null(labels)) {
      if (is.data.frame(object) && group.by %in% colnames(object)) {
        labels <- object[[group.by]]
      } else {
        sedr_abort(paste0("is needed when `object` is a coordinate matrix or ",
                          "data frame without a \"", group.by, "\" column: ",
                          "pass one label per spot, e.g. ",
                          "SEDRSpatialPlot(coords, labels = clusters)."),
                   arg = "labels")
      }
    }
    if (is.null(coords)) coords <- object
    spots <- rownames(object)
  } else {
    sedr_abort(paste0("must be a Seurat object, a coordinate matrix or data ",
                      "frame, or a sedr_simulation, not an object of class ",
                      class(object)[1], "."), arg = "object")
  }

  xy <- .align_xy(.coords_xy(coords), spots)
  lab <- .label_factor(labels, spots %||% rownames(xy), nrow(xy))
  out <- data.frame(x = xy[, 1], y = xy[, 2], label = lab,
                    row.names = NULL, stringsAsFactors = FALSE)
  attr(out, "title") <- title
  out
}

# Two numeric columns x and y from a coordinate matrix/data frame: named
# columns first (x/y, then Visium's imagecol/imagerow), else the first two.
.coords_xy <- function(coords) {
  if (!(is.matrix(coords) || is.data.frame(coords)) || ncol(coords) < 2L) {
    sedr_abort(paste0("must be a matrix or data frame with at least two ",
                      "columns (x and y)."), arg = "coords")
  }
  cn <- colnames(coords)
  cols <- if (all(c("x", "y") %in% cn)) c("x", "y") else
    if (all(c("imagecol", "imagerow") %in% cn)) c("imagecol", "imagerow") else
      cn[1:2]
  xy <- if (is.null(cn)) coords[, 1:2, drop = FALSE] else
    coords[, cols, drop = FALSE]
  xy <- as.data.frame(xy)
  if (!all(vapply(xy, is.numeric, logical(1)))) {
    sedr_abort("must have numeric x and y columns.", arg = "coords")
  }
  out <- cbind(x = as.numeric(xy[[1]]), y = as.numeric(xy[[2]]))
  rownames(out) <- rownames(coords)
  out
}

# Tissue coordinates of every image of a Seurat object.
.seurat_tissue_coords <- function(object) {
  res <- seurat_image_coords(object)
  if (is.null(res)) {
    sedr_abort(paste0("not found: the object has no metadata columns x and y ",
                      "and no image with tissue coordinates; pass `coords` ",
                      "(one row per spot)."), arg = "coords")
  }
  res
}

# Reshape a loss history to long form: epoch, phase, component, value.
.losses_long <- function(losses) {
  if (!is.data.frame(losses) || !nrow(losses)) {
    sedr_abort(paste0("must be a non-empty data frame with a column `epoch` ",
                      "and loss columns (wide) or `component` and `value` ",
                      "(long)."), arg = "losses")
  }
  if (!"epoch" %in% names(losses) || !is.numeric(losses$epoch)) {
    sedr_abort("needs a numeric column `epoch`.", arg = "losses")
  }
  phase <- if ("phase" %in% names(losses)) as.character(losses$phase) else
    rep("train", nrow(losses))
  if (all(c("component", "value") %in% names(losses))) {
    long <- data.frame(epoch = losses$epoch, phase = phase,
                       component = as.character(losses$component),
                       value = as.numeric(losses$value),
                       stringsAsFactors = FALSE)
    comp_levels <- unique(long$component)
  } else {
    comp_levels <- setdiff(names(losses), c("epoch", "phase"))
    comp_levels <- comp_levels[vapply(losses[comp_levels], is.numeric,
                                      logical(1))]
    if (!length(comp_levels)) {
      sedr_abort(paste0("has no numeric loss columns besides `epoch`; add ",
                        "columns such as `total` or `mse`, or use long form ",
                        "with `component` and `value`."), arg = "losses")
    }
    long <- do.call(rbind, lapply(comp_levels, function(k) {
      data.frame(epoch = losses$epoch, phase = phase, component = k,
                 value = as.numeric(losses[[k]]), stringsAsFactors = FALSE)
    }))
  }
  long <- long[is.finite(long$value) & is.finite(long$epoch), , drop = FALSE]
  if (!nrow(long)) {
    sedr_abort("has no finite loss values to plot.", arg = "losses")
  }
  rownames(long) <- NULL
  long$component <- factor(long$component, levels = comp_levels)
  long$phase <- factor(long$phase, levels = unique(long$phase))
  long
}

# A single non-empty string, e.g. a column or assay name.
.check_string <- function(x, arg, what) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    sedr_abort(paste0("must be ", what, "."), arg = arg)
  }
  invisible(x)
}

# The user's point size, checked, or one that shrinks with the number of
# points: about 1.5 for a 40 x 40 lattice, bounded for tiny/huge data.
.point_size <- function(pt.size, n) {
  if (is.null(pt.size)) return(min(4, max(0.2, 60 / sqrt(n))))
  .check_number(pt.size, "pt.size", positive = TRUE)
  pt.size
}

# Labels from a metadata (or colData) column, named by spot.
.meta_labels <- function(meta, group.by, what = "metadata") {
  if (!group.by %in% colnames(meta)) {
    sedr_abort(paste0("\"", group.by, "\" is not a ", what, " column; ",
                      "available: ",
                      paste(.head_str(colnames(meta), 10L), collapse = ", "),
                      ". Run the clustering first or pick another column."),
               arg = "group.by")
  }
  stats::setNames(meta[[group.by]], rownames(meta))
}

# One label per spot as a factor. Named labels are matched to the spots by
# name, others by position. Factor levels are kept (even unused ones) so a
# domain keeps its colour when a subset, e.g. one section, is plotted.
.label_factor <- function(labels, spots, n) {
  if (is.data.frame(labels)) labels <- labels[[1]]
  if (is.matrix(labels)) labels <- labels[, 1]
  if (!is.null(spots) && !is.null(names(labels)) &&
      all(spots %in% names(labels))) {
    labels <- labels[spots]
  }
  if (length(labels) != n) {
    sedr_abort(paste0("has length ", length(labels), " but there are ", n,
                      " spots; give one label per spot."), arg = "labels")
  }
  lab <- if (is.factor(labels)) labels else {
    factor(labels, levels = sort(unique(labels[!is.na(labels)])))
  }
  stats::setNames(lab, NULL)
}

# Coordinates in the order of `spots`: by name when both are named,
# otherwise by position, which requires one row per spot.
.align_xy <- function(xy, spots) {
  if (is.null(spots)) return(xy)
  if (!is.null(rownames(xy)) && all(spots %in% rownames(xy))) {
    return(xy[spots, , drop = FALSE])
  }
  if (nrow(xy) != length(spots)) {
    sedr_abort(paste0("has ", nrow(xy), " rows but there are ",
                      length(spots), " spots; give one row per spot (or row ",
                      "names matching the spot names)."), arg = "coords")
  }
  xy
}

# Plot coordinates of a Seurat object: metadata x and y, else the image's.
.seurat_plot_coords <- function(object) {
  meta <- object[[]]
  if (all(c("x", "y") %in% colnames(meta))) meta[, c("x", "y")] else
    .seurat_tissue_coords(object)
}

# The embedding (or a stored UMAP) and labels for SEDRUmapPlot():
# list(embedding, umap, labels, title); `umap` is NULL unless
# `umap.reduction` is given, and then `embedding` is NULL.
.umap_plot_source <- function(object, group.by, reduction, labels,
                              umap.reduction) {
  title <- if (is.null(labels)) group.by else "label"
  need_labels <- function() {
    sedr_abort(paste0("is needed for a sedr_result or a matrix, which carry ",
                      "no metadata: pass one label per spot, e.g. ",
                      "SEDRUmapPlot(res, labels = clusters)."), arg = "labels")
  }
  no_stored_umap <- function() {
    if (!is.null(umap.reduction)) {
      sedr_abort(paste0("is only for Seurat and SingleCellExperiment ",
                        "objects; leave it NULL to compute the UMAP."),
                 arg = "umap.reduction")
    }
  }
  emb <- umap <- NULL
  if (inherits(object, "Seurat")) {
    have <- SeuratObject::Reductions(object)
    get <- function(name, arg) {
      if (!name %in% have) {
        sedr_abort(sprintf(paste0("\"%s\" is not a reduction of this object ",
                                  "(it has: %s); run RunSEDR() first."),
                           name, paste(have, collapse = ", ")), arg = arg)
      }
      SeuratObject::Embeddings(object, name)
    }
    if (is.null(umap.reduction)) emb <- get(reduction, "reduction") else
      umap <- get(umap.reduction, "umap.reduction")
    if (is.null(labels)) labels <- .meta_labels(object[[]], group.by)
  } else if (methods::is(object, "SingleCellExperiment")) {
    have <- SingleCellExperiment::reducedDimNames(object)
    get <- function(name, arg) {
      if (!name %in% have) {
        sedr_abort(sprintf(paste0("\"%s\" is not a reducedDim of this ",
                                  "object (it has: %s); run RunSEDR() first."),
                           name, paste(have, collapse = ", ")), arg = arg)
      }
      x <- SingleCellExperiment::reducedDim(object, name)
      if (is.null(rownames(x))) rownames(x) <- colnames(object)
      x
    }
    if (is.null(umap.reduction)) {
      emb <- get(if (reduction == "sedr") "SEDR" else reduction, "reduction")
    } else {
      umap <- get(umap.reduction, "umap.reduction")
    }
    if (is.null(labels)) {
      labels <- .meta_labels(SummarizedExperiment::colData(object), group.by,
                             "colData")
    }
  } else if (inherits(object, "sedr_result")) {
    no_stored_umap()
    if (is.null(labels)) need_labels()
    emb <- object$embedding
  } else if (is.matrix(object) && is.numeric(object)) {
    no_stored_umap()
    if (is.null(labels)) need_labels()
    emb <- object
  } else {
    sedr_abort(paste0("must be a Seurat object, a SingleCellExperiment, a ",
                      "sedr_result or a numeric embedding matrix, not an ",
                      "object of class ", class(object)[1], "."),
               arg = "object")
  }
  list(embedding = emb, umap = umap, labels = labels, title = title)
}

# Raw and denoised CPM of one gene, and coordinates, for SEDRGenePlot():
# list(raw, denoised, coords); raw and denoised are named by spot.
.gene_plot_source <- function(object, feature, assay, denoised.assay,
                              counts, coords) {
  no_denoised <- function(how) {
    sedr_abort(paste0("has no denoised expression", how, "; run ",
                      "RunSEDR(object, mode = \"imputation\") first."),
               arg = "object")
  }
  if (inherits(object, "Seurat")) {
    have <- SeuratObject::Assays(object)
    if (!denoised.assay %in% have) {
      no_denoised(sprintf(" (no assay \"%s\"; it has: %s)", denoised.assay,
                          paste(have, collapse = ", ")))
    }
    den <- seurat_layer(object, denoised.assay, "data")
    .check_denoised_feature(feature, rownames(den))
    denoised <- stats::setNames(as.numeric(den[feature, ]), colnames(den))
    assay <- assay %||% SeuratObject::DefaultAssay(object)
    if (!assay %in% setdiff(have, denoised.assay)) {
      sedr_abort(sprintf(paste0("\"%s\" is not an assay with raw counts; ",
                                "name one of: %s."), assay,
                         paste(setdiff(have, denoised.assay), collapse = ", ")),
                 arg = "assay")
    }
    raw <- .gene_cpm(get_counts(object, assay), feature, names(denoised),
                     sprintf("assay \"%s\"", assay))
    if (is.null(coords)) coords <- .seurat_plot_coords(object)
  } else if (methods::is(object, "SingleCellExperiment")) {
    expr <- S4Vectors_metadata(object)$SEDR$denoised$expression
    if (is.null(expr)) no_denoised(" in metadata(object)$SEDR")
    .check_denoised_feature(feature, colnames(expr))
    denoised <- expr[, feature]
    assay <- assay %||% "counts"
    if (!assay %in% SummarizedExperiment::assayNames(object)) {
      sedr_abort(sprintf("\"%s\" is not an assay of this object.", assay),
                 arg = "assay")
    }
    raw <- .gene_cpm(SummarizedExperiment::assay(object, assay), feature,
                     names(denoised), sprintf("assay \"%s\"", assay))
    if (is.null(coords)) {
      cd <- SummarizedExperiment::colData(object)
      coords <- if (methods::is(object, "SpatialExperiment")) {
        SpatialExperiment::spatialCoords(object)
      } else if (all(c("x", "y") %in% colnames(cd))) {
        data.frame(x = cd$x, y = cd$y, row.names = colnames(object))
      } else {
        sedr_abort(paste0("not found: the object has no spatialCoords() and ",
                          "no colData columns x and y; pass `coords`."),
                   arg = "coords")
      }
    }
  } else if (inherits(object, "sedr_result")) {
    expr <- object$denoised$expression
    if (is.null(expr)) no_denoised("")
    .check_denoised_feature(feature, colnames(expr))
    denoised <- expr[, feature]
    if (is.null(counts)) {
      sedr_abort(paste0("is needed: a sedr_result does not keep its input; ",
                        "pass the counts given to RunSEDR()."), arg = "counts")
    }
    if (!((is.matrix(counts) && is.numeric(counts)) ||
          methods::is(counts, "dMatrix"))) {
      sedr_abort("must be a numeric matrix of counts (genes x spots).",
                 arg = "counts")
    }
    # as_counts() turns spots x genes around, using the spot names.
    raw <- .gene_cpm(as_counts(counts, object$embedding), feature,
                     names(denoised), "`counts`", arg = "counts")
  } else {
    sedr_abort(paste0("must be a Seurat object, a SingleCellExperiment or a ",
                      "sedr_result with denoised expression, not an object ",
                      "of class ", class(object)[1], "."), arg = "object")
  }
  list(raw = raw, denoised = denoised, coords = coords)
}

.check_denoised_feature <- function(feature, genes) {
  if (!feature %in% genes) {
    sedr_abort(sprintf(paste0("\"%s\" is not among the %d denoised genes ",
                              "(%s); only the genes RunSEDR() modelled (the ",
                              "variable genes, or `features`) are denoised."),
                       feature, length(genes),
                       paste(.head_str(genes), collapse = ", ")),
               arg = "feature")
  }
}

# Values outside the colour range get the end colours instead of NA.
.squish <- function(x, range = c(0, 1), only.finite = TRUE) {
  pmin(pmax(x, range[1]), range[2])
}

# Counts per million of one gene in the given spots (genes x spots counts),
# on the scale of the denoised values.
.gene_cpm <- function(counts, feature, spots, where, arg = "assay") {
  if (!feature %in% rownames(counts)) {
    sedr_abort(sprintf("\"%s\" is denoised but not in the raw counts (%s).",
                       feature, where), arg = "feature")
  }
  missing <- setdiff(spots, colnames(counts))
  if (length(missing)) {
    sedr_abort(sprintf(paste0("has no column for %d denoised spot(s) (e.g. ",
                              "\"%s\"); give the counts RunSEDR() used."),
                       length(missing), missing[1]),
               arg = arg)
  }
  lib <- Matrix::colSums(counts)[spots]
  x <- as.numeric(counts[feature, spots])
  stats::setNames(ifelse(lib > 0, x / lib * 1e6, 0), spots)
}
