# RunSEDR(split.by =, BPPARAM =) and SEDRClusters(split.by =): one model per
# section on BiocParallel engines. Three tiny simulated sections, briefly
# trained; the spots of the sections are interleaved in the object so that
# misplaced rows would show.

skip_if_not_installed("BiocParallel")
skip_if_not_installed("SeuratObject")

cohort_opts <- function() SEDROptions(dec.epochs = 10, dec.interval = 5, kmeans.restarts = 2)
cohort_args <- list(epochs = 20, n.hvg = 100, npcs = 20, min.spots = 5, device = "cpu",
                    n.threads = 1, seed.use = 42, verbose = FALSE)

# Sections slideA, slideB, ... of 144 spots each (12 x 12 lattices), `tiny`
# names sections cut down to 8 spots (too few for a 12-neighbour graph).
cohort_data <- function(n = 3, tiny = character()) {
  nm <- paste0("slide", LETTERS[seq_len(n)])
  parts <- lapply(seq_len(n), function(i) {
    sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 150, n.domains = 3,
                                 markers.per.domain = 10, seed = i)
    keep <- if (nm[i] %in% tiny) 1:8 else seq_len(ncol(sim$counts))
    counts <- sim$counts[, keep, drop = FALSE]
    colnames(counts) <- paste0(nm[i], "_", colnames(counts))
    coords <- sim$coords[keep, , drop = FALSE]
    rownames(coords) <- colnames(counts)
    list(counts = counts, coords = coords, domain = sim$domain[keep])
  })
  counts <- do.call(cbind, lapply(parts, `[[`, "counts"))
  coords <- do.call(rbind, lapply(parts, `[[`, "coords"))
  sample <- rep(nm, vapply(parts, function(p) ncol(p$counts), integer(1)))
  perm <- withr_seed_perm(ncol(counts))
  list(counts = counts[, perm], coords = coords[perm, ], sample = sample[perm],
       domain = unlist(lapply(parts, function(p) as.character(p$domain)))[perm])
}
withr_seed_perm <- function(n) SEDR:::.with_seed(7, sample.int(n))

cohort_seurat <- function(d) {
  obj <- SeuratObject::CreateSeuratObject(counts = d$counts, assay = "Spatial")
  md <- data.frame(x = d$coords[, 1], y = d$coords[, 2], sample = d$sample, domain = d$domain,
                   row.names = colnames(d$counts))
  SeuratObject::AddMetaData(obj, md)
}

run_cohort_tiny <- function(object, ...) {
  args <- c(cohort_args, list(options = cohort_opts(), split.by = "sample"))
  over <- list(...)
  args[names(over)] <- over
  do.call(RunSEDR, c(list(object), args))
}

d <- cohort_data()
obj <- cohort_seurat(d)
serial <- run_cohort_tiny(obj, BPPARAM = BiocParallel::SerialParam())
emb <- SeuratObject::Embeddings(serial, "sedr")
misc <- SeuratObject::Misc(serial[["sedr"]])

# Section `s` of `d` trained on its own, with the seed the cohort gives it.
embed_alone <- function(d, s) {
  spots <- colnames(d$counts)[d$sample == s]
  args <- utils::modifyList(cohort_args, list(seed.use = SEDRCohortSeeds(42, s)[[s]]))
  fit <- do.call(RunSEDR, c(list(d$counts[, spots], coords = d$coords[spots, ], options = cohort_opts()), args))
  fit$embedding
}

test_that("each section's rows hold the model trained on that section alone", {
  expect_identical(rownames(emb), colnames(obj))
  expect_equal(ncol(emb), 32L)
  expect_true(all(is.finite(emb)))
  for (s in c("slideB", "slideC")) {
    alone <- embed_alone(d, s)
    expect_identical(unname(emb[rownames(alone), ]), unname(alone))
  }
})

