# Label consensus over training seeds, from the embeddings bench/domains.R
# cached (bench/README.md, "Spatial domains"): for every dataset and seed s,
# the default clustering (SEDRClusters() with its defaults) of the models
# trained from seeds s, s + 1000 and s + 2000; the three partitions aligned
# to their medoid (the one with the highest mean ARI to the others) by the
# best matching of labels, then each spot takes the label at least two of
# them give it (else the medoid's). Prints, per dataset, the single run
# (seed s), the medoid and the majority: median, SD and min ARI.
#
#   SEDR_CACHE=/tmp/c Rscript bench/domains.R                        # seeds 2023-2032
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=3023:3032 Rscript bench/domains.R   # the second models
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=4023:4032 Rscript bench/domains.R   # the third
#   SEDR_CACHE=/tmp/c Rscript bench/consensus.R [out.csv]
#
# The cache key is that of the default training (no SEDR_OPTS, SEDR_RUN, SEDR_K);
# SEDR_DATASETS picks datasets as in bench/domains.R.
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "domains-label-consensus3.csv")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
key <- training_key("", "", "", 1L, 1L)  # the default training
seeds <- 2023:2032

# Every permutation of 1..n, one per row (n! rows; n is the number of domains).
permutations <- function(n) {
  if (n == 1) return(matrix(1L, 1, 1))
  p <- permutations(n - 1)
  do.call(rbind, lapply(seq_len(n), function(i) cbind(i, ifelse(p >= i, p + 1L, p))))
}
# b's labels renamed to match a's best (the matching with most shared spots).
align_labels <- function(a, b, G, perms) {
  tab <- table(factor(a, seq_len(G)), factor(b, seq_len(G)))
  best <- perms[which.max(apply(perms, 1, function(p) sum(tab[cbind(p, seq_len(G))]))), ]
  best[b]
}
ari <- function(x, y) mclust::adjustedRandIndex(x, y)

rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) { cat("skip", s$name, "(data folder absent)\n"); next }
  truth <- d$spots[[s$label]]
  scored <- !is.na(truth) & truth != ""
  perms <- permutations(s$G)
  labels_of <- function(seed) {
    file <- cache_file(cache_dir, s, seed, key)
    if (!file.exists(file)) stop("no cached embedding ", file, "; run bench/domains.R with these seeds first")
    as.integer(SEDRClusters(cached_result(readRDS(file), d), n.clusters = s$G, seed.use = seed, verbose = FALSE))
  }
  for (seed in seeds) {
    parts <- lapply(seed + c(0L, 1000L, 2000L), labels_of)
    agree <- outer(1:3, 1:3, Vectorize(function(a, b) if (a == b) 0 else ari(parts[[a]], parts[[b]])))
    medoid <- parts[[which.max(rowSums(agree))]]
    aligned <- lapply(parts, function(p) align_labels(medoid, p, s$G, perms))
    votes <- sapply(seq_len(s$G), function(k) Reduce(`+`, lapply(aligned, function(p) p == k)))
    majority <- ifelse(apply(votes, 1, max) >= 2, max.col(votes, ties.method = "first"), medoid)
    rows[[length(rows) + 1]] <- data.frame(
      dataset = s$name, seed = seed, single = ari(truth[scored], parts[[1]][scored]),
      medoid = ari(truth[scored], medoid[scored]), majority = ari(truth[scored], majority[scored]),
      agreement = mean(agree[upper.tri(agree)]))
  }
}
tab <- do.call(rbind, rows)
dir.create(dirname(out_file), FALSE, TRUE)
utils::write.csv(tab, out_file, row.names = FALSE)
cat("| dataset | single: median (SD, min) | medoid of 3 | majority of 3 |\n|---|---|---|---|\n")
fmt <- function(x) sprintf("%.3f (%.3f, %.3f)", median(x), stats::sd(x), min(x))
for (nm in unique(tab$dataset)) {
  t <- tab[tab$dataset == nm, ]
  cat(sprintf("| %s | %s | %s | %s |\n", nm, fmt(t$single), fmt(t$medoid), fmt(t$majority)))
}
combined <- function(col) mean(tapply(tab[[col]], tab$dataset, median))
cat(sprintf("combined: single %.3f, medoid %.3f, majority %.3f; worst run: %.3f, %.3f, %.3f\n",
            combined("single"), combined("medoid"), combined("majority"),
            min(tab$single), min(tab$medoid), min(tab$majority)))
cat("per-run results:", out_file, "\n")
