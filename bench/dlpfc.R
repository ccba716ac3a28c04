# Accuracy and speed of the default workflow (counts -> RunSEDR -> mclust EEE)
# on DLPFC 151673 (7 layers) and STARmap (7 domains), several seeds.
#   Rscript bench/dlpfc.R [n_seeds] [mclust_init_size]
# Spots without a label are kept for training and dropped for scoring.
# Prints one row per dataset and seed, then median / SD per dataset.
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))
args <- commandArgs(trailingOnly = TRUE)
n_seeds <- if (length(args) >= 1) as.integer(args[1]) else 5L
init_size <- if (length(args) >= 2 && args[2] != "NULL") as.integer(args[2]) else NULL
threads <- as.integer(Sys.getenv("SEDR_THREADS", "2"))
# SEDR_WEIGHT_DECAY overrides Adam's weight decay (default 0; the reference's is 0.01);
# SEDR_BATCH_SIZE sets mini-batches (default: full batch); SEDR_SMOOTH the
# neighbour-averaging steps before mclust (default 0); SEDR_INIT_SMOOTH the
# weight of the neighbourhood mean in mclust's start (default: the package's).
# SEDR_EPOCHS / SEDR_DEC_EPOCHS set the schedule (default: the package's);
# SEDR_FIRST_SEED the first training seed (default 2023); SEDR_MCLUST_SEED a
# fixed mclust seed (default: the training seed); SEDR_DATASETS a
# comma-separated subset of the datasets below; SEDR_OPTS further SEDROptions()
# arguments as name=value pairs separated by commas (e.g. "lr=0.005,dropout=0").
bs <- Sys.getenv("SEDR_BATCH_SIZE", "")
env_int <- function(name, default) as.integer(Sys.getenv(name, as.character(default)))
dec_epochs <- env_int("SEDR_DEC_EPOCHS", NA)
extra <- Sys.getenv("SEDR_OPTS", "")
extra <- if (nzchar(extra)) {
  kv <- strsplit(strsplit(extra, ",")[[1]], "=")
  stats::setNames(lapply(kv, function(p) type.convert(p[2], as.is = TRUE)), vapply(kv, `[`, "", 1))
} else list()
opts <- do.call(SEDROptions, c(list(weight.decay = as.numeric(Sys.getenv("SEDR_WEIGHT_DECAY", "0")),
                                    batch.size = if (nzchar(bs)) as.numeric(bs) else NULL,
                                    dec.epochs = if (is.na(dec_epochs)) NULL else max(1L, dec_epochs)), extra))
use_dec <- is.na(dec_epochs) || dec_epochs > 0  # 0 turns the DEC phase off
epochs <- env_int("SEDR_EPOCHS", NA)
if (is.na(epochs)) epochs <- NULL
smooth <- env_int("SEDR_SMOOTH", 0)
init_smooth <- as.numeric(Sys.getenv("SEDR_INIT_SMOOTH", NA))  # unset: SEDRClusters()' default
first_seed <- env_int("SEDR_FIRST_SEED", 2023)
mclust_seed <- env_int("SEDR_MCLUST_SEED", NA)
sets <- list(
  list(name = "dlpfc_151673", k = 12, G = 7, label = "layer"),
  list(name = "starmap_mouse_vcortex", k = 6, G = 7, label = "layer")
)
only <- Sys.getenv("SEDR_DATASETS", "")
if (nzchar(only)) sets <- Filter(function(s) s$name %in% strsplit(only, ",")[[1]], sets)
rows <- list()
for (s in sets) {
  d <- read_dataset(data_dir(s$name))
  if (is.null(d)) { cat("skip", s$name, "(data folder absent)\n"); next }
  truth <- d$spots[[s$label]]
  for (seed in seq_len(n_seeds) + first_seed - 1L) {
    t0 <- proc.time()[["elapsed"]]
    res <- RunSEDR(d$counts, coords = d$coords, k.neighbors = s$k, seed.use = seed, epochs = epochs, dec = use_dec,
                   device = "cpu", n.threads = threads, verbose = FALSE, options = opts,
                   min.spots = if (ncol(d$counts) < 2000) 10 else 50)
    t1 <- proc.time()[["elapsed"]]
    cl <- do.call(SEDRClusters, c(list(res, n.clusters = s$G, seed.use = if (is.na(mclust_seed)) seed else mclust_seed,
                                       mclust.init.size = init_size, smooth = smooth, verbose = FALSE),
                                  if (!is.na(init_smooth)) list(init.smooth = init_smooth)))
    t2 <- proc.time()[["elapsed"]]
    m <- SpatialClusterMetrics(truth, cl)
    rows[[length(rows) + 1]] <- data.frame(
      dataset = s$name, seed = seed, ARI = m[["ARI"]], NMI = m[["NMI"]],
      preprocess = res$timings[["preprocess"]], graph = res$timings[["graph"]],
      train = res$timings[["train"]], cluster = t2 - t1, total = t2 - t0)
    r <- rows[[length(rows)]]
    cat(sprintf("| %s | %d | %.3f | %.3f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", r$dataset, r$seed, r$ARI, r$NMI,
                r$preprocess, r$graph, r$train, r$cluster, r$total))
  }
}
tab <- do.call(rbind, rows)
cat("\n| dataset | seeds | median ARI | SD ARI | min–max ARI | median NMI | median total s | peak RSS MB |\n|---|---|---|---|---|---|---|---|\n")
for (nm in unique(tab$dataset)) {
  t <- tab[tab$dataset == nm, ]
  cat(sprintf("| %s | %d | %.3f | %.3f | %.3f–%.3f | %.3f | %.2f | %.0f |\n", nm, nrow(t), median(t$ARI), stats::sd(t$ARI),
              min(t$ARI), max(t$ARI), median(t$NMI), median(t$total), peak_rss_mb()))
}