test_that("the reduction's misc has every section's record and a block-diagonal graph", {
  expect_identical(misc$split.by, "sample")
  expect_identical(names(misc$sections), c("slideA", "slideB", "slideC"))
  expect_length(misc$failed, 0)
  seeds <- SEDRCohortSeeds(42, names(misc$sections))
  expect_identical(misc$params$section.seeds, seeds)
  expect_identical(misc$params$engine, "SerialParam")
  for (s in names(misc$sections)) {
    rec <- misc$sections[[s]]
    expect_identical(rec$params$seed.use, seeds[[s]])
    expect_identical(sort(rec$spots), sort(colnames(obj)[obj$sample == s]))
    expect_equal(nrow(rec$losses), 20 + 10)
    expect_equal(dim(rec$dec.q), c(144L, 10L))
    expect_true(all(c("preprocess", "graph", "train") %in% names(rec$timings)))
    expect_true(rec$elapsed > 0 && rec$cpu > 0)
  }
  expect_identical(sort(unique(misc$losses$section)), names(misc$sections))
  # No edge across sections; within a section the section's own graph.
  g <- misc$graph
  expect_equal(dim(g), c(ncol(obj), ncol(obj)))
  nz <- Matrix::which(g != 0, arr.ind = TRUE)
  expect_true(all(obj$sample[nz[, 1]] == obj$sample[nz[, 2]]))
  spots <- colnames(obj)[obj$sample == "slideA"]
  own <- BuildSpatialGraph(d$coords[spots, ], k.neighbors = 12)
  expect_equal(unname(as.matrix(g[spots, spots] != 0)), unname(as.matrix(own != 0)))
})

test_that("SEDRClusters(split.by) clusters each section with its own graph", {
  out <- SEDRClusters(serial, n.clusters = 3, split.by = "sample", verbose = FALSE)
  lab <- out$sedr_clusters
  expect_s3_class(lab, "factor")
  expect_false(anyNA(lab))
  spots <- colnames(obj)[obj$sample == "slideB"]
  res <- structure(list(embedding = emb[spots, ], graph = misc$graph[spots, spots], dec.q = NULL,
                        coords = d$coords[spots, ]), class = "sedr_result")
  alone <- SEDRClusters(res, n.clusters = 3, verbose = FALSE)
  expect_identical(as.character(lab[spots]), as.character(alone))
  # The simulated domains are recovered within each section.
  for (s in c("slideA", "slideB", "slideC")) {
    k <- obj$sample == s
    expect_gt(mclust::adjustedRandIndex(lab[k], obj$domain[k]), 0.5)
  }
  # Without split.by, the reduction's own sections.
  expect_identical(SEDRClusters(serial, n.clusters = 3, verbose = FALSE)$sedr_clusters, lab)
  dec <- SEDRClusters(serial, method = "dec", verbose = FALSE)
  q <- misc$sections$slideC$dec.q
  expect_identical(as.character(dec$sedr_clusters[rownames(q)]), as.character(max.col(q, ties.method = "first")))
})

test_that("an existing reduction is split by section too", {
  o <- obj
  pcs <- matrix(stats::rnorm(ncol(o) * 10), ncol(o), 10, dimnames = list(colnames(o), paste0("PC_", 1:10)))
  o[["pca"]] <- SeuratObject::CreateDimReducObject(pcs, key = "PC_", assay = "Spatial")
  out <- run_cohort_tiny(o, reduction = "pca", BPPARAM = BiocParallel::SerialParam())
  e <- SeuratObject::Embeddings(out, "sedr")
  expect_identical(rownames(e), colnames(o))
  rec <- SeuratObject::Misc(out[["sedr"]])$sections$slideC
  expect_identical(rec$params$input, "reduction")
  # Section slideC alone: the object cut to its spots, the same reduction rows.
  spots <- colnames(o)[o$sample == "slideC"]
  args <- utils::modifyList(cohort_args, list(seed.use = SEDRCohortSeeds(42, "slideC")[[1]]))
  alone <- do.call(RunSEDR, c(list(o[, spots], reduction = "pca", coords = c("x", "y"), options = cohort_opts()), args))
  expect_identical(e[spots, ], SeuratObject::Embeddings(alone, "sedr"))
})

test_that("one progress line per finished section", {
  msgs <- character()
  withCallingHandlers(run_cohort_tiny(obj, verbose = TRUE, epochs = 5),
                      message = function(m) {
                        msgs <<- c(msgs, conditionMessage(m))
                        invokeRestart("muffleMessage")
                      })
  expect_length(msgs, 3)
  expect_true(all(grepl("^Section slide[ABC] \\([123]/3\\): 144 spots", msgs)))
})

test_that("every engine gives the identical embedding", {
  skip_on_cran()
  engines <- list(multicore = function() BiocParallel::MulticoreParam(2),
                  snow = function() BiocParallel::SnowParam(2))
  if (requireNamespace("batchtools", quietly = TRUE)) {
    engines$batchtools <- function() BiocParallel::BatchtoolsParam(2, cluster = "multicore")
  }
  for (e in names(engines)) {
    if (e == "multicore" && .Platform$OS.type == "windows") next
    out <- suppressMessages(run_cohort_tiny(obj, BPPARAM = engines[[e]]()))
    expect_identical(SeuratObject::Embeddings(out, "sedr"), emb, label = e)
    expect_identical(names(SeuratObject::Misc(out[["sedr"]])$sections), names(misc$sections))
  }
})

