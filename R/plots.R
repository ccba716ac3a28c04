# Plots for SEDR results: spatial domains on the tissue, and training loss
# curves. Both return ggplot objects so users can restyle them.

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
                            labels = NULL, pt.size = NULL, palette = NULL) {
  if (!is.character(group.by) || length(group.by) != 1L || is.na(group.by)) {
    sedr_abort("must be a single column name, e.g. \"sedr_clusters\".",
               arg = "group.by")
  }
  spot_data <- .spatial_plot_data(object, group.by, coords, labels)
  n <- nrow(spot_data)

  if (is.null(pt.size)) {
    # Heuristic: about 1.5 for a 40 x 40 lattice, bounded for tiny/huge data.
    pt.size <- min(4, max(0.2, 60 / sqrt(n)))
  } else {
    .check_number(pt.size, "pt.size", positive = TRUE)
  }

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
                                 name = attr(spot_data, "title")) +
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
    if (is.null(labels)) {
      if (!group.by %in% colnames(meta)) {
        sedr_abort(paste0("\"", group.by, "\" is not a metadata column; ",
                          "available: ",
                          paste(.head_str(colnames(meta), 10L),
                                collapse = ", "),
                          ". Run the clustering first or pick another ",
                          "column."), arg = "group.by")
      }
      labels <- meta[[group.by]]
    }
    if (is.null(coords)) {
      coords <- if (all(c("x", "y") %in% colnames(meta))) {
        meta[, c("x", "y")]
      } else {
        .seurat_tissue_coords(object)
      }
    }
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

  xy <- .coords_xy(coords)
  n <- if (!is.null(spots)) length(spots) else nrow(xy)
  # Align coordinates to spots by name when both are named; otherwise by
  # position, which requires equal lengths.
  if (!is.null(spots) && !is.null(rownames(xy)) &&
      all(spots %in% rownames(xy))) {
    xy <- xy[spots, , drop = FALSE]
  } else if (nrow(xy) != n) {
    sedr_abort(paste0("has ", nrow(xy), " rows but there are ", n,
                      " spots; give one row per spot (or row names matching ",
                      "the spot names)."), arg = "coords")
  }
  if (is.matrix(labels) || is.data.frame(labels)) labels <- labels[[1]]
  if (length(labels) != n) {
    sedr_abort(paste0("has length ", length(labels), " but there are ", n,
                      " spots; give one label per spot."), arg = "labels")
  }
  # Factor levels are kept (even unused ones) so a domain keeps its colour
  # when a subset, e.g. one section, is plotted.
  lab <- if (is.factor(labels)) labels else {
    u <- sort(unique(labels[!is.na(labels)]))
    factor(labels, levels = u)
  }
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

# Tissue coordinates of a Seurat object's first image, as a data frame.
.seurat_tissue_coords <- function(object) {
  res <- tryCatch(SeuratObject::GetTissueCoordinates(object),
                  error = function(e) NULL)
  if (is.null(res) || !NROW(res)) {
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
