# A cohort of 8 simulated sections of 5,000 spots, one model per section:
# RunSEDR(split.by =) on BiocParallel's SerialParam against MulticoreParam(2),
# 1 thread per section, the package's default recipe and epochs (100 + 100 DEC).
# Prints a markdown table of wall times (with the load average before and
# after each run, since the machine may be shared) and whether the two
# engines gave identical embeddings.
#
#   Rscript bench/cohort.R [reps] [sections] [spots]     (defaults 1 8 5000)

suppressPackageStartupMessages({
  library(SEDR)
  library(BiocParallel)
})
args <- suppressWarnings(as.integer(commandArgs(trailingOnly = TRUE)))
reps <- if (length(args) >= 1 && !is.na(args[1])) args[1] else 1L
n_sections <- if (length(args) >= 2 && !is.na(args[2])) args[2] else 8L
n_spots <- if (length(args) >= 3 && !is.na(args[3])) args[3] else 5000L

# Sections of 50 x (n_spots / 50) lattices, each its own seed.
n_cols <- ceiling(n_spots / 50)
parts <- lapply(seq_len(n_sections), function(i) {
  sim <- SimulateSpatialTissue(n.rows = 50, n.cols = n_cols, seed = i)
  s <- sprintf("section%02d", i)
  colnames(sim$counts) <- paste0(s, "_", colnames(sim$counts))
  list(counts = sim$counts, x = sim$coords[, 1], y = sim$coords[, 2], sample = s)
})
counts <- do.call(cbind, lapply(parts, `[[`, "counts"))
md <- data.frame(x = unlist(lapply(parts, `[[`, "x")), y = unlist(lapply(parts, `[[`, "y")),
                 sample = rep(vapply(parts, `[[`, "", "sample"), each = 50 * n_cols),
                 row.names = colnames(counts))
obj <- SeuratObject::AddMetaData(SeuratObject::CreateSeuratObject(counts, assay = "Spatial"), md)
rm(parts, counts)
cat(sprintf("%d sections x %d spots x %d genes; %d cores\n", n_sections, 50 * n_cols,
            nrow(obj), parallel::detectCores()))

load1 <- function() as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1])
run <- function(engine) {
  bp <- switch(engine, serial = SerialParam(), multicore2 = MulticoreParam(2))
  before <- load1()
  t0 <- proc.time()[["elapsed"]]
  out <- RunSEDR(obj, split.by = "sample", BPPARAM = bp, n.threads = 1, device = "cpu",
                 seed.use = 42, verbose = FALSE)
  wall <- proc.time()[["elapsed"]] - t0
  secs <- SeuratObject::Misc(out[["sedr"]])$sections
  train <- sum(vapply(secs, function(s) s$elapsed, numeric(1)))
  cpu <- vapply(secs, function(s) s$cpu, numeric(1))
  list(emb = SeuratObject::Embeddings(out, "sedr"), cpu = cpu,
       row = data.frame(engine = engine, wall_s = round(wall, 1), sum_section_s = round(train, 1),
                        sum_cpu_s = round(sum(cpu), 1), load_before = before, load_after = load1()))
}

rows <- list()
embs <- list()
cpus <- list()
for (r in seq_len(reps)) {
  for (engine in c("serial", "multicore2")) {
    res <- run(engine)
    rows[[length(rows) + 1]] <- cbind(rep = r, res$row)
    embs[[engine]] <- res$emb
    cpus[[engine]] <- cbind(cpus[[engine]], res$cpu)
    print(res$row)
  }
}
tab <- do.call(rbind, rows)
med <- tapply(tab$wall_s, tab$engine, stats::median)
cat("\n| rep | engine | wall (s) | sum of section wall times (s) | sum of section CPU times (s) | load avg before | after |\n|---|---|---|---|---|---|---|\n")
for (i in seq_len(nrow(tab))) {
  cat(sprintf("| %d | %s | %.1f | %.1f | %.1f | %.2f | %.2f |\n", tab$rep[i], tab$engine[i], tab$wall_s[i],
              tab$sum_section_s[i], tab$sum_cpu_s[i], tab$load_before[i], tab$load_after[i]))
}
# What the CPU times imply for a machine to itself (an estimate, not a
# measurement): serial wall = the sum of the sections' CPU times; two workers
# = the larger of the two workers' sums when the sections are dealt out
# longest first (BiocParallel hands the next section to the first free worker).
makespan <- function(t, workers = 2) {
  load <- numeric(workers)
  for (x in sort(t, decreasing = TRUE)) load[which.min(load)] <- load[which.min(load)] + x
  max(load)
}
cpu_serial <- apply(cpus$serial, 1, stats::median)
cpu_multi <- apply(cpus$multicore2, 1, stats::median)
cat(sprintf("per-section CPU s (median over reps): serial %s; in 2 workers %s\n",
            paste(sprintf("%.1f", cpu_serial), collapse = " "), paste(sprintf("%.1f", cpu_multi), collapse = " ")))
cat(sprintf("CPU-time estimate for an idle machine: serial %.1f s, 2 workers %.1f s, ratio %.2f\n",
            sum(cpu_serial), makespan(cpu_multi), makespan(cpu_multi) / sum(cpu_serial)))
cat(sprintf("\nmedian wall: serial %.1f s, MulticoreParam(2) %.1f s, ratio %.2f (target <= 0.6)\n",
            med[["serial"]], med[["multicore2"]], med[["multicore2"]] / med[["serial"]]))
cat(sprintf("identical embeddings: %s\n", identical(embs$serial, embs$multicore2)))
