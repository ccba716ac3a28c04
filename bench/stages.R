# Stage times and peak RSS of the default workflow, RunSEDR() (defaults,
# CPU) then SEDRClusters(mclust), on DLPFC 151673 and simulated tissues.
# Each run is a fresh R process, so its peak RSS is its own. "peak RSS" is
# the whole process's VmHWM (R + libtorch + data) from the loaded counts to
# the domains: the high-water mark is reset once the counts are loaded
# (/proc/self/clear_refs), so the transient peak of reading or simulating
# them (reported apart, "load peak") does not count. Beside it, the memory
# guard's estimate (R/memory.R) of what training adds, as RunSEDR() computes
# it, and the resident size at the start plus that estimate. Prints a
# markdown table of medians (and ranges) over the runs, with the load
# average before and after.
#
#   Rscript bench/stages.R [--runs=3] [--threads=1,2] [--data=151673,20000]
#                          [--recipe=native|r]
#   Rscript bench/stages.R --runs=1 --threads=1 --data=200000,1000000
#
# --data: "151673" (../shared/data/dlpfc_151673, or $SEDR_DATA), "starmap"
# (starmap_mouse_vcortex, 1,549 cells, graph k = 6) or a number of spots for
# simulate_sparse() (bench/common.R; 2000 genes, density 0.05: 1,000,000
# spots hold ~100 M non-zeros). Sizes of 200,000 spots and more run once
# whatever --runs says (minutes each).
# --recipe=r runs the R reference recipe (options(SEDR.recipe = "r")), the
# preprocessing before the native one. --pca=sparse|gram|exact forces the
# sparse PCA's method (options(SEDR.pca =); default "auto", the cost model's
# choice between sparse products and the Gram matrix for the randomized SVD).
# Seeds 2023, 2024, ... per run.
args <- commandArgs(trailingOnly = TRUE)
flag <- function(name, default) {
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[1]) else default
}
source(file.path("bench", "common.R"))
runs <- as.integer(flag("runs", "3"))
threads <- as.integer(strsplit(flag("threads", "1,2"), ",")[[1]])
datasets <- strsplit(flag("data", "151673,20000"), ",")[[1]]
recipe <- flag("recipe", "native")
pca <- flag("pca", "auto")

# The real datasets --data may name: their folders and graph k (STARmap's
# cells: the first ring of neighbours, as bench/domains.R uses).
real_data <- list("151673" = list(dir = "dlpfc_151673", k = 12), starmap = list(dir = "starmap_mouse_vcortex", k = 6))

status_mb <- function(field) {
  st <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep(paste0("^", field, ":"), st, value = TRUE))) / 1024
}

# One run in this process: prints "STAGES|read|preprocess|graph|train|mclust|
# total|peak MB|spots|genes|load peak MB|RSS at start MB|guard estimate MB".
run_child <- function(data, n_threads, seed) {
  suppressPackageStartupMessages(library(SEDR))
  options(SEDR.recipe = recipe, SEDR.pca = pca)
  t0 <- proc.time()[["elapsed"]]
  if (data %in% names(real_data)) {
    d <- read_dataset(data_dir(real_data[[data]]$dir))
    if (is.null(d)) stop(real_data[[data]]$dir, " not found under ", data_dir(""))
  } else {
    d <- simulate_sparse(as.numeric(data))
  }
  counts <- d$counts
  coords <- d$coords[colnames(counts), , drop = FALSE]
  rm(d)
  read_s <- proc.time()[["elapsed"]] - t0
  invisible(gc(full = TRUE))
  load_peak <- peak_rss_mb()
  # From here the high-water mark is that of the loaded counts onwards.
  reset <- tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE,
                    warning = function(w) FALSE)
  if (!reset) load_peak <- NA_real_
  start_rss <- status_mb("VmRSS")
  t1 <- proc.time()[["elapsed"]]
  k <- if (data %in% names(real_data)) real_data[[data]]$k else 12
  res <- RunSEDR(counts, coords = coords, device = "cpu", n.threads = n_threads,
                 k.neighbors = k, seed.use = seed, verbose = FALSE)
  t2 <- proc.time()[["elapsed"]]
  cl <- SEDRClusters(res, n.clusters = 7, verbose = FALSE)
  t3 <- proc.time()[["elapsed"]]
  tm <- res$timings
  peak <- peak_rss_mb()
  # The guard's estimate with what RunSEDR() knew before training (the
  # native recipe has made the trainer's input by then; the R one has not).
  est <- sum(asNamespace("SEDR")$estimate_training_memory(
    ncol(counts), res$params$n.hvg, res$params$input.dims, length(res$graph@i), "clustering", "cpu",
    dec = res$params$dec, input = if (recipe == "r") "doubles" else "made")) / 1024^2
  cat(sprintf("STAGES|%.2f|%.2f|%.2f|%.2f|%.2f|%.2f|%.0f|%d|%d|%.0f|%.0f|%.0f\n", read_s, tm[["preprocess"]],
              tm[["graph"]], tm[["train"]], t3 - t2, t3 - t1, peak, ncol(counts),
              nrow(counts), load_peak, start_rss, est))
}

