# The default evaluation (bench/domains.R) with another preprocessing before
# the PCA (bench/README.md, "Clipping, Pearson residuals, a Potts prior and
# the library size").
# A prototype outside the package: it hooks the R recipe (options(SEDR.recipe
# = "r")), keeping its gene filter and variable genes.
#
#   RECIPE=clip     the scaled CPM clipped at CLIP_MAX (10) standard deviations,
#                   as Seurat's ScaleData (scale.max = 10) and not the reference.
#                   The R recipe's sparse PCA centres and scales implicitly, so
#                   the clip is applied to the CPM values (min(x, mean +
#                   CLIP_MAX * sd), the moments of the unclipped values, as
#                   ScaleData's) and the matrix stays sparse.
#   RECIPE=pearson  analytic Pearson residuals of the variable genes' counts
#                   (Lause, Berens & Kobak 2021: mu = library size x the gene's
#                   share of all counts, theta = 100, clipped at sqrt(spots)),
#                   centred, unscaled, through the package's dense PCA (its
#                   randomized SVD seeded with 1 in every run).
#
#   RECIPE=clip SEDR_CACHE=/tmp/clip SEDR_TAG=clip10 SEDR_SEEDS=2023:2032 Rscript bench/recipe-variants.R
source(file.path("bench", "domains.R"))
options(SEDR.recipe = "r")
variant <- Sys.getenv("RECIPE", "clip")
clip_max <- as.numeric(Sys.getenv("CLIP_MAX", "10"))
theta <- 100
ns <- asNamespace("SEDR")
recipe <- get(".preprocess_counts", ns)

clipped <- function(prep) {
  gene <- prep$norm@i + 1L
  upper <- prep$center[gene] + clip_max * ifelse(prep$constant[gene], Inf, prep$scale[gene])
  prep$norm@x <- pmin(prep$norm@x, upper)
  prep
}

# RunSEDR() skips its sparse PCA when the recipe returns `pcs`.
pearson <- function(prep, counts, min.spots, min.counts) {
  counts <- ns$.recipe_counts(counts)
  totals <- Matrix::colSums(ns$.filter_genes(counts, min.spots = min.spots, min.counts = min.counts))
  y <- as.matrix(Matrix::t(counts[prep$features, , drop = FALSE]))
  mu <- outer(totals, colSums(y) / sum(totals))
  r <- (y - mu) / sqrt(mu + mu^2 / theta)
  r[!is.finite(r)] <- 0
  r <- pmin(pmax(r, -sqrt(nrow(y))), sqrt(nrow(y)))
  prep$pcs <- ns$sedr_pca(sweep(r, 2, colMeans(r)), 200L, seed = 1L)
  prep$norm <- NULL
  prep
}

hooked <- function(counts, n.hvg = 2000, min.spots = 50, min.counts = 10, dense = TRUE, ...) {
  prep <- recipe(counts, n.hvg = n.hvg, min.spots = min.spots, min.counts = min.counts, dense = dense, ...)
  if (dense) return(prep)
  switch(variant, clip = clipped(prep), pearson = pearson(prep, counts, min.spots, min.counts))
}
assignInNamespace(".preprocess_counts", hooked, ns)
main()
