# Peak host memory of the trainer's three stages (building it, training,
# returning the output), each as the rise of the process's VmHWM over the
# resident size just before the trainer is made, beside the memory guard's
# estimate (R/memory.R) for the same run. Simulated counts (bench/common.R,
# 2000 genes), the native recipe with its PCs made straight into the
# trainer's input, k = 12, default options (mini-batches above 50,000
# spots), 1 thread. Linux only (/proc/self/clear_refs resets VmHWM).
#
#   Rscript bench/trainer-memory.R 1000000
N <- as.numeric(commandArgs(TRUE)[1])
if (is.na(N)) N <- 1e5
suppressPackageStartupMessages(library(SEDR))
source("bench/common.R")
ns <- asNamespace("SEDR")
st <- function(f) as.numeric(gsub("[^0-9]", "", grep(paste0("^", f, ":"), readLines("/proc/self/status"), value = TRUE))) / 1024
reset <- function() writeLines("5", "/proc/self/clear_refs")
d <- simulate_sparse(N); counts <- d$counts; coords <- d$coords[colnames(counts), , drop = FALSE]; rm(d)
prep <- ns$.preprocess_native(counts, npcs = 200, seed = 1L, as.input = TRUE)
graph <- BuildSpatialGraph(coords, k.neighbors = 12)
rm(counts); invisible(gc(full = TRUE))
opts <- SEDROptions(); opts$batch.size <- ns$resolve_batch_size(NULL, N); opts$dec.epochs <- 100L
est <- ns$estimate_training_memory(N, 2000, 200, length(graph@i), "clustering", "cpu", options = opts, dec = TRUE, input = "made")
print(round(est / 2^20)); cat("estimate MiB", round(sum(est) / 2^20), "\n")
r0 <- st("VmRSS"); reset()
o <- unclass(opts); o$epochs <- 100L; o$dec <- TRUE; o$seed <- 7L; o$n.threads <- 1L
tr <- ns$unwrap_rust(.Call(ns$wrap__sedr_trainer_new, prep$input, graph@p, graph@i, "clustering", o, "cpu"))
cat(sprintf("before %.0f | construct: rss +%.0f peak +%.0f\n", r0, st("VmRSS") - r0, st("VmHWM") - r0))
reset(); r1 <- st("VmRSS"); t0 <- proc.time()[[3]]
repeat { res <- ns$unwrap_rust(.Call(ns$wrap__sedr_trainer_step, tr, 50L)); if (isTRUE(res$done) || !length(res$epoch)) break }
cat(sprintf("train %.1f s: rss +%.0f peak +%.0f (over before: peak +%.0f)\n", proc.time()[[3]] - t0, st("VmRSS") - r1, st("VmHWM") - r1, st("VmHWM") - r0))
reset(); r2 <- st("VmRSS")
out <- ns$unwrap_rust(.Call(ns$wrap__sedr_trainer_output, tr, FALSE))
e <- out$embedding; out$embedding <- NULL; dim(e) <- c(N, 32)
cat(sprintf("output: rss +%.0f peak +%.0f (over before: peak +%.0f)\n", st("VmRSS") - r2, st("VmHWM") - r2, st("VmHWM") - r0))
