# Best of three trainings by an unsupervised criterion, from the embeddings
# bench/domains.R cached (bench/README.md, "Spatial domains"): for every
# dataset and seed s of 2023-2032, the default clustering of the models
# trained from seeds s, s + 1000 and s + 2000, and the partition kept by
#   coherence  the share of spatial neighbour pairs (6 nearest spots) whose
#              mixture labels (before the vote) agree;
#   confidence the mean largest DEC soft assignment of the model.
# Prints, per rule, the combined score, the worst run and per dataset the
# median (SD, min) ARI, against the single run of seed s; and how well each
# criterion ranks the three models (mean Spearman correlation with the ARI).
#
#   SEDR_CACHE=/tmp/c SEDR_SEEDS=2023:2032,3023:3032,4023:4032 ... (see bench/consensus.R)
#   SEDR_CACHE=/tmp/c Rscript bench/select-coherence.R [out.csv]
source(file.path("bench", "domains.R"))
args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args)) args[1] else file.path("out", "domains-select-coherence.csv")
cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
key <- training_key("", "", "", 1L, 1L)  # the default training

rows <- list()
for (s in selected_datasets()) {
  d <- load_dataset(s)
  if (is.null(d)) next
  truth <- d$spots[[s$label]]
  pairs <- Matrix::summary(SEDR:::neighbour_matrix(SEDR:::refine_neighbours(d$coords, 6L), nrow(d$coords), "coords"))
  for (seed in 2023:2032) for (j in 0:2) {
    f <- cache_file(cache_dir, s, seed + 1000L * j, key)
    if (!file.exists(f)) next
    tr <- readRDS(f)
    res <- cached_result(tr, d)
    cl <- SEDRClusters(res, n.clusters = s$G, seed.use = seed + 1000L * j, verbose = FALSE)
    raw <- as.integer(SEDRClusters(res, n.clusters = s$G, seed.use = seed + 1000L * j, verbose = FALSE, refine = 0))
    rows[[length(rows) + 1]] <- data.frame(dataset = s$name, seed = seed, member = j + 1L,
      ARI = SpatialClusterMetrics(truth, cl)[["ARI"]], coherence = mean(raw[pairs$i] == raw[pairs$j]),
      confidence = mean(apply(tr$dec.q, 1, max)))
  }
}
tab <- do.call(rbind, rows)
dir.create(dirname(out_file), FALSE, TRUE)
utils::write.csv(tab, out_file, row.names = FALSE)

pick <- function(rule) do.call(rbind, lapply(split(tab, list(tab$dataset, tab$seed), drop = TRUE), function(t) {
  if (nrow(t) < 3) return(NULL)
  t <- t[order(t$member), ]
  t[if (rule == "single") 1L else which.max(t[[rule]]), ]
}))
for (rule in c("single", "coherence", "confidence")) {
  p <- pick(rule)
  med <- tapply(p$ARI, p$dataset, median)
  cat(sprintf("%-10s combined %.3f, worst %.3f | %s\n", rule, mean(med), min(p$ARI),
              paste(sprintf("%s %.3f (%.3f, %.3f)", names(med), med, tapply(p$ARI, p$dataset, stats::sd),
                            tapply(p$ARI, p$dataset, min)), collapse = "; ")))
}
for (cr in c("coherence", "confidence")) {
  r <- sapply(split(tab, tab$dataset), function(t) mean(sapply(split(t, t$seed), function(g)
    if (nrow(g) == 3) stats::cor(g[[cr]], g$ARI, method = "spearman") else NA), na.rm = TRUE))
  cat(sprintf("rank correlation of %s with ARI: %s\n", cr, paste(sprintf("%s %.2f", names(r), r), collapse = "; ")))
}
