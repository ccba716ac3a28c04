#' Local inverse Simpson's index (iLISI / cLISI)
#'
#' For every spot, the effective number of label values among its
#' neighbours in an embedding (Korsunsky et al. 2019, the Harmony paper):
#' the `3 * perplexity` nearest neighbours are weighted by a Gaussian kernel
#' whose width gives the requested perplexity, and LISI is
#' `1 / sum(weight share of each label ^ 2)`. On section labels (iLISI) higher
#' is better mixing, up to the number of sections; on domain or cell-type
#' labels (cLISI) 1 means perfectly separated. Computed in the Rust core with
#' a k-d tree (embeddings of up to 64 dimensions).
#'
#' @param embedding Numeric matrix, spots x dimensions (e.g. `Embeddings(obj, "sedr")`).
#' @param labels A vector (one label per spot) or a data frame of label columns.
#' @param perplexity Effective neighbourhood size (30, as Harmony).
#' @param n.threads Threads for the neighbour search.
#' @return A data frame with one LISI column per label set, one row per spot.
#' @export
#' @examples
#' set.seed(1)
#' emb <- matrix(rnorm(400), ncol = 2)
#' # Labels at random: well mixed, LISI close to 2.
#' summary(ComputeLISI(emb, rep(c("a", "b"), 100), perplexity = 10))
#' # Labels that follow the first dimension: separated, LISI close to 1.
#' lab <- data.frame(random = rep(c("a", "b"), 100),
#'                   split = ifelse(emb[, 1] > 0, "right", "left"))
#' colMeans(ComputeLISI(emb, lab, perplexity = 10))
ComputeLISI <- function(embedding, labels, perplexity = 30, n.threads = 1) {
  if (!is.matrix(embedding) || !is.numeric(embedding)) {
    sedr_abort("must be a numeric matrix (spots x dimensions).", arg = "embedding")
  }
  if (any(!is.finite(embedding))) sedr_abort("contains NA, NaN or Inf.", arg = "embedding")
  if (!is.data.frame(labels)) labels <- data.frame(label = labels)
  if (nrow(labels) != nrow(embedding)) {
    sedr_abort(sprintf("has %d rows but the embedding has %d spots.", nrow(labels), nrow(embedding)), arg = "labels")
  }
  if (anyNA(labels)) sedr_abort("contains NA; drop those spots first.", arg = "labels")
  if (!is.numeric(perplexity) || length(perplexity) != 1 || !is.finite(perplexity) || perplexity < 1) {
    sedr_abort("must be one number >= 1.", arg = "perplexity")
  }
  codes <- lapply(labels, function(l) as.integer(factor(l)) - 1L)
  res <- unwrap_rust(.Call(
    wrap__sedr_lisi, as.double(embedding), nrow(embedding), ncol(embedding), codes,
    as.double(perplexity), check_threads(n.threads)
  ))
  out <- as.data.frame(stats::setNames(res, names(labels)))
  rownames(out) <- rownames(embedding)
  out
}
