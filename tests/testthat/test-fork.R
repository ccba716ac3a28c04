# BiocParallel's MulticoreParam forks the R session. rayon's global thread
# pool has no threads in a forked child, so a parallel call that used it
# there would wait forever; every entry point of the Rust core runs on a pool
# of its own. Here the parent uses the parallel value checks first (so any
# global pool exists), then a forked child runs them again. Training uses 1
# thread: libgomp's own threads do not survive a fork either (?SEDRCohorts).

test_that("the Rust core's parallel passes work in a forked child after the parent used them", {
  skip_on_cran()
  skip_on_os("windows")
  set.seed(1)
  # Enough stored values for several parallel chunks of the value checks.
  x <- Matrix::rsparsematrix(400, 2000, density = 0.3, rand.x = function(n) rpois(n, 3) + 1)
  SEDR:::check_counts_values(x)
  sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 150)
  run <- function() {
    SEDR:::check_counts_values(x)
    res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 5, dec = FALSE, n.hvg = 60, npcs = 10,
                   min.spots = 3, device = "cpu", n.threads = 1, verbose = FALSE)
    dim(res$embedding)
  }
  parent <- run()
  job <- parallel::mcparallel(run())
  out <- parallel::mccollect(job, wait = FALSE, timeout = 60)
  if (is.null(out)) tools::pskill(job$pid)
  expect_false(is.null(out), label = "the forked child finished within 60 s")
  expect_identical(out[[1]], parent)
})
