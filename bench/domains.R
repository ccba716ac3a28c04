# The evaluation that decides the spatial-domain defaults (bench/README.md,
# "Spatial domains: the evaluation that decides defaults").
#
# Default workflow on every labelled dataset and on two simulated tissues made
# hard on purpose: counts -> RunSEDR() defaults (n.threads = 1) ->
# SEDRClusters(n.clusters = annotated number), several seeds (training seed =
# mclust seed). Spots without a label are kept for training, dropped for
# scoring. Prints one row per run, then per dataset median / SD / min of ARI
# and NMI and the time per run, the combined score (mean of the per-dataset
# median ARIs) and the worst run overall. Writes every run to
# $SEDR_OUT/domains-$SEDR_TAG.csv, so variants can be compared paired by seed:
#
#   Rscript bench/domains.R                          # default workflow, 10 seeds
#   SEDR_TAG=refine1 SEDR_CLUSTER="refine=1" Rscript bench/domains.R
#   Rscript bench/domains.R --compare out/domains-default.csv out/domains-refine1.csv
#
# Knobs (environment variables):
#   SEDR_SEEDS     number of seeds from 2023 ("10"), a range "2023:2032" or a list "2023,2030"
#   SEDR_DATASETS  comma-separated subset of the dataset names below
#   SEDR_OPTS      SEDROptions() arguments, "name=value,..." (e.g. "dec.kl.weight=1")
#   SEDR_RUN       further RunSEDR() arguments, "name=value,..." (e.g. "npcs=50,n.hvg=3000")
#   SEDR_K         k.neighbors for every dataset (default: 12 on Visium, 6 on STARmap
#                  and the simulated hexagonal lattices)
#   SEDR_CLUSTER   SEDRClusters() arguments, "name=value,..." (e.g. "refine=1,init.smooth=0")
#   SEDR_NCLUST    "annotated" (default), or a range such as "4:12" or "NULL":
#                  SEDRClusters() then picks the number; the table adds how often it
#                  picked the annotated number (exactly, and within +-1)
#   SEDR_NRUNS     train this many models per run (seeds s, s + 1000, ...) and
#                  cluster their concatenated embeddings (consensus over training
#                  seeds; default 1)
#   SEDR_TAG       name of the run in the CSV file ("default")
#   SEDR_OUT       folder of the CSV files ("out")
#   SEDR_CACHE     folder of cached embeddings ("/tmp/sedr-domains-cache"; "" = none):
#                  clustering-only variants reuse the training of an earlier run
#                  with the same training settings (times are then the cached ones)
#   SEDR_THREADS   libtorch threads (1)
#   SEDR_DATA      data root (../shared/data)
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))

# ---- name=value knobs -------------------------------------------------------
parse_kv <- function(s) {
  if (!nzchar(s)) return(list())
  kv <- strsplit(strsplit(s, ",")[[1]], "=")
  vals <- lapply(kv, function(p) {
    v <- p[2]
    if (grepl("^-?[0-9]+:-?[0-9]+$", v)) return(eval(parse(text = v)))
    if (v == "NULL") return(NULL)
    type.convert(v, as.is = TRUE)
  })
  stats::setNames(vals, vapply(kv, `[`, "", 1))
}

parse_seeds <- function(s) {
  if (grepl(":", s)) return(eval(parse(text = s)))
  if (grepl(",", s)) return(as.integer(strsplit(s, ",")[[1]]))
  2022L + seq_len(as.integer(s))
}

# ---- simulated tissues made hard on purpose ---------------------------------
# Both are hexagonal Visium-like lattices (spots 100 units apart), with
#  * domains of unequal size and irregular borders, one of them a thin layer
#    (about two spots across);
#  * weak markers: 10 per domain, log fold change drawn in 0.6-0.9 (layers)
#    or 0.5-0.7 (patches), and each domain shares half of its markers with
#    another domain (at half the effect);
#  * border mixing: a spot's expression is 60 % its own domain and 40 % the
#    average of its six lattice neighbours' domains (spots hold several cells);
#  * a technical gradient along x on 40 genes (not a domain);
#  * over-dispersed counts: negative binomial with size 1.5 (the simulator's
#    default is 5), library sizes lognormal (sdlog 0.5) around 1,500.
# The tissue itself is fixed (seed 1); the benchmark seeds vary the training.
hex_lattice <- function(n.rows, n.cols) {
  g <- expand.grid(c = seq_len(n.cols) - 1L, r = seq_len(n.rows) - 1L)
  cbind(x = 100 * (g$c + 0.5 * (g$r %% 2)), y = 100 * g$r * sqrt(3) / 2)
}

