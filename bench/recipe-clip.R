# The default evaluation (bench/domains.R) with the scaled expression clipped
# at CLIP_MAX standard deviations before the PCA, as Seurat's ScaleData does
# (scale.max = 10) and the reference does not (bench/README.md, "Spatial
# domains"). A prototype outside the package: it hooks the R recipe, whose
# sparse PCA centres and scales implicitly, so the clip is applied to the
# CPM values (min(x, mean + CLIP_MAX * sd), the moments of the unclipped
# values, as ScaleData's) and keeps the matrix sparse.
#
#   CLIP_MAX=10 SEDR_CACHE=/tmp/clip SEDR_TAG=clip10 SEDR_SEEDS=2023:2032 Rscript bench/recipe-clip.R
source(file.path("bench", "domains.R"))
options(SEDR.recipe = "r")
clip_max <- as.numeric(Sys.getenv("CLIP_MAX", "10"))
ns <- asNamespace("SEDR")
recipe <- get(".preprocess_counts", ns)
clipped_recipe <- function(counts, ...) {
  prep <- recipe(counts, ...)
  if (is.null(prep$norm)) return(prep)
  gene <- prep$norm@i + 1L
  upper <- prep$center[gene] + clip_max * ifelse(prep$constant[gene], Inf, prep$scale[gene])
  prep$norm@x <- pmin(prep$norm@x, upper)
  prep
}
assignInNamespace(".preprocess_counts", clipped_recipe, ns)
main()
