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
  train <- sum(vapply(SeuratObject::Misc(out[["sedr"]])$sections, function(s) s$elapsed, numeric(1)))
  list(emb = SeuratObject::Embeddings(out, "sedr"),
       row = data.frame(engine = engine, wall_s = round(wall, 1), sum_section_s = round(train, 1),
                        load_before = before, load_after = load1()))
}

rows <- list()
embs <- list()
for (r in seq_len(reps)) {
  for (engine in c("serial", "multicore2")) {
    res <- run(engine)
    rows[[length(rows) + 1]] <- cbind(rep = r, res$row)
    embs[[engine]] <- res$emb
    print(res$row)
  }
}
tab <- do.call(rbind, rows)
med <- tapply(tab$wall_s, tab$engine, stats::median)
cat("\n| rep | engine | wall (s) | sum of section times (s) | load avg before | after |\n|---|---|---|---|---|---|\n")
for (i in seq_len(nrow(tab))) {
  cat(sprintf("| %d | %s | %.1f | %.1f | %.2f | %.2f |\n", tab$rep[i], tab$engine[i], tab$wall_s[i],
              tab$sum_section_s[i], tab$load_before[i], tab$load_after[i]))
}
cat(sprintf("\nmedian wall: serial %.1f s, MulticoreParam(2) %.1f s, ratio %.2f (target <= 0.6)\n",
            med[["serial"]], med[["multicore2"]], med[["multicore2"]] / med[["serial"]]))
cat(sprintf("identical embeddings: %s\n", identical(embs$serial, embs$multicore2)))
