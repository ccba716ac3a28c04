# Bad input, each case in its own R process with a time limit: every case
# must end at once in a classed SEDR error naming the argument (or, for
# thread counts above the machine's cores, in a capped run with a classed
# warning), never in a hang, a crash or one of base R's unclassed errors.
# A separate process per case is what catches a hang or a crash of R.

skip_if_not_installed("callr")

# Runs in the child process: load SEDR, make small inputs, evaluate `code`
# and report how it ended as plain data.
bad_input_child <- function(code) {
  suppressPackageStartupMessages(library(SEDR))
  env <- new.env()
  local(envir = env, {
    sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 120, seed = 1)
    counts <- sim$counts
    coords <- sim$coords
    small <- function(...) {
      args <- list(epochs = 5, dec = FALSE, n.hvg = 60, npcs = 10, min.spots = 3,
                   verbose = FALSE, device = "cpu")
      over <- list(...)
      args[names(over)] <- over
      do.call(RunSEDR, c(list(counts, coords = coords), args))
    }
    emb <- matrix(stats::rnorm(200), 100, 2, dimnames = list(rownames(coords), NULL))
    obj <- if (requireNamespace("SeuratObject", quietly = TRUE)) SimulationToSeurat(sim)
  })
  warnings <- character()
  out <- tryCatch(
    withCallingHandlers({
      eval(parse(text = code), env)
      list(outcome = "ok")
    }, warning = function(w) {
      warnings <<- c(warnings, class(w)[1])
      invokeRestart("muffleWarning")
    }),
    error = function(e) list(outcome = "error", class = class(e), message = conditionMessage(e),
                             arg = if (is.character(e$arg)) e$arg else NA_character_)
  )
  out$warnings <- warnings
  out
}

# Runs the cases `workers` at a time; a case still running after `timeout`
# seconds is killed and reported as a hang.
run_isolated <- function(codes, timeout = 90, workers = 2) {
  results <- vector("list", length(codes))
  pending <- seq_along(codes)
  running <- list()
  while (length(pending) || length(running)) {
    while (length(running) < workers && length(pending)) {
      i <- pending[1]
      pending <- pending[-1]
      proc <- callr::r_bg(bad_input_child, list(code = codes[[i]]), libpath = normalizePath(.libPaths()),
                          supervise = TRUE)
      running[[length(running) + 1]] <- list(i = i, proc = proc, start = Sys.time())
    }
    Sys.sleep(0.05)
    still <- list()
    for (r in running) {
      if (!r$proc$is_alive()) {
        results[[r$i]] <- tryCatch(r$proc$get_result(), error = function(e) {
          list(outcome = "crash", message = conditionMessage(e))
        })
      } else if (as.numeric(difftime(Sys.time(), r$start, units = "secs")) > timeout) {
        r$proc$kill()
        results[[r$i]] <- list(outcome = "hang")
      } else {
        still[[length(still) + 1]] <- r
      }
    }
    running <- still
  }
  results
}

