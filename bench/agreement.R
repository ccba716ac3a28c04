# Where does the seed spread come from? Clusters the cached embeddings of two
# training variants that share every training seed (bench/domains.R, its
# SEDR_CACHE folders) exactly as bench/domains.R does, then compares the
# partitions (ARI on the labelled spots): within a seed (variant A against
# variant B, the same training trajectory) and across seeds (variant A, seed
# i against seed j). Prints one row per dataset: median and min of each.
#
#   SEDR_CACHE_A=/tmp/acc/cache-avg20 SEDR_CACHE_B=/tmp/acc/cache-avg50 Rscript bench/agreement.R
#
# SEDR_SEEDS and SEDR_DATASETS as in bench/domains.R.
source(file.path("bench", "domains.R"))
cache <- c(Sys.getenv("SEDR_CACHE_A"), Sys.getenv("SEDR_CACHE_B"))
if (!all(nzchar(cache))) stop("set SEDR_CACHE_A and SEDR_CACHE_B")
seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))
ari <- function(a, b) SpatialClusterMetrics(a, b)[["ARI"]]
out <- NULL
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  keep <- !is.na(d$spots[[s$label]])
  labels <- function(dir, seed) {
    tr <- readRDS(Sys.glob(sprintf("%s/%s-%d-*.rds", dir, s$name, seed))[1])
    SEDRClusters(cached_result(tr, d), n.clusters = s$G, seed.use = seed, verbose = FALSE)[keep]
  }
  a <- lapply(seeds, function(x) labels(cache[1], x))
  b <- lapply(seeds, function(x) labels(cache[2], x))
  within <- mapply(ari, a, b)
  pairs <- utils::combn(seq_along(seeds), 2)
  across <- apply(pairs, 2, function(p) ari(a[[p[1]]], a[[p[2]]]))
  out <- rbind(out, data.frame(dataset = s$name, within_median = median(within), within_min = min(within),
                               across_median = median(across), across_min = min(across)))
}
print(out, digits = 3)
