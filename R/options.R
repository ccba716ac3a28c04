#' Advanced options of the SEDR model
#'
#' The model's architecture, loss weights and optimiser settings. The
#' defaults are the reference implementation's (Xu et al. 2024; see the
#' package README) except where a parameter below says otherwise, each
#' change measured in `bench/README.md`. Pass the result as `options =` to
#' [RunSEDR()].
#'
#' @param feat.hidden1,feat.hidden2 Widths of the feature encoder (64, 16).
#' @param gcn.hidden1,gcn.hidden2 Widths of the graph encoder (64, 16). The
#'   embedding has `feat.hidden2 + gcn.hidden2` (32) dimensions.
#' @param dropout Dropout rate of every layer (0.2).
#' @param mask.rate Share of spots whose input gets the learnable mask token
#'   in each training step (0.8).
#' @param sce.alpha Exponent of the scaled cosine error (3).
#' @param dec.clusters Number of deep-embedded-clustering centres (10). It need
#'   not equal the number of domains you ask of [SEDRClusters()].
#' @param dec.alpha Degrees of freedom of the Student-t kernel (1).
#' @param dec.interval Epochs between refreshes of the DEC target (20).
#' @param dec.epochs Epochs of the DEC phase. `NULL` (default): the mode's,
#'   100 for clustering and 200 for imputation, like `epochs` in
#'   [RunSEDR()]. The reference trains 200 + 200. For clustering, 100 + 100
#'   gave the same DLPFC 151673 ARI over 20 seeds (medians 0.585 / 0.570
#'   against 0.588 / 0.569), a higher STARmap ARI (0.704 against 0.676) and
#'   the same integration, in 57% of the time. Over 60 seeds of the
#'   five-dataset evaluation 200 + 200 was lower on STARmap (by 0.020) and in
#'   its worst run, level on DLPFC and higher on the simulated tissues. For
#'   denoising 100 epochs
#'   lowered the held-out correlation (0.879 against 0.886), so imputation
#'   keeps 200 (`bench/README.md`).
#' @param rec.weight,gcn.weight,self.weight,dec.kl.weight Loss weights:
#'   reconstruction MSE (`NULL`: the mode's, 10 for clustering as the
#'   reference, 100 for imputation), graph (0.1), masked scaled cosine error
#'   (1) and DEC KL divergence (3). The reference weights the reconstruction
#'   10 in both modes; for denoising, 100 raised the held-out correlation on
#'   DLPFC 151673 from 0.854 to 0.878 (`bench/README.md`). It weights the
#'   DEC KL 1 (a mean over spots and centres, so small next to the
#'   reconstruction); with a smoothed mclust start, 3 raised the median ARI
#'   on DLPFC 151673 over two sets of 20 seeds (0.575 to 0.587, 0.576 to
#'   0.580) and on STARmap (0.701 to 0.706). Over 60 seeds of the
#'   five-dataset evaluation, 3 against 1 is higher on STARmap (0.014),
#'   lower on the layered simulated tissue (0.046) and level on DLPFC.
#' @param lr Adam learning rate (0.01).
#' @param weight.decay Adam's coupled L2 weight decay (0). The reference uses
#'   0.01; without it SEDR for R measured a higher median ARI on DLPFC 151673
#'   (15 seeds) and STARmap, and better denoising (`bench/README.md`). Set
#'   0.01 for the reference's behaviour.
#' @param neg.ratio Random non-neighbour pairs per neighbour pair in the edge
#'   loss (1 for clustering; the reference uses 0 for imputation). `NULL`
#'   keeps the mode's default.
#' @param mask.replace How the masked autoencoder hides a spot: `TRUE`
#'   replaces the masked spots' input by the learnable mask token and asks the
#'   decoder for their original expression, so it must come from the
#'   neighbours; `FALSE` adds the token to the input, as the reference does
#'   (the masked spot still sees its own expression, spec bug list item 2).
#'   `NULL` (default): `TRUE` for clustering (higher ARI on DLPFC 151673 and
#'   STARmap, `bench/README.md`), `FALSE` for imputation (no gain in held-out
#'   correlation there).
#' @param resample.negatives Draw new negative pairs every epoch (`TRUE`) or
#'   once, as the reference (`FALSE`). With mini-batches (`batch.size`) they
#'   are always drawn afresh for each batch.
#' @param bn.full.batch In eval mode (the embedding and denoised output),
#'   BatchNorm layers normalise with the statistics of the full batch, which
#'   are exactly those used in (full-batch) training (`TRUE`). `FALSE` uses the
#'   running averages like the reference, whose momentum of 0.01 leaves them
#'   far from converged after 400 steps.
#' @param decoder The decoder that reconstructs the input from the
#'   embedding: `NULL` (the mode's, as the reference: `"gcn"`, one graph
#'   convolution, for clustering; `"mlp"`, Linear + BatchNorm, for
#'   imputation), `"gcn"` or `"mlp"`. The reference's MLP decoder also ends in
#'   ELU and Dropout, which bound and shrink the reconstruction; they are left
#'   out. With `"gcn"` the denoised expression of a spot also draws on its
#'   neighbours' embeddings. On two held-out DLPFC splits both beat the
#'   neighbour mean (held-out correlation 0.886 / 0.885 for `"mlp"`, 0.886 /
#'   0.884 for `"gcn"`, 0.875 / 0.877 for the neighbour mean); `"gcn"` trains
#'   about 3x faster.
#' @param batch.size Spots per training step. `NULL` (default, automatic):
#'   the whole graph in every step up to 50,000 spots (the reference's
#'   full-batch training), mini-batches of 20,000 spots above. A number below
#'   the number of spots trains on mini-batches of about that many spots
#'   (at least 100): each epoch is then one optimiser step on the subgraph
#'   induced by a random set of spatially compact graph parts (cluster-GCN),
#'   so the schedule (`epochs`, `dec.interval`, ...) keeps its meaning while
#'   the work per epoch shrinks from all spots to one batch. The DEC target
#'   and the embedding are still computed for all spots at once. `Inf` (or 0)
#'   forces full-batch training.
#' @param kmeans.restarts k-means restarts for the DEC centres (20).
#' @param kmeans.max.spots k-means for the DEC centres is fitted on at most
#'   this many randomly chosen spots (50,000).
#' @param average.epochs Tail averaging: the embedding (and the DEC soft
#'   assignment computed from it) is the mean of the embeddings after each of
#'   the last `average.epochs` training epochs, which averages out part of the
#'   epoch-to-epoch jitter of stochastic training. 0 (default): the last
#'   epoch's embedding. Costs one extra forward pass per averaged epoch;
#'   measured in `bench/README.md` ("Spatial domains").
#' @return A list of class `sedr_options`.
#' @export
#' @examples
#' SEDROptions(dec.clusters = 12, lr = 0.005)
SEDROptions <- function(feat.hidden1 = 64, feat.hidden2 = 16, gcn.hidden1 = 64, gcn.hidden2 = 16,
                        dropout = 0.2, mask.rate = 0.8, sce.alpha = 3, dec.clusters = 10,
                        dec.alpha = 1, dec.interval = 20, dec.epochs = NULL, rec.weight = NULL,
                        gcn.weight = 0.1, self.weight = 1, dec.kl.weight = 3, lr = 0.01,
                        weight.decay = 0, neg.ratio = NULL, mask.replace = NULL, resample.negatives = TRUE,
                        bn.full.batch = TRUE, decoder = NULL, batch.size = NULL,
                        kmeans.restarts = 20, kmeans.max.spots = 50000, average.epochs = 0) {
  opts <- as.list(environment())
  opts <- opts[!vapply(opts, is.null, logical(1))]
  if (!is.null(opts$batch.size)) {
    b <- opts$batch.size
    if (!is.numeric(b) || length(b) != 1 || is.na(b) || b < 0 || (is.finite(b) && b > 0 && b < 100)) {
      sedr_abort("must be NULL (automatic), Inf or 0 (full batch), or a number of spots >= 100.", arg = "batch.size")
    }
    # Inf and 0 both mean full batch; kept as 0 (the Rust core's convention).
    opts$batch.size <- if (is.finite(b)) round(b) else 0
  }
  flags <- c("resample.negatives", "bn.full.batch", "mask.replace")
  for (nm in intersect(flags, names(opts))) {
    if (!isTRUE(opts[[nm]]) && !isFALSE(opts[[nm]])) sedr_abort("must be TRUE or FALSE.", arg = nm)
  }
  if (!is.null(opts$decoder) && !(is.character(opts$decoder) && length(opts$decoder) == 1 &&
                                   opts$decoder %in% c("gcn", "mlp"))) {
    sedr_abort("must be NULL (the mode's decoder), \"gcn\" or \"mlp\".", arg = "decoder")
  }
  for (nm in setdiff(names(opts), c(flags, "decoder"))) {
    v <- opts[[nm]]
    if (!is.numeric(v) || length(v) != 1 || !is.finite(v)) {
      sedr_abort("must be one finite number.", arg = nm)
    }
  }
  if (opts$lr <= 0) sedr_abort("must be a positive number (the default is 0.01).", arg = "lr")
  if (opts$dropout < 0 || opts$dropout >= 1) sedr_abort("must lie in [0, 1).", arg = "dropout")
  if (opts$mask.rate < 0 || opts$mask.rate > 1) sedr_abort("must lie in [0, 1].", arg = "mask.rate")
  for (nm in intersect(c("feat.hidden1", "feat.hidden2", "gcn.hidden1", "gcn.hidden2", "dec.interval",
                         "dec.epochs", "kmeans.restarts", "kmeans.max.spots"), names(opts))) {
    check_count(opts[[nm]], nm, min = 1)
  }
  check_count(opts$dec.clusters, "dec.clusters", min = 2)
  check_count(opts$average.epochs, "average.epochs", min = 0)
  for (nm in intersect(c("rec.weight", "gcn.weight", "self.weight", "dec.kl.weight", "weight.decay"), names(opts))) {
    if (opts[[nm]] < 0) sedr_abort("must be >= 0.", arg = nm)
  }
  structure(opts, class = "sedr_options")
}

# Epochs per phase where `epochs` / `dec.epochs` are NULL (measured in
# bench/README.md, "Spatial domains" and "Denoising"; see ?SEDROptions).
default_epochs <- function(mode) if (identical(mode, "imputation")) 200L else 100L

#' @export
#' @method print sedr_options
print.sedr_options <- function(x, ...) {
  cat("<SEDR options>\n")
  v <- vapply(x, function(e) format(e), character(1))
  cat(paste0("  ", format(names(v)), " = ", v), sep = "\n")
  invisible(x)
}