# Layers along y with wavy, irregular borders of unequal spacing; the third
# layer is thin (1.8 rows) and follows the border below it.
layered_domains <- function(xy) {
  x <- xy[, "x"]; y <- xy[, "y"]
  w <- max(x) + 100; h <- max(y) + 100
  wave <- function(amp, f1, f2) {
    p <- stats::runif(2, 0, 2 * pi)
    amp * (sin(2 * pi * f1 * x / w + p[1]) + 0.5 * sin(2 * pi * f2 * x / w + p[2]))
  }
  frac <- c(0.24, 0.42, NA, 0.62, 0.86)  # borders as fractions of the height
  b1 <- frac[1] * h + wave(90, 1, 3)
  b2 <- frac[2] * h + wave(120, 1.5, 4)
  b3 <- b2 + 1.8 * 100 * sqrt(3) / 2
  b4 <- frac[4] * h + wave(100, 0.7, 2.5)
  b5 <- frac[5] * h + wave(80, 2, 5)
  1L + (y >= b1) + (y >= b2) + (y >= b3) + (y >= b4) + (y >= b5)
}

# A blob with a lobed border, a thin rim around it, a wavy band across the
# tissue, a small corner patch, and the rest split unevenly by a wavy line.
patchy_domains <- function(xy) {
  x <- xy[, "x"]; y <- xy[, "y"]
  w <- max(x) + 100; h <- max(y) + 100
  cx <- 0.38 * w; cy <- 0.58 * h
  th <- atan2(y - cy, x - cx)
  p <- stats::runif(3, 0, 2 * pi)
  r_blob <- 0.2 * min(w, h) * (1 + 0.22 * sin(3 * th + p[1]) + 0.1 * sin(5 * th + p[2]))
  dist <- sqrt((x - cx)^2 + (y - cy)^2)
  band_mid <- 0.2 * h + 80 * sin(2 * pi * 1.3 * x / w + p[3])
  corner <- sqrt((x - 0.92 * w)^2 + (y - 0.9 * h)^2) < 0.17 * min(w, h) * (1 + 0.2 * sin(4 * th))
  split <- x < 0.7 * w + 120 * sin(2 * pi * y / h)
  d <- ifelse(split, 1L, 2L)
  d[abs(y - band_mid) < 0.07 * h] <- 3L
  d[corner] <- 4L
  d[dist < r_blob + 180] <- 5L  # rim: about two spots wide
  d[dist < r_blob] <- 6L
  d
}

hard_counts <- function(xy, dom, n.genes = 1000, markers = 10, effect = c(0.5, 0.7),
                        size = 1.5, depth = 1500, mix = 0.4) {
  n <- nrow(xy); nd <- max(dom)
  one_hot <- outer(dom, seq_len(nd), "==") * 1
  # The six lattice neighbours (distance 100) of each spot.
  a <- BuildSpatialGraph(xy, radius = 101)
  deg <- pmax(Matrix::rowSums(a), 1)
  mixw <- (1 - mix) * one_hot + mix * as.matrix(a %*% one_hot) / deg
  base <- stats::rnorm(n.genes, -log(n.genes), 1)
  picked <- sample.int(n.genes)
  mk <- matrix(picked[seq_len(nd * markers)], nrow = markers)
  tech <- picked[nd * markers + seq_len(40)]
  partner <- c(seq_len(nd)[-1], 1L)[sample.int(nd)]  # a domain to share markers with
  eff <- matrix(0, n.genes, nd)
  for (d in seq_len(nd)) {
    eff[mk[, d], d] <- stats::runif(markers, effect[1], effect[2])
    half <- mk[seq_len(markers %/% 2), d]
    eff[half, partner[d]] <- eff[half, partner[d]] + 0.5 * eff[half, d]
  }
  logmu <- base + eff %*% t(mixw)
  logmu[tech, ] <- logmu[tech, ] + rep(0.8 * xy[, "x"] / max(xy[, "x"]), each = length(tech))
  mu <- exp(logmu)
  lib <- depth * stats::rlnorm(n, 0, 0.5)
  mu <- mu * rep(lib / colSums(mu), each = n.genes)
  counts <- matrix(stats::rnbinom(length(mu), size = size, mu = mu), n.genes, n)
  keep <- colSums(counts) > 0
  counts <- Matrix::Matrix(counts[, keep], sparse = TRUE)
  spots <- paste0("spot", seq_len(n))[keep]
  dimnames(counts) <- list(paste0("gene", seq_len(n.genes)), spots)
  coords <- xy[keep, ]
  rownames(coords) <- spots
  list(counts = counts, coords = coords,
       spots = data.frame(barcode = spots, domain = paste0("D", dom[keep])))
}

