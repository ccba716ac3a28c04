# Ctrl-C during training: R drives the Rust trainer in chunks of < 0.5 s, so
# an interrupt lands between two .Call()s, stops training within a second and
# leaves the session usable. Tested on a real R subprocess with SIGINT.

test_that("SIGINT stops a long training within a second and R stays usable", {
  skip_on_cran()
  skip_if_not_installed("callr")
  s <- callr::r_session$new(options = callr::r_session_options(
    env = c(OMP_WAIT_POLICY = "PASSIVE", callr::rcmd_safe_env())
  ))
  on.exit(s$close(), add = TRUE)
  s$run(function() suppressPackageStartupMessages(library(SEDR)))
  s$call(function() {
    sim <- SEDR::SimulateSpatialTissue(n.rows = 30, n.cols = 30, n.genes = 300)
    assign("t_start", NULL, envir = globalenv())
    tryCatch(
      SEDR::RunSEDR(sim$counts, coords = sim$coords, epochs = 1e6, dec = FALSE, n.hvg = 100, npcs = 20,
                    min.spots = 5, device = "cpu", verbose = FALSE),
      interrupt = function(e) "interrupted"
    )
  })
  Sys.sleep(6) # loading, simulation, preprocessing: training is running by now
  expect_equal(s$poll_process(0), "timeout") # still busy
  t0 <- proc.time()[["elapsed"]]
  s$interrupt()
  expect_equal(s$poll_process(5000), "ready")
  elapsed <- proc.time()[["elapsed"]] - t0
  res <- s$read()
  expect_equal(res$result, "interrupted")
  expect_lt(elapsed, 1.5)
  # The session is still usable, SEDR included.
  expect_equal(s$run(function() nrow(SEDR::BuildSpatialGraph(cbind(1:20, 1:20 %% 3), k.neighbors = 3))), 20)
})
