#' Build the spatial neighbour graph
#'
#' Connects every spot to its `k.neighbors` nearest spots (Euclidean distance
#' on 2-D or 3-D coordinates, the spot itself excluded) and symmetrises the
#' result by union, so every spot has at least `k.neighbors` neighbours. Ties
#' at the k-th distance go to the spot with the lower index, so the same input
#' always gives the same graph; stacked spots (equal coordinates) are allowed.
#' With `radius`, spots closer than `radius` are connected instead. With
#' `group`, spots of different groups (tissue sections) are never connected:
#' the graph is block diagonal.
#'
#' The k-d tree search (Rust, kiddo, parallel) needs memory linear in the
#' number of spots; one million spots take a few seconds.
#'
#' @param coords A numeric matrix or data frame with 2 or 3 columns (x, y and optionally z),
#'   one row per spot. Row names, when present, name the spots.
#' @param k.neighbors Number of nearest neighbours (default 12, as the SEDR
#'   Visium tutorials).
#' @param radius If not `NULL`, a distance (in coordinate units): connect spots
#'   closer than this instead of using nearest neighbours.
#' @param group Optional vector (one entry per spot) of section labels; no edge
#'   crosses sections.
#' @param n.threads Threads for the neighbour search.
#' @return A symmetric `dgCMatrix` adjacency A (1 for neighbours, no self loops)
#'   with the spot names as dimnames.
#' @seealso [RunSEDR()], which builds this graph itself.
#' @export
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10)
#' A <- BuildSpatialGraph(sim$coords, k.neighbors = 6)
#' summary(Matrix::rowSums(A))
BuildSpatialGraph <- function(coords, k.neighbors = 12, radius = NULL, group = NULL, n.threads = 1) {
  coords <- check_coords(coords)
  n <- nrow(coords)
  k <- check_count(k.neighbors, "k.neighbors", min = 1)
  if (!is.null(radius)) {
    if (!is.numeric(radius) || length(radius) != 1 || !is.finite(radius) || radius <= 0) {
      sedr_abort("must be NULL or one positive number (a distance in coordinate units).", arg = "radius")
    }
  }
  group_int <- check_group(group, n)
  if (is.null(radius)) check_section_sizes(group_int, n, k)
  n.threads <- check_threads(n.threads)
  res <- unwrap_rust(.Call(
    wrap__sedr_build_graph, as.double(coords), as.integer(n), as.integer(ncol(coords)),
    as.integer(k), if (is.null(radius)) -1 else as.double(radius), group_int, n.threads
  ))
  new("dgCMatrix",
    i = res$i, p = res$p, x = rep(1, length(res$i)), Dim = c(n, n),
    Dimnames = list(rownames(coords), rownames(coords))
  )
}

# Coordinates as a numeric matrix with spot names, or a classed error.
check_coords <- function(coords, arg = "coords") {
  if (is.data.frame(coords)) {
    if (!all(vapply(coords, is.numeric, logical(1)))) {
      sedr_abort("must contain only numeric columns (x, y and optionally z).", arg = arg)
    }
    coords <- as.matrix(coords)
  }
  if (!is.matrix(coords) || !is.numeric(coords)) {
    sedr_abort("must be a numeric matrix or data frame with one row per spot.", arg = arg)
  }
  if (nrow(coords) < 1) sedr_abort("has no spots.", arg = arg)
  if (!ncol(coords) %in% 2:3) {
    sedr_abort(sprintf("must have 2 or 3 columns (x, y and optionally z); it has %d.", ncol(coords)), arg = arg)
  }
  if (any(!is.finite(coords))) {
    bad <- which(rowSums(!is.finite(coords)) > 0)
    sedr_abort(sprintf(
      "contains NA, NaN or Inf for %d spot(s) (first: row %d); remove those spots or fix their coordinates.",
      length(bad), bad[1]
    ), arg = arg)
  }
  if (nrow(coords) > 1 && all(apply(coords, 2, function(v) max(v) == min(v)))) {
    sedr_abort("all spots are at the same position; pass the real spatial coordinates.", arg = arg)
  }
  rn <- rownames(coords)
  if (!is.null(rn) && anyDuplicated(rn)) {
    sedr_abort(sprintf("has duplicated spot names (e.g. \"%s\"); make them unique.", rn[anyDuplicated(rn)]), arg = arg)
  }
  storage.mode(coords) <- "double"
  coords
}

check_count <- function(x, arg, min = 0, max = .Machine$integer.max) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < min || x > max) {
    range <- if (max < .Machine$integer.max) sprintf("between %g and %g", min, max) else sprintf(">= %g", min)
    sedr_abort(sprintf("must be one whole number %s.", range), arg = arg)
  }
  as.integer(x)
}

# Section labels as 0-based integer codes (NULL when absent).
check_group <- function(group, n, arg = "group") {
  if (is.null(group)) return(NULL)
  if (length(group) != n) {
    sedr_abort(sprintf("has length %d but there are %d spots.", length(group), n), arg = arg)
  }
  if (anyNA(group)) sedr_abort("contains NA; give every spot a section label.", arg = arg)
  as.integer(factor(group)) - 1L
}

check_section_sizes <- function(group_int, n, k, arg = "k.neighbors") {
  sizes <- if (is.null(group_int)) n else tabulate(group_int + 1L)
  if (any(sizes < k + 1)) {
    sedr_abort(sprintf(
      "needs at least k.neighbors + 1 = %d spots in every section, but a section has %d; lower k.neighbors or drop tiny sections.",
      k + 1, min(sizes)
    ), arg = arg)
  }
}