hard_tissue <- function(kind, seed = 1) {
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv())
  on.exit(if (!is.null(old)) assign(".Random.seed", old, globalenv()))
  set.seed(seed)
  xy <- hex_lattice(40, 45)
  dom <- switch(kind, layers = layered_domains(xy), patches = patchy_domains(xy))
  hard_counts(xy, dom, effect = switch(kind, layers = c(0.6, 0.9), patches = c(0.5, 0.7)))
}

# ---- datasets ----------------------------------------------------------------
# k: neighbours of the spatial graph (12 on Visium as the SEDR tutorials; 6 on
# STARmap's cells, as bench/dlpfc.R; 6 on the simulated lattices, whose six
# nearest spots are the first hexagonal ring); G: annotated number of domains.
datasets <- list(
  list(name = "dlpfc_151673", k = 12, G = 7, label = "layer", min.spots = 50),
  list(name = "dlpfc_151510", k = 12, G = 7, label = "layer", min.spots = 50),
  list(name = "starmap_mouse_vcortex", k = 6, G = 7, label = "layer", min.spots = 10),
  list(name = "sim_layers", k = 6, G = 6, label = "domain", min.spots = 10, sim = "layers"),
  list(name = "sim_patches", k = 6, G = 6, label = "domain", min.spots = 10, sim = "patches")
)

load_dataset <- function(s) {
  if (!is.null(s$sim)) return(hard_tissue(s$sim))
  read_dataset(data_dir(s$name))
}

# ---- one run -----------------------------------------------------------------
train_one <- function(d, s, seed, k, run_args, opts, threads) {
  do.call(RunSEDR, c(list(d$counts, coords = d$coords, k.neighbors = k, seed.use = seed,
                          device = "cpu", n.threads = threads, verbose = FALSE, options = opts,
                          min.spots = s$min.spots), run_args))
}

# The datasets SEDR_DATASETS names (all when it is empty).
selected_datasets <- function() {
  only <- Sys.getenv("SEDR_DATASETS", "")
  if (!nzchar(only)) return(datasets)
  Filter(function(s) s$name %in% strsplit(only, ",")[[1]], datasets)
}

# The cache key of a training: its knobs and the package version, hashed.
# The defaults (no SEDR_OPTS, SEDR_RUN or SEDR_K; one run on one thread):
# training_key("", "", "", 1L, 1L).
training_key <- function(opts, run, k, n_runs, threads) {
  key <- gsub("[^A-Za-z0-9.=_-]", "_", paste(opts, run, k, n_runs, threads, as.character(packageVersion("SEDR")), sep = "|"))
  sprintf("%08x", sum(utf8ToInt(key) * seq_along(utf8ToInt(key))) %% 2^31)
}

# The cache file of one training of dataset `s`.
cache_file <- function(cache_dir, s, seed, key) file.path(cache_dir, sprintf("%s-%d-%s.rds", s$name, seed, key))

# What SEDRClusters() clusters, from a cached training of dataset `d`.
cached_result <- function(tr, d) {
  structure(list(embedding = tr$embedding, graph = tr$graph, dec.q = tr$dec.q, coords = d$coords),
            class = "sedr_result")
}

cached_training <- function(d, s, seed, k, run_args, opts, threads, n_runs, cache_dir, train_key) {
  file <- if (nzchar(cache_dir)) cache_file(cache_dir, s, seed, train_key)
  if (!is.null(file) && file.exists(file)) return(c(readRDS(file), cached = TRUE))
  t0 <- proc.time()[["elapsed"]]
  fits <- lapply(seq_len(n_runs) - 1L, function(i) train_one(d, s, seed + 1000L * i, k, run_args, opts, threads))
  emb <- do.call(cbind, lapply(fits, `[[`, "embedding"))
  out <- list(embedding = emb, graph = fits[[1]]$graph, dec.q = fits[[1]]$dec.q,
              preprocess = sum(vapply(fits, function(f) f$timings[["preprocess"]], 0)),
              train = sum(vapply(fits, function(f) f$timings[["train"]], 0)),
              run_total = proc.time()[["elapsed"]] - t0)
  if (!is.null(file)) { dir.create(cache_dir, FALSE, TRUE); saveRDS(out, file) }
  c(out, cached = FALSE)
}

