# Sections with different gene sets. A gene that one section never detects
# (absent from its panel, or all zero after a merge that filled it in) cannot
# tell the sections' spots apart from each other fairly, so with several
# sections only the genes detected in every section are used.

# Fewest genes the sections must share.
min_shared_genes <- 10L

# `counts` (genes x spots) restricted to the genes with counts in every
# section, with a message of class `sedr_message_shared_genes` when genes are
# dropped, or an error about `group.by` naming the section that shares too
# few (its label also in the condition's `section`).
shared_genes <- function(counts, group_int, labels) {
  ind <- Matrix::sparseMatrix(i = seq_along(group_int), j = group_int + 1L, x = 1,
                              dims = c(length(group_int), length(labels)))
  detected <- as.matrix(counts %*% ind) > 0
  shared <- rowSums(!detected) == 0
  if (all(shared)) return(counts)
  per_section <- colSums(detected)
  worst <- which.min(per_section)
  if (sum(shared) < min_shared_genes) {
    sedr_abort(sprintf("the sections share only %d gene(s) with counts (section \"%s\" has %d of %d); at least %d are needed. Use sections measured on a common gene panel.",
                       sum(shared), labels[worst], per_section[worst], nrow(counts), min_shared_genes),
               arg = "group.by", section = labels[worst])
  }
  sedr_inform(sprintf("Using the %d of %d genes detected in every section (section \"%s\" has %d).",
                      sum(shared), nrow(counts), labels[worst], per_section[worst]),
              kind = "shared_genes")
  counts[shared, , drop = FALSE]
}

#' @rdname RunSEDR
#' @description `RunSEDR()` on a **list** of sections (count matrices, genes
#'   x spots or spots x genes, one per section) with `coords` a list of their
#'   coordinate matrices (matched by name, else by position) trains one model
#'   over all sections, as `group.by` does for one object; the list names are
#'   the section labels (`section1`, ... when unnamed). Sections may differ
#'   in size and in genes: only the genes with counts in every section are
#'   used (see `group.by`). Spot names are kept when they are unique across
#'   sections, else every spot is renamed `<section>_<spot>`. The result is
#'   that of the `default` method, with `section`, each spot's section.
#' @export
RunSEDR.list <- function(object, coords, ...) {
  if (!length(object)) sedr_abort("is an empty list; give one count matrix per section.", arg = "object")
  if ("group.by" %in% names(list(...))) {
    sedr_abort("is not used with a list of sections: the list names are the sections.", arg = "group.by")
  }
  labels <- names(object) %||% paste0("section", seq_along(object))
  if (anyNA(labels) || any(!nzchar(labels)) || anyDuplicated(labels)) {
    sedr_abort("must have unique, non-empty names (the section labels), or no names.", arg = "object")
  }
  names(object) <- labels
  if (missing(coords) || !is.list(coords) || is.data.frame(coords) || length(coords) != length(object)) {
    sedr_abort(sprintf("must be a list of %d coordinate matrices, one per section of `object`.", length(object)),
               arg = "coords")
  }
  if (!is.null(names(coords))) {
    if (!setequal(names(coords), labels)) sedr_abort("must have the same names as `object`.", arg = "coords")
    coords <- coords[labels]
  }
  secs <- Map(function(m, xy, s) in_section(s, {
    counts <- as_counts(m, xy)
    check_counts_values(counts)
    list(counts = counts, coords = align_coords(check_coords(xy), colnames(counts)))
  }), object, coords, labels)
  spots <- unlist(lapply(secs, function(x) colnames(x$counts)), use.names = FALSE)
  section <- rep(labels, vapply(secs, function(x) ncol(x$counts), 1L))
  if (anyDuplicated(spots)) spots <- paste0(section, "_", spots)
  genes <- unique(unlist(lapply(secs, function(x) rownames(x$counts)), use.names = FALSE))
  # Every section on the union of the genes (absent genes are zero); the
  # shared genes are then chosen in one place, as for a merged object.
  counts <- do.call(cbind, lapply(secs, function(x) pad_genes(x$counts, genes)))
  colnames(counts) <- spots
  xy <- do.call(rbind, lapply(secs, function(x) x$coords))
  rownames(xy) <- spots
  rm(secs)
  res <- withCallingHandlers(
    RunSEDR.default(counts, coords = xy, group.by = section, ...),
    sedr_error = function(e) {
      if (is.null(e$section)) return()
      sedr_abort(sub("^`[^`]*`: ", "", conditionMessage(e)), arg = sprintf("object[[\"%s\"]]", e$section))
    })
  res$section <- stats::setNames(section, spots)
  res
}

# `counts` with rows for all of `genes` (zero where it has none), in that order.
pad_genes <- function(counts, genes) {
  idx <- match(rownames(counts), genes)
  m <- Matrix::summary(counts)
  Matrix::sparseMatrix(i = idx[m$i], j = m$j, x = m$x, dims = c(length(genes), ncol(counts)),
                       dimnames = list(genes, colnames(counts)))
}

# Evaluates `expr`; a SEDR error about argument `a` is raised again about
# `a[["<section>"]]`, so that the user sees which section is wrong.
in_section <- function(section, expr) {
  withCallingHandlers(expr, sedr_error = function(e) {
    if (is.null(e$arg)) return()
    kind <- sub("^sedr_error_", "", class(e)[1])
    sedr_abort(sub("^`[^`]*`: ", "", conditionMessage(e)), kind = kind,
               arg = sprintf("%s[[\"%s\"]]", e$arg, section))
  })
}