test_that("a failing section keeps the others, and the error names it", {
  dt <- cohort_data(tiny = "slideB")
  o <- cohort_seurat(dt)
  err <- expect_error(run_cohort_tiny(o, BPPARAM = BiocParallel::SerialParam()), class = "sedr_error_sections")
  expect_identical(names(err$failed), "slideB")
  expect_match(err$failed[["slideB"]], "k.neighbors")
  expect_match(conditionMessage(err), "1 of 3 sections failed")
  expect_match(conditionMessage(err), "slideB")
  part <- err$object
  e2 <- SeuratObject::Embeddings(part, "sedr")
  b <- o$sample == "slideB"
  expect_true(all(is.na(e2[b, ])))
  # The finished sections are exactly what they are without the failure.
  alone <- embed_alone(dt, "slideA")
  expect_identical(unname(e2[rownames(alone), ]), unname(alone))
  expect_identical(names(SeuratObject::Misc(part[["sedr"]])$sections), c("slideA", "slideC"))
  # Clustering per section skips the failed one.
  cl <- SEDRClusters(part, n.clusters = 3, split.by = "sample", verbose = FALSE)$sedr_clusters
  expect_true(all(is.na(cl[b])))
  expect_false(anyNA(cl[!b]))
  # By argument, a warning and the object.
  w <- expect_warning(out <- run_cohort_tiny(o, BPPARAM = BiocParallel::SerialParam(), on.error = "warning"),
                      class = "sedr_warning_sections")
  expect_identical(names(w$failed), "slideB")
  expect_identical(SeuratObject::Embeddings(out, "sedr"), e2)
})

test_that("a worker that dies loses only its own section", {
  skip_on_os("windows")
  # Kills the forked worker that trains slideB; MulticoreParam's workers are
  # forks of this session, so they see the replaced function.
  ns <- asNamespace("SEDR")
  orig <- get("cohort_section", envir = ns)
  unlockBinding("cohort_section", ns)
  on.exit({
    assign("cohort_section", orig, envir = ns)
    lockBinding("cohort_section", ns)
  }, add = TRUE)
  assign("cohort_section", function(task, args) {
    if (task$section == "slideB") tools::pskill(Sys.getpid(), 9L)
    orig(task, args)
  }, envir = ns)
  err <- suppressWarnings(expect_error(run_cohort_tiny(obj, BPPARAM = BiocParallel::MulticoreParam(2)),
                                       class = "sedr_error_sections"))
  expect_identical(names(err$failed), "slideB")
  expect_match(err$failed[["slideB"]], "no result came back")
  keep <- obj$sample != "slideB"
  expect_identical(SeuratObject::Embeddings(err$object, "sedr")[keep, ], emb[keep, ])
})

test_that("when every section fails the object is unchanged", {
  dt <- cohort_data(n = 2, tiny = c("slideA", "slideB"))
  o <- cohort_seurat(dt)
  before <- o
  err <- expect_error(o <- run_cohort_tiny(o, BPPARAM = BiocParallel::SerialParam()), class = "sedr_error_sections")
  expect_match(conditionMessage(err), "All of 2 sections failed")
  expect_null(err$object)
  expect_identical(o, before)
  expect_length(SeuratObject::Reductions(o), 0)
})