# One run's row of the CSV that --compare reads: dataset `s` trained as `tr`
# (cached_training()), clustered into `labels` in `t_cl` seconds.
run_row <- function(s, seed, k, labels, truth, tr, t_cl, tag) {
  m <- SpatialClusterMetrics(truth, labels)
  data.frame(dataset = s$name, seed = seed, k = k, G = s$G, k_picked = nlevels(labels),
             ARI = m[["ARI"]], NMI = m[["NMI"]], preprocess = tr$preprocess, train = tr$train,
             cluster = t_cl, total = tr$run_total + t_cl, cached = tr$cached, tag = tag)
}

# ---- summaries ---------------------------------------------------------------
summarise_runs <- function(tab, selection = FALSE) {
  cat("\n| dataset | seeds | median ARI | SD ARI | min ARI | median NMI | SD NMI | min NMI | median s per run |",
      if (selection) " picked k (median) | = annotated | within ±1 |" else "", "\n", sep = "")
  cat("|---|---|---|---|---|---|---|---|---|", if (selection) "---|---|---|" else "", "\n", sep = "")
  for (nm in unique(tab$dataset)) {
    t <- tab[tab$dataset == nm, ]
    cat(sprintf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f |", nm, nrow(t), median(t$ARI),
                stats::sd(t$ARI), min(t$ARI), median(t$NMI), stats::sd(t$NMI), min(t$NMI), median(t$total)))
    if (selection) cat(sprintf(" %g | %d/%d | %d/%d |", median(t$k_picked), sum(t$k_picked == t$G), nrow(t),
                               sum(abs(t$k_picked - t$G) <= 1), nrow(t)))
    cat("\n")
  }
  med <- tapply(tab$ARI, tab$dataset, median)
  w <- which.min(tab$ARI)
  cat(sprintf("\ncombined score (mean of per-dataset median ARI): %.3f over %d datasets\n", mean(med), length(med)))
  cat(sprintf("worst run: ARI %.3f (%s, seed %d)\n", tab$ARI[w], tab$dataset[w], tab$seed[w]))
}