# code, the argument the error must name ("" for a thread warning instead),
# and whether the case needs SeuratObject.
cases <- read.table(header = TRUE, sep = "|", strip.white = TRUE, quote = "", text = "
code                                                         | arg          | seurat
small(n.threads = 1e5)                                       |              | no
small(n.threads = 1e6)                                       |              | no
small(n.threads = 1e10)                                      | n.threads    | no
small(n.threads = 0)                                         | n.threads    | no
small(n.threads = NA)                                        | n.threads    | no
small(n.threads = '2')                                       | n.threads    | no
small(n.threads = 1.5)                                       | n.threads    | no
small(seed.use = 2^40)                                       | seed.use     | no
small(seed.use = -2^31)                                      | seed.use     | no
small(seed.use = 1.5)                                        | seed.use     | no
small(seed.use = NA)                                         | seed.use     | no
small(seed.use = Inf)                                        | seed.use     | no
small(seed.use = 'a')                                        | seed.use     | no
small(seed.use = c(1, 2))                                    | seed.use     | no
small(seed.use = TRUE)                                       | seed.use     | no
small(k.neighbors = 1e6)                                     | k.neighbors  | no
small(k.neighbors = 0)                                       | k.neighbors  | no
small(k.neighbors = 2^40)                                    | k.neighbors  | no
small(epochs = 0)                                            | epochs       | no
small(epochs = 1e12)                                         | epochs       | no
small(npcs = 1)                                              | npcs         | no
small(npcs = 2^40)                                           | npcs         | no
small(n.hvg = 2^40)                                          | n.hvg        | no
small(min.spots = -1)                                        | min.spots    | no
small(device = 'tpu')                                        | device       | no
small(mode = 'foo')                                          | mode         | no
small(options = list(lr = 1))                                | options      | no
small(features = 'no-such-gene')                             | features     | no
small(group.by = rep(c('a', NA), 50))                        | group.by     | no
small(bogus = 1)                                             | ...          | no
RunSEDR(counts, coords = coords[, 1, drop = FALSE])          | coords       | no
RunSEDR(counts, coords = coords[1:10, ])                     | coords       | no
RunSEDR(counts * -1, coords = coords)                        | object       | no
RunSEDR(counts + 0.5, coords = coords)                       | object       | no
RunSEDR(letters, coords = coords)                            | object       | no
RunSEDR(counts)                                              | coords       | no
SEDRClusters(emb, n.clusters = 3, method = 'kmeans')         | method       | no
SEDROptions(lr = -1)                                         | lr           | no
SEDROptions(mask.rate = 2)                                   | mask.rate    | no
SEDROptions(dec.clusters = 1)                                | dec.clusters | no
SEDRClusters(emb, n.clusters = 1)                            | n.clusters   | no
SEDRClusters(emb, n.clusters = 1e6)                          | n.clusters   | no
SEDRClusters(emb, n.clusters = 2^40)                         | n.clusters   | no
SEDRClusters(emb, n.clusters = 3, seed.use = 2^40)           | seed.use     | no
SEDRClusters(emb, n.clusters = 3, init.smooth = 2)           | init.smooth  | no
SEDRClusters(emb, n.clusters = 3, smooth = -1)               | smooth       | no
SEDRClusters(emb, n.clusters = 3, coords = coords, smooth.lambda = 1) | smooth.lambda | no
SEDRClusters(emb, n.clusters = 3, smooth.lambda = 0.2)       | smooth.lambda | no
SEDRClusters(emb, n.clusters = 3, coords = coords, smooth.lambda = 0.2, smooth.k = 2^40) | smooth.k | no
BuildSpatialGraph(coords, k.neighbors = 2^40)                | k.neighbors  | no
BuildSpatialGraph(coords, n.threads = 1e5)                   |              | no
ComputeLISI(emb, rep(1:2, 50), n.threads = 1e5)              |              | no
ComputeLISI(emb, rep(1:2, 50), n.threads = 2^40)             | n.threads    | no
SimulateSpatialTissue(seed = 2^40)                           | seed         | no
SEDRUmapPlot(emb, labels = rep(1:2, 50), seed.use = 2^40)    | seed.use     | no
RunSEDR(obj, assay = 'nope')                                 | assay        | yes
RunSEDR(obj, coords = c('a', 'b'))                           | coords       | yes
RunSEDR(obj, group.by = 'nope')                              | group.by     | yes
RunSEDR(obj, reduction = 'nope')                             | reduction    | yes
RunSEDR(obj, seed.use = 2^40)                                | seed.use     | yes
RunSEDR(obj, n.threads = -1)                                 | n.threads    | yes
SEDRClusters(obj, n.clusters = 3)                            | reduction    | yes
")

test_that("bad input ends at once in a classed error (or a capped thread count), in its own process", {
  skip_on_cran()
  if (!requireNamespace("SeuratObject", quietly = TRUE)) cases <- cases[cases$seurat == "no", ]
  # make test's SeuratObject 5 pass repeats only the Seurat cases.
  if (nzchar(Sys.getenv("SEDR_TEST_ASSAY_VERSION"))) cases <- cases[cases$seurat == "yes", ]
  results <- run_isolated(cases$code)
  for (k in seq_len(nrow(cases))) {
    res <- results[[k]]
    label <- cases$code[k]
    expect_false(res$outcome %in% c("hang", "crash"), label = paste(label, "hangs or crashes R"))
    if (!nzchar(cases$arg[k])) {
      # A thread count above the cores: capped, with a classed warning.
      expect_identical(res$outcome, "ok", label = label)
      expect_true("sedr_warning_threads" %in% res$warnings, label = label)
    } else {
      expect_identical(res$outcome, "error", label = label)
      expect_true("sedr_error" %in% res$class, label = paste(label, "gives a classed error:", res$message))
      expect_identical(res$arg, cases$arg[k], label = paste(label, "names its argument:", res$message))
    }
  }
})
