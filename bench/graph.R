# Spatial-graph benchmark: BuildSpatialGraph() on jittered hexagonal lattices
# of n spots, k = 6 and 12. Each configuration runs in a fresh R process so
# its peak RSS (VmHWM) is its own; "graph MB" is the peak minus the RSS
# before the call (R + libtorch loaded). Prints a markdown table.
#   Rscript bench/graph.R [n1 n2 ...]      (default 10000 100000 1000000)
args <- commandArgs(trailingOnly = TRUE)
ns <- if (length(args)) as.numeric(args) else c(1e4, 1e5, 1e6)
one <- '
suppressPackageStartupMessages(library(SEDR))
n <- as.numeric(Sys.getenv("N")); k <- as.integer(Sys.getenv("K")); thr <- as.integer(Sys.getenv("THR"))
rss <- function(f) as.numeric(gsub("[^0-9]", "", grep(paste0("^", f), readLines("/proc/self/status"), value = TRUE))) / 1024
cols <- ceiling(sqrt(n)); r <- (seq_len(n) - 1) %/% cols; c <- (seq_len(n) - 1) %% cols
set.seed(1)
xy <- cbind(x = c + 0.5 * (r %% 2) + runif(n, -0.05, 0.05), y = r * sqrt(3) / 2 + runif(n, -0.05, 0.05))
gc(); before <- rss("VmRSS")
t <- system.time(A <- BuildSpatialGraph(xy, k.neighbors = k, n.threads = thr))[["elapsed"]]
cat(sprintf("%d|%d|%d|%.2f|%.0f|%.0f|%.1f\n", as.integer(n), k, thr, t, rss("VmHWM") - before, rss("VmHWM"), Matrix::nnzero(A) / n))
'
cat("| spots | k | threads | seconds | graph MB (peak - before) | process peak MB | mean degree |\n|---|---|---|---|---|---|---|\n")
for (n in ns) for (k in c(6, 12)) {
  out <- system2("Rscript", c("--no-init-file", "-e", shQuote(one)), stdout = TRUE,
                 env = c(sprintf("N=%s", format(n, scientific = FALSE)), sprintf("K=%d", k), "THR=2"))
  f <- strsplit(tail(out, 1), "|", fixed = TRUE)[[1]]
  cat(sprintf("| %s | %s | %s | %s | %s | %s | %s |\n", format(as.numeric(f[1]), big.mark = ",", scientific = FALSE), f[2], f[3], f[4], f[5], f[6], f[7]))
}