# Paired comparison of two CSV files and the decision rule of bench/README.md.
compare_runs <- function(a_file, b_file) {
  a <- utils::read.csv(a_file); b <- utils::read.csv(b_file)
  m <- merge(a, b, by = c("dataset", "seed"), suffixes = c(".a", ".b"))
  if (!nrow(m)) stop("no common dataset/seed pairs")
  cat(sprintf("A = %s, B = %s; %d paired runs\n\n", a_file, b_file, nrow(m)))
  # Besides the medians: the paired mean with its standard error, and how
  # many runs gave the same ARI (a change of rounding leaves many alone).
  cat("| dataset | seeds | median A | median B | Δ median | paired Δ median (SD) | paired Δ mean (SE) | same ARI | min A | min B | SD A | SD B | s/run A | s/run B |\n")
  cat("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  drops <- c()
  for (nm in unique(m$dataset)) {
    t <- m[m$dataset == nm, ]
    dd <- t$ARI.b - t$ARI.a
    drops[nm] <- median(t$ARI.b) - median(t$ARI.a)
    cat(sprintf("| %s | %d | %.3f | %.3f | %+.3f | %+.3f (%.3f) | %+.3f (%.3f) | %d | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f |\n", nm, nrow(t),
                median(t$ARI.a), median(t$ARI.b), drops[nm], median(dd), stats::sd(dd), mean(dd), stats::sd(dd) / sqrt(length(dd)),
                sum(abs(dd) < 1e-12), min(t$ARI.a), min(t$ARI.b),
                stats::sd(t$ARI.a), stats::sd(t$ARI.b), median(t$total.a), median(t$total.b)))
  }
  ca <- mean(tapply(m$ARI.a, m$dataset, median)); cb <- mean(tapply(m$ARI.b, m$dataset, median))
  wa <- min(m$ARI.a); wb <- min(m$ARI.b)
  cat(sprintf("\ncombined: A %.3f, B %.3f (%+.3f); worst run: A %.3f, B %.3f; largest median drop %+.3f (%s)\n",
              ca, cb, cb - ca, wa, wb, min(drops), names(which.min(drops))))
  # The combined difference seed by seed (mean over datasets of the paired
  # differences): its SD is the seed-to-seed spread of the combined score.
  per_seed <- tapply(m$ARI.b - m$ARI.a, m$seed, mean)
  spread <- stats::sd(per_seed)
  cat(sprintf("combined difference seed by seed: mean %+.3f, SD %.3f over %d seeds\n", mean(per_seed), spread,
              length(per_seed)))
  ok <- cb > ca && wb >= wa && min(drops) >= -0.01
  cat(sprintf("decision rule: B %s replace A as the default%s\n", if (ok) "MAY" else "may NOT",
              if (ok && cb - ca < spread) " by the letter, but the rise is inside the seed-to-seed spread: no change" else ""))
  invisible(ok)
}

# ---- main --------------------------------------------------------------------
main <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  if (length(args) == 3 && args[1] == "--compare") return(invisible(compare_runs(args[2], args[3])))
  seeds <- parse_seeds(Sys.getenv("SEDR_SEEDS", "10"))
  threads <- as.integer(Sys.getenv("SEDR_THREADS", "1"))
  opts <- do.call(SEDROptions, parse_kv(Sys.getenv("SEDR_OPTS", "")))
  run_args <- parse_kv(Sys.getenv("SEDR_RUN", ""))
  cl_args <- parse_kv(Sys.getenv("SEDR_CLUSTER", ""))
  k_knob <- Sys.getenv("SEDR_K", "")
  n_runs <- as.integer(Sys.getenv("SEDR_NRUNS", "1"))
  nclust <- Sys.getenv("SEDR_NCLUST", "annotated")
  selection <- nclust != "annotated"
  tag <- Sys.getenv("SEDR_TAG", "default")
  out_dir <- Sys.getenv("SEDR_OUT", "out")
  cache_dir <- Sys.getenv("SEDR_CACHE", "/tmp/sedr-domains-cache")
  train_key <- training_key(Sys.getenv("SEDR_OPTS"), Sys.getenv("SEDR_RUN"), k_knob, n_runs, threads)
  sets <- selected_datasets()
  cat(sprintf("seeds %s; SEDR_OPTS=%s SEDR_RUN=%s SEDR_K=%s SEDR_CLUSTER=%s SEDR_NCLUST=%s SEDR_NRUNS=%d; training key %s\n",
              paste(range(seeds), collapse = "–"), Sys.getenv("SEDR_OPTS"), Sys.getenv("SEDR_RUN"), k_knob,
              Sys.getenv("SEDR_CLUSTER"), nclust, n_runs, train_key))
  cat("| dataset | seed | k | ARI | NMI | picked G | train s | cluster s | total s | cached |\n|---|---|---|---|---|---|---|---|---|---|\n")
  rows <- list()
  curves <- list()
  for (s in sets) {
    d <- load_dataset(s)
    if (is.null(d)) { cat("skip", s$name, "(data folder absent)\n"); next }
    truth <- d$spots[[s$label]]
    k <- if (nzchar(k_knob)) as.integer(k_knob) else s$k
    n_cl <- if (!selection) s$G else if (nclust == "NULL") NULL else eval(parse(text = nclust))
    for (seed in seeds) {
      tr <- cached_training(d, s, seed, k, run_args, opts, threads, n_runs, cache_dir, train_key)
      res <- cached_result(tr, d)
      t1 <- proc.time()[["elapsed"]]
      cl <- do.call(SEDRClusters, c(list(res, n.clusters = n_cl, seed.use = seed, verbose = FALSE), cl_args))
      t_cl <- proc.time()[["elapsed"]] - t1
      curve <- attr(cl, "sedr_clusters_selection")
      if (!is.null(curve)) curves[[length(curves) + 1]] <- cbind(dataset = s$name, seed = seed, G = s$G, curve)
      r <- run_row(s, seed, k, cl, truth, tr, t_cl, tag)
      rows[[length(rows) + 1]] <- r
      cat(sprintf("| %s | %d | %d | %.3f | %.3f | %d | %.2f | %.2f | %.2f | %s |\n", r$dataset, r$seed, k, r$ARI, r$NMI,
                  r$k_picked, r$train, r$cluster, r$total, r$cached))
    }
  }
  tab <- do.call(rbind, rows)
  dir.create(out_dir, FALSE, TRUE)
  file <- file.path(out_dir, sprintf("domains-%s.csv", tag))
  utils::write.csv(tab, file, row.names = FALSE)
  if (length(curves)) utils::write.csv(do.call(rbind, curves), sub("\\.csv$", "-curves.csv", file), row.names = FALSE)
  summarise_runs(tab, selection)
  cat(sprintf("per-run results: %s\n", file))
}

# Run as a script; source() only defines the functions (bench/consensus.R and others).
if (sys.nframe() == 0L) main()