test_that("bad split.by, BPPARAM and related arguments are classed errors", {
  serial <- BiocParallel::SerialParam()
  expect_error(run_cohort_tiny(obj, split.by = "nope", BPPARAM = serial), class = "sedr_error_input")
  err <- tryCatch(run_cohort_tiny(obj, split.by = 3, BPPARAM = serial), error = identity)
  expect_identical(err$arg, "split.by")
  err <- tryCatch(run_cohort_tiny(obj, BPPARAM = "serial"), error = identity)
  expect_s3_class(err, "sedr_error_input")
  expect_identical(err$arg, "BPPARAM")
  err <- tryCatch(run_cohort_tiny(obj, split.by = NULL, BPPARAM = serial), error = identity)
  expect_identical(err$arg, "BPPARAM")
  err <- tryCatch(run_cohort_tiny(obj, on.error = "ignore"), error = identity)
  expect_identical(err$arg, "on.error")
  err <- tryCatch(run_cohort_tiny(obj, group.by = "sample"), error = identity)
  expect_identical(err$arg, "group.by")
  err <- tryCatch(run_cohort_tiny(obj, mode = "imputation"), error = identity)
  expect_identical(err$arg, "split.by")
  err <- tryCatch(run_cohort_tiny(obj, seed.use = NULL), error = identity)
  expect_identical(err$arg, "seed.use")
  err <- tryCatch(run_cohort_tiny(obj, n.threads = 0), error = identity)
  expect_identical(err$arg, "n.threads")
  na <- obj
  na$sample[1] <- NA
  err <- tryCatch(run_cohort_tiny(na), error = identity)
  expect_s3_class(err, "sedr_error_input")
  expect_identical(err$arg, "split.by")
  odd <- obj
  odd$sample[odd$sample == "slideA"] <- ""
  err <- tryCatch(run_cohort_tiny(odd), error = identity)
  expect_identical(err$arg, "split.by")
  err <- tryCatch(SEDRClusters(serial, n.clusters = 3, split.by = "nope"), error = identity)
  expect_identical(err$arg, "split.by")
  err <- tryCatch(SEDRClusters(emb, n.clusters = 3, split.by = "sample"), error = identity)
  expect_identical(err$arg, "split.by")
})

test_that("section seeds depend only on seed.use and the section name", {
  s <- SEDRCohortSeeds(42, c("a", "b", "slide1"))
  expect_identical(names(s), c("a", "b", "slide1"))
  expect_true(is.integer(s) && all(s >= 0))
  expect_identical(SEDRCohortSeeds(42, c("slide1", "a"))[c("a", "slide1")], s[c("a", "slide1")])
  expect_false(identical(SEDRCohortSeeds(43, "a"), s["a"]))
  # FNV-1a 32-bit reference values.
  expect_equal(SEDR:::fnv1a32(""), 2166136261)
  expect_equal(SEDR:::fnv1a32("a"), 3826002220)
  expect_equal(SEDR:::fnv1a32("foobar"), 3214735720)
  expect_equal(s[["a"]], as.integer(SEDR:::fnv1a32("42/a") %% 2147483647))
  expect_error(SEDRCohortSeeds(NA, "a"), class = "sedr_error_input")
})

test_that("the SingleCellExperiment method writes the cohort into reducedDim and metadata", {
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = d$counts),
    colData = S4Vectors::DataFrame(x = d$coords[, 1], y = d$coords[, 2], sample = d$sample,
                                   row.names = colnames(d$counts)))
  out <- run_cohort_tiny(sce, BPPARAM = BiocParallel::SerialParam())
  rd <- SingleCellExperiment::reducedDim(out, "SEDR")
  expect_identical(unname(rd), unname(emb))
  md <- S4Vectors::metadata(out)$SEDR
  expect_identical(names(md$sections), c("slideA", "slideB", "slideC"))
  out <- SEDRClusters(out, n.clusters = 3, split.by = "sample", verbose = FALSE)
  expect_identical(as.character(out$sedr_clusters),
                   as.character(SEDRClusters(serial, n.clusters = 3, split.by = "sample", verbose = FALSE)$sedr_clusters))
})

test_that("the shipped Slurm template brews into a job script", {
  skip_if_not_installed("batchtools")
  tmpl <- system.file("batchtools", "slurm.tmpl", package = "SEDR")
  expect_true(nzchar(tmpl))
  reg <- suppressMessages(batchtools::makeRegistry(NA))
  suppressMessages(batchtools::batchMap(identity, 1:2, reg = reg))
  jc <- batchtools::makeJobCollection(1:2, reg = reg,
                                      resources = list(walltime = 5400, memory = 4000, ncpus = 2, partition = "short"))
  # The same brewing batchtools does before sbatch.
  script <- readLines(batchtools:::cfBrewTemplate(reg, batchtools:::cfReadBrewTemplate(tmpl), jc))
  expect_identical(script[1], "#!/bin/bash")
  expect_true(all(c("#SBATCH --time=90", "#SBATCH --mem=4000M", "#SBATCH --cpus-per-task=2",
                    "#SBATCH --partition=short", "export OMP_NUM_THREADS=2") %in% script))
  expect_false(any(grepl("--account", script)))
  expect_true(any(grepl(jc$uri, script, fixed = TRUE)))
})