if ("--child" %in% args) {
  run_child(flag("one", ""), as.integer(flag("t", "1")), as.integer(flag("seed", "2023")))
  quit(save = "no")
}

load_avg <- function() {
  if (!file.exists("/proc/loadavg")) return(NA_character_)
  paste(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3], collapse = " ")
}
script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
cat(sprintf("SEDR stages: RunSEDR defaults (CPU) + SEDRClusters(mclust, 7); recipe %s; PCA %s; %d runs; host %s, %d cores, SEDR %s\n",
            recipe, pca, runs, Sys.info()[["nodename"]], parallel::detectCores(),
            format(utils::packageVersion("SEDR"))))
cat(sprintf("load average before: %s\n\n", load_avg()))
cat("| data | spots | threads | read s | preprocess s | graph s | train s | mclust s | RunSEDR + mclust s | peak RSS MB | load peak MB | RSS at start MB | guard estimate MB | start + estimate MB |\n")
cat("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
fmt <- function(v, digits = 2) {
  r <- range(v)
  sprintf("%.*f (%.*f–%.*f)", digits, stats::median(v), digits, r[1], digits, r[2])
}
for (data in datasets) {
  for (t in threads) {
    rows <- list()
    n_runs <- if (!data %in% names(real_data) && as.numeric(data) >= 2e5) 1L else runs
    for (r in seq_len(n_runs)) {
      out <- system2("Rscript", c("--no-init-file", shQuote(script), "--child", paste0("--one=", data),
                                  paste0("--t=", t), paste0("--seed=", 2022 + r),
                                  paste0("--recipe=", recipe), paste0("--pca=", pca)),
                     stdout = TRUE, stderr = TRUE)
      hit <- grep("^STAGES\\|", out, value = TRUE)
      if (!length(hit)) {
        cat(sprintf("| %s | failed: %s |\n", data, paste(utils::tail(out, 3), collapse = " / ")))
        next
      }
      rows[[length(rows) + 1]] <- as.numeric(strsplit(hit[1], "|", fixed = TRUE)[[1]][-1])
    }
    if (!length(rows)) next
    m <- do.call(rbind, rows)
    cat(sprintf("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", data,
                format(m[1, 8], big.mark = ",", scientific = FALSE), t, fmt(m[, 1]), fmt(m[, 2]),
                fmt(m[, 3]), fmt(m[, 4]), fmt(m[, 5]), fmt(m[, 6]), fmt(m[, 7], 0), fmt(m[, 10], 0),
                fmt(m[, 11], 0), fmt(m[, 12], 0), fmt(m[, 11] + m[, 12], 0)))
  }
}
cat(sprintf("\nload average after: %s\n", load_avg()))
