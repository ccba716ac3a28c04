# Measures how long RunSEDR takes to stop after SIGINT (see RELIABILITY.md).
#   R_LIBS=.r-lib Rscript tools/interrupt-latency.R [repeats]
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 3L
out <- numeric()
for (r in seq_len(reps)) {
  s <- callr::r_session$new(options = callr::r_session_options(env = c(OMP_WAIT_POLICY = "PASSIVE", callr::rcmd_safe_env())))
  s$run(function() suppressPackageStartupMessages(library(SEDR)))
  s$call(function() {
    sim <- SEDR::SimulateSpatialTissue(n.rows = 40, n.cols = 40, n.genes = 300)
    tryCatch(SEDR::RunSEDR(sim$counts, coords = sim$coords, epochs = 1e6, dec = FALSE, n.hvg = 100,
                           npcs = 20, min.spots = 5, device = "cpu", verbose = FALSE),
             interrupt = function(e) "interrupted")
  })
  Sys.sleep(6)
  t0 <- proc.time()[["elapsed"]]
  s$interrupt()
  s$poll_process(10000)
  out[r] <- proc.time()[["elapsed"]] - t0
  stopifnot(identical(s$read()$result, "interrupted"))
  s$close()
}
cat(sprintf("SIGINT to stop: %s s (median %.2f s)\n", paste(sprintf("%.2f", out), collapse = ", "), median(out)))
