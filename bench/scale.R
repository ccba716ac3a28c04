# Scaling benchmark of the default preprocessing (sparse recipe + sparse PCA)
# and of the spatial graph, at n spots x 2000 genes. Each size runs in a fresh
# R process, so its peak RSS is its own; each stage's peak is VmHWM after the
# stage, with the high-water mark reset before it (/proc/self/clear_refs), so
# it includes the data already in memory (the counts). Prints a markdown table.
#
#   Rscript bench/scale.R [n1 n2 ...] [--train] [--genes=G] [--threads=T] [--density=D]
#   Rscript bench/scale.R [n1 n2 ...] --full    (end to end, see run_full)
#
# Default sizes 50000 200000 (a few minutes); 1000000 takes ~10 min on 2 cores.
# --train also runs RunSEDR(epochs = 5, dec = FALSE) (per-epoch time; the
# memory guard may refuse it, which is then reported).
#
# The counts come from a fast sparse generator (simulate_sparse() in
# bench/common.R), not from
# SimulateSpatialTissue(): that one builds a dense genes x spots matrix of
# expected counts (16 GB in doubles at 1M x 2000). Here the lattice and the
# layered domains are the same kind (hexagonal, Visium spacing, curved bands
# of equal size), each gene is detected in a spot with a per-gene rate
# (mean `density`), raised 4x in the domain it marks (20 markers per domain),
# and a detected entry is 1 + Poisson(per-gene level x spot depth). Built
# gene by gene as a spots x genes CSC matrix, then transposed: O(nnz) time
# and memory, no dense step.

args <- commandArgs(trailingOnly = TRUE)
flag <- function(name, default) {
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[1]) else default
}
child <- "--child" %in% args
train <- "--train" %in% args
n_genes <- as.integer(flag("genes", "2000"))
threads <- as.integer(flag("threads", "2"))
density <- as.numeric(flag("density", "0.05"))
sizes <- suppressWarnings(as.numeric(args[!startsWith(args, "--")]))
sizes <- sizes[is.finite(sizes)]

source(file.path("bench", "common.R"))  # simulate_sparse()

status_mb <- function(field) {
  st <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep(paste0("^", field, ":"), st, value = TRUE))) / 1024
}

# Runs `expr`; returns its value, the elapsed seconds and the peak RSS (MB)
# during it (VmHWM, reset first where the kernel allows).
stage <- function(expr) {
  invisible(gc(full = TRUE))
  reset <- tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE,
                    warning = function(w) FALSE)
  before <- status_mb("VmRSS")
  t0 <- proc.time()[["elapsed"]]
  value <- force(expr)
  list(value = value, seconds = proc.time()[["elapsed"]] - t0, peak = status_mb("VmHWM"),
       before = before, reset = reset)
}

# --full: the whole default workflow, RunSEDR() (automatic batch size, full
# schedule, DEC) then SEDRClusters(mclust, 7 domains), with its own timings,
# the peak RSS and the ARI against the simulated domains.
run_full <- function(n) {
  suppressPackageStartupMessages(library(SEDR))
  sim <- simulate_sparse(n, n_genes = n_genes, density = density)
  counts <- sim$counts
  coords <- sim$coords
  keep <- as.integer(sub("spot", "", colnames(counts)))
  domain <- sim$domain[keep]
  rm(sim)
  fit <- stage(RunSEDR(counts, coords = coords, device = "cpu", n.threads = threads,
                       verbose = TRUE, seed.use = 42L))
  res <- fit$value
  fit$value <- NULL
  rm(counts)
  cl <- stage(SEDRClusters(res, n.clusters = 7, verbose = TRUE))
  ari <- SpatialClusterMetrics(domain, cl$value)[["ARI"]]
  cat(sprintf("FULL|%d|%.1f|%.1f|%.1f|%.1f|%.1f|%.0f|%.3f|%s\n", ncol(res$graph), res$timings[["preprocess"]],
              res$timings[["graph"]], res$timings[["train"]], cl$seconds, fit$seconds + cl$seconds,
              max(fit$peak, cl$peak), ari, format(res$params$batch.size, scientific = FALSE)))
}

run_child <- function(n) {
  suppressPackageStartupMessages(library(SEDR))
  ns <- asNamespace("SEDR")
  sim <- stage(simulate_sparse(n, n_genes = n_genes, density = density))
  counts <- sim$value$counts
  coords <- sim$value$coords
  sim$value <- NULL
  n <- ncol(counts)
  nnz <- length(counts@x)
  seed <- 42L

  # The default preprocessing of RunSEDR(mode = "clustering"), stage by stage
  # (options(SEDR.recipe = "r"): the R reference recipe).
  pca_s <- NA_real_
  prep <- stage({
    ns$check_counts_values(counts)
    if (ns$.native_recipe()) {
      # CPM and PCA in one Rust call: no separate PCA time (NA).
      p <- ns$.preprocess_native(counts, n.hvg = 2000, min.spots = 50, min.counts = 10,
                                 npcs = 200, seed = seed, n.threads = threads)
      pcs <- p$pcs
    } else {
      p <- ns$.preprocess_counts(counts, n.hvg = 2000, min.spots = 50, min.counts = 10, dense = FALSE)
      if (n >= 1e5) invisible(gc(verbose = FALSE))  # as run_sedr() does
      t0 <- proc.time()[["elapsed"]]
      pcs <- ns$sedr_pca_sparse(p$norm, center = p$center, scale = ifelse(p$constant, 0, p$scale),
                                npcs = 200, seed = seed, device = "cpu", n.threads = threads)
      pca_s <- proc.time()[["elapsed"]] - t0
    }
    list(features = length(p$features), dims = ncol(pcs$scores), finite = all(is.finite(pcs$scores)))
  })
  rm(p, pcs)  # made in this frame by the stage's expression
  graph <- stage(BuildSpatialGraph(coords, k.neighbors = 12, n.threads = threads))
  nnz_graph <- length(graph$value@i)
  est <- sum(ns$estimate_training_memory(n, prep$value$features, prep$value$dims, nnz_graph,
                                         "clustering", "cpu", dec = FALSE))
  graph$value <- NULL
  tr <- list(per_epoch = NA_real_, peak = NA_real_, note = "")
  if (train) {
    fit <- stage(tryCatch(
      RunSEDR(counts, coords = coords, epochs = 5, dec = FALSE, device = "cpu",
              n.threads = threads, verbose = FALSE, seed.use = seed),
      sedr_error_memory = function(e) e))
    if (inherits(fit$value, "sedr_error_memory")) {
      tr$note <- "refused by the memory guard"
    } else {
      tr$per_epoch <- fit$value$timings[["train"]] / 5
      tr$peak <- fit$peak
    }
  }
  cat(sprintf("RESULT|%d|%d|%d|%.2f|%.0f|%.2f|%.2f|%.0f|%.2f|%.0f|%d|%s|%.1f|%.3f|%.0f|%s|%s\n",
              n, nrow(counts), nnz, sim$seconds, prep$before, prep$seconds, pca_s, prep$peak,
              graph$seconds, graph$peak, prep$value$dims, prep$value$finite, est / 1024^3,
              tr$per_epoch, tr$peak, tr$note, prep$reset))
}

# Runs one size in a fresh R process (this script with --child and `extra`
# flags); returns the fields of its `tag|...` line, or NULL after printing a
# "failed" table row.
child_fields <- function(script, n, tag, extra = character()) {
  out <- system2("Rscript", c("--no-init-file", shQuote(script), "--child", extra,
                              format(n, scientific = FALSE), paste0("--genes=", n_genes),
                              paste0("--threads=", threads), paste0("--density=", density)),
                 stdout = TRUE, stderr = TRUE)
  res <- grep(paste0("^", tag, "\\|"), out, value = TRUE)
  if (!length(res)) {
    cat(sprintf("| %s | failed: %s |\n", format(n, big.mark = ",", scientific = FALSE),
                paste(utils::tail(out, 3), collapse = " / ")))
    return(NULL)
  }
  strsplit(res[1], "|", fixed = TRUE)[[1]][-1]
}
big <- function(v) format(as.numeric(v), big.mark = ",", scientific = FALSE)

full <- "--full" %in% args
if (child) {
  if (full) run_full(sizes[1]) else run_child(sizes[1])
  quit(save = "no")
}

if (full) {
  if (!length(sizes)) sizes <- c(5e4, 2e5)
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  cat(sprintf("SEDR end to end (RunSEDR defaults + SEDRClusters mclust, 7 domains): %d genes, %d threads; host %s, SEDR %s\n\n",
              n_genes, threads, Sys.info()[["nodename"]], format(utils::packageVersion("SEDR"))))
  cat("| spots | batch.size | preprocess s | graph s | train s | cluster s | total s | peak RSS (MB) | ARI vs simulated domains |\n|---|---|---|---|---|---|---|---|---|\n")
  for (n in sizes) {
    f <- child_fields(script, n, "FULL", "--full")
    if (is.null(f)) next
    cat(sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", big(f[1]), big(f[9]), f[2], f[3], f[4],
                f[5], f[6], big(f[7]), f[8]))
  }
  quit(save = "no")
}

if (!length(sizes)) sizes <- c(5e4, 2e5)
script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
cat(sprintf("SEDR scaling: %d genes, density %.2f, %d threads, npcs 200, k 12; host %s, %s\n\n",
            n_genes, density, threads, Sys.info()[["nodename"]],
            format(utils::packageVersion("SEDR"))))
cat("| spots | genes | nnz | simulate s | counts in RAM (MB) | preprocess s | of which PCA s | preprocess peak RSS (MB) | graph s | graph peak RSS (MB) | train estimate (GB) |",
    if (train) " train s/epoch | RunSEDR peak RSS (MB) |" else "", "\n", sep = "")
cat("|---|---|---|---|---|---|---|---|---|---|---|", if (train) "---|---|" else "", "\n", sep = "")
for (n in sizes) {
  f <- child_fields(script, n, "RESULT", if (train) "--train")
  if (is.null(f)) next
  cat(sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", big(f[1]), f[2], big(f[3]),
              f[4], big(f[5]), f[6], f[7], big(f[8]), f[9], big(f[10]), f[13]))
  if (train) {
    cat(if (nzchar(f[16])) sprintf(" %s | – |", f[16]) else sprintf(" %s | %s |", f[14], big(f[15])))
  }
  cat("\n")
  if (f[17] != "TRUE") cat("(VmHWM could not be reset: peaks are since process start)\n")
}
