# Cohorts: one independent SEDR model per section of one object, trained on a
# BiocParallel engine (the calling session, local processes, or a cluster
# through batchtools), with every result written back into the one object.
#
# Each section travels to its worker as plain R data (sparse counts or an
# input matrix, coordinates, arguments, a seed) and comes back as plain R
# data; no libtorch handle ever crosses a process boundary. Errors are caught
# inside the worker and returned as data, so that a failing section is
# reported the same way on every engine and never loses the others.

#' Cohorts of sections: one model per section, on BiocParallel
#'
#' `RunSEDR(object, split.by = "sample", BPPARAM = ...)` trains one
#' independent SEDR model per section (the values of the metadata column
#' `split.by`) and writes all results into the one object, and
#' `SEDRClusters(object, split.by = "sample", ...)` clusters each section on
#' its own. This page describes how; the arguments are documented in
#' [RunSEDR()] and [SEDRClusters()].
#'
#' **Engines.** `BPPARAM` is any BiocParallel back-end:
#' `BiocParallel::SerialParam()` (the default: one section after another in
#' this session), `MulticoreParam(workers)` (forked processes, Linux and
#' macOS), `SnowParam(workers)` (new R processes) or `BatchtoolsParam()`
#' (jobs on Slurm, SGE, LSF, PBS ... through batchtools; a Slurm template
#' ships in `system.file("batchtools", "slurm.tmpl", package = "SEDR")`).
#' Each worker loads SEDR and receives only plain R data: the section's
#' counts (or input reduction), coordinates and the arguments. Every section
#' trains with `n.threads` threads, so a run uses up to
#' `workers x n.threads` cores: on a laptop use `n.threads = 1` with as many
#' workers as cores (a warning says when a local engine asks for more).
#' `MulticoreParam` forks this R session: once the session has trained with
#' `n.threads > 1`, libtorch's OpenMP (libgomp) threads do not survive the
#' fork and a forked worker that uses them can wait forever; use `SnowParam`
#' (new processes) in such a session.
#'
#' **Seeds.** Section `s` is trained with the seed
#' `FNV-1a-32("<seed.use>/<s>") mod (2^31 - 1)`: the 32-bit FNV-1a hash of
#' the UTF-8 string made of `seed.use`, a slash and the section name. It
#' depends on nothing else (not the engine, the number of workers, the order
#' in which sections finish, or the other sections), so with the same
#' `seed.use` and `n.threads` every engine gives bit-identical embeddings,
#' and a section (with its spots in the same order) keeps its result when
#' sections are added to or dropped from the cohort.
#' `SEDRCohortSeeds()` returns them. The caller's random number stream is
#' left as it was.
#'
#' **Results.** The reduction (Seurat) or `reducedDim` (SCE) holds every
#' spot's embedding, in the object's spot order. Its `misc` (Seurat) or
#' `metadata(x)$SEDR` (SCE) holds `split.by`; `sections`, one list per
#' finished section with its `params` (its seed in `params$seed.use`),
#' `losses`, `dec.q`, `features`, `moran` (with `moran.z`), `timings`, `spots`, and `elapsed` and
#' `cpu`, the wall and CPU seconds it took in its worker; `failed`, the error
#' message of each failed section; `losses`, all sections' loss histories
#' with a `section` column; `graph`, the block-diagonal spatial graph over
#' all spots (no edge across sections; used by [SEDRClusters()]); `timings`;
#' `params`, the cohort's settings (seed, seeds per section, engine).
#'
#' **Failures.** A section that fails (bad input such as too few spots,
#' out of memory, a worker that crashed) does not lose the others. With
#' `on.error = "error"` (default) RunSEDR signals an error of class
#' `sedr_error_sections` whose message names each failed section and why; the
#' condition carries `failed` (named messages) and `object` (the object with
#' the finished sections written in; failed sections' spots have `NA`
#' embeddings), so `obj <- tryCatch(RunSEDR(...), sedr_error_sections =
#' function(e) e$object)` keeps them. With `on.error = "warning"` the object
#' is returned with a warning of class `sedr_warning_sections`. When every
#' section fails the error has no `object`, and nothing is changed.
#'
#' @name SEDRCohorts
#' @seealso [RunSEDR()], [SEDRClusters()]
#' @examples
#' if (requireNamespace("BiocParallel", quietly = TRUE) &&
#'     requireNamespace("SeuratObject", quietly = TRUE)) {
#'   sims <- lapply(1:2, function(i) SimulateSpatialTissue(n.rows = 10, n.cols = 10,
#'                                                         n.genes = 150, seed = i))
#'   objs <- lapply(seq_along(sims), function(i) {
#'     o <- SimulationToSeurat(sims[[i]])
#'     o$sample <- paste0("slide", i)
#'     SeuratObject::RenameCells(o, add.cell.id = paste0("slide", i))
#'   })
#'   obj <- merge(objs[[1]], objs[[2]])
#'   obj <- RunSEDR(obj, split.by = "sample", BPPARAM = BiocParallel::SerialParam(),
#'                  epochs = 20, dec = FALSE, n.hvg = 100, npcs = 20, min.spots = 5,
#'                  coords = c("x", "y"), verbose = FALSE)
#'   names(SeuratObject::Misc(obj[["sedr"]])$sections)
#'   obj <- SEDRClusters(obj, n.clusters = 3, split.by = "sample", verbose = FALSE)
#'   table(obj$sample, obj$sedr_clusters)
#' }
NULL

#' Seeds of the sections of a cohort
#'
#' The seed each section is trained with by `RunSEDR(split.by = )`; see
#' [SEDRCohorts] for the rule.
#'
#' @param seed.use The cohort's seed (a whole number, as for [RunSEDR()]).
#' @param sections Section names.
#' @return An integer vector named by section.
#' @export
#' @examples
#' SEDRCohortSeeds(42, c("slide1", "slide2"))
SEDRCohortSeeds <- function(seed.use, sections) {
  seed.use <- check_seed(seed.use, null.ok = FALSE)
  sections <- as.character(sections)
  seeds <- vapply(sections, function(s) {
    as.integer(fnv1a32(paste0(as.character(seed.use), "/", s)) %% 2147483647)
  }, integer(1))
  stats::setNames(seeds, sections)
}

# The RunSEDR() arguments every section's worker receives, as the methods
# name them.
cohort_arg_names <- c("features", "k.neighbors", "mode", "epochs", "dec", "device", "n.threads",
                      "n.hvg", "npcs", "min.spots", "min.counts", "normalize", "moran.z", "options")

# 32-bit FNV-1a hash of a string's UTF-8 bytes, as a double in [0, 2^32).
# Exact in double precision: the product with the FNV prime 2^24 + 403 is
# taken modulo 2^32 in two parts that stay below 2^53.
fnv1a32 <- function(s) {
  h <- 2166136261
  for (b in as.integer(charToRaw(enc2utf8(s)))) {
    low <- h %% 256
    h <- h - low + bitwXor(as.integer(low), b)
    h <- ((h %% 256) * 16777216 + h * 403) %% 4294967296
  }
  h
}

# The section of each spot from a metadata column; a factor without NA.
cohort_sections <- function(md, split.by, where = "meta.data") {
  if (!is.character(split.by) || length(split.by) != 1 || is.na(split.by) || !split.by %in% colnames(md)) {
    sedr_abort(sprintf("must name one %s column holding the section of each spot.", where), arg = "split.by")
  }
  s <- md[[split.by]]
  if (anyNA(s)) {
    sedr_abort(sprintf("column \"%s\" has NA; give every spot a section (or subset the object first).", split.by),
               arg = "split.by")
  }
  s <- droplevels(as.factor(s))
  if (nlevels(s) < 1) sedr_abort(sprintf("column \"%s\" is empty.", split.by), arg = "split.by")
  if (any(levels(s) == "")) {
    sedr_abort(sprintf("column \"%s\" has an empty section name; name every section.", split.by), arg = "split.by")
  }
  s
}

check_bpparam <- function(BPPARAM) {
  if (!requireNamespace("BiocParallel", quietly = TRUE)) {
    sedr_abort("needs the BiocParallel package for split.by; install it (Bioconductor, or Debian's r-bioc-biocparallel).",
               kind = "dependency", arg = "BPPARAM")
  }
  BPPARAM <- BPPARAM %||% BiocParallel::SerialParam()
  if (!methods::is(BPPARAM, "BiocParallelParam")) {
    sedr_abort("must be a BiocParallel back-end, e.g. BiocParallel::SerialParam() or MulticoreParam(2).", arg = "BPPARAM")
  }
  BPPARAM
}

# Checks of the arguments every section shares, in the calling session, so
# that a bad argument is one immediate error rather than a failure of every
# section on the workers.
check_cohort_args <- function(args, group.by, seed.use) {
  if (!is.null(group.by)) {
    sedr_abort("cannot be combined with split.by: split.by trains one model per section, group.by one model over all (integration).",
               arg = "group.by")
  }
  if (args$mode != "clustering") {
    sedr_abort("works in clustering mode only; for denoising run RunSEDR(mode = \"imputation\") on each section.",
               arg = "split.by")
  }
  if (is.null(seed.use)) {
    sedr_abort("must be a number with split.by: each section's seed is derived from it.", arg = "seed.use")
  }
  check_seed(seed.use)
  if (!inherits(args$options, "sedr_options")) sedr_abort("must be made by SEDROptions().", arg = "options")
  check_count(args$n.threads, "n.threads", min = 1)
  check_count(args$k.neighbors, "k.neighbors", min = 1)
  check_device(args$device)
  match_choice(args$normalize, c("cpm", "log"), "normalize")
  check_moran_z(args$moran.z)
  invisible(TRUE)
}

# Local engines run all workers on this machine: warn when they would ask for
# more threads than it has cores.
check_oversubscription <- function(BPPARAM, n.threads) {
  local <- methods::is(BPPARAM, "MulticoreParam") || methods::is(BPPARAM, "SnowParam")
  if (!local) return(invisible())
  workers <- BiocParallel::bpnworkers(BPPARAM)
  cores <- available_cores()
  if (is.numeric(workers) && workers * n.threads > cores) {
    sedr_warn(sprintf("%d workers x %d threads (n.threads) exceed the %d cores of this machine; use n.threads = %d or fewer workers.",
                      workers, n.threads, cores, max(1L, cores %/% workers)), kind = "threads")
  }
  invisible()
}

# Trains one model per section on BPPARAM. `counts` (genes x spots) or
# `input` (spots x dims) and `coords` cover all spots; `sections` is a factor
# over the same spots; `args` are run_sedr()'s shared arguments. Returns the
# cohort's results, not yet written into any object.
run_cohort <- function(counts, input, coords, sections, args, seed.use, BPPARAM, verbose) {
  t0 <- proc.time()[["elapsed"]]
  spots <- if (!is.null(input)) rownames(input) else colnames(counts)
  names_s <- levels(sections)
  seeds <- SEDRCohortSeeds(seed.use, names_s)
  index <- split(seq_along(spots), sections)
  check_oversubscription(BPPARAM, args$n.threads)
  args$verbose <- FALSE
  # Tasks are made one at a time as the engine asks for them, so only the
  # sections in flight are copied.
  tasks <- function(todo) {
    i <- 0L
    function() {
      i <<- i + 1L
      if (i > length(todo)) return(NULL)
      s <- todo[i]
      idx <- index[[s]]
      list(section = s, seed = seeds[[s]], coords = coords[idx, , drop = FALSE],
           counts = if (is.null(counts)) NULL else counts[, idx, drop = FALSE],
           input = if (is.null(input)) NULL else input[idx, , drop = FALSE])
    }
  }
  # Results are collected here as they arrive (the REDUCE step runs in this
  # session), so an engine failure after some sections keeps those.
  got <- new.env(parent = emptyenv())
  collect <- function(acc, res) {
    s <- if (is.list(res) && is.character(res$section)) res$section else NA_character_
    if (is.na(s) || !s %in% names_s) return(acc)
    assign(s, res, envir = got)
    if (verbose) {
      done <- length(ls(got, all.names = TRUE))
      cli::cli_inform(if (isTRUE(res$ok)) {
        sprintf("Section %s (%d/%d): %d spots in %.1f s.", s, done, length(names_s),
                length(index[[s]]), res$elapsed)
      } else {
        sprintf("Section %s (%d/%d) failed: %s", s, done, length(names_s), res$message)
      })
    }
    acc
  }
  lib <- dirname(system.file(package = "SEDR"))
  run <- function(todo) {
    tryCatch({
      BiocParallel::bpiterate(tasks(todo), cohort_worker, args = args, lib = lib, BPPARAM = BPPARAM,
                              REDUCE = collect, init = NULL, reduce.in.order = FALSE)
      NULL
    }, error = function(e) conditionMessage(e))
  }
  engine_error <- run(names_s)
  if (!is.null(engine_error)) reset_multicore(BPPARAM)
  # Errors inside a section come back as data, so an engine error means a
  # worker died (a crash, the out-of-memory killer) or the engine itself
  # failed, and BiocParallel then drops the sections still in flight. Those
  # are run again one at a time, so that only the section that kills its
  # worker is lost.
  lost <- setdiff(names_s, ls(got, all.names = TRUE))
  why <- stats::setNames(character(0), character(0))
  if (!is.null(engine_error) || length(lost)) {
    engine_failures <- 0L
    for (s in lost) {
      # An engine that fails twice without ever returning a section (e.g. a
      # scheduler that cannot be reached) is not tried for every section.
      if (engine_failures >= 2L && !length(ls(got, all.names = TRUE))) {
        why[s] <- sprintf("not run: the engine failed (%s)", err %||% engine_error %||% "no result came back")
        next
      }
      # bplapply, not bpiterate, and the section checked: after a worker's
      # death BiocParallel's engines can hand back a stale result of another
      # section (then the call is repeated, at most twice more).
      for (attempt in 1:3) {
        err <- tryCatch({
          res <- BiocParallel::bplapply(list(tasks(s)()), cohort_worker, args = args, lib = lib, BPPARAM = BPPARAM)
          if (is.list(res[[1]]) && identical(res[[1]]$section, s)) collect(NULL, res[[1]])
          NULL
        }, error = function(e) conditionMessage(e))
        if (!is.null(err)) reset_multicore(BPPARAM)
        if (!is.null(err) || exists(s, envir = got, inherits = FALSE)) break
      }
      if (!is.null(err)) engine_failures <- engine_failures + 1L
      if (!exists(s, envir = got, inherits = FALSE)) {
        why[s] <- sprintf("no result came back from its worker (it crashed or was killed, e.g. for memory, or the engine failed)%s",
                          if (is.null(err)) "" else paste0("; the engine said: ", err))
        if (verbose) cli::cli_inform(sprintf("Section %s failed: %s", s, why[[s]]))
      }
    }
  }
  results <- mget(intersect(names_s, ls(got, all.names = TRUE)), envir = got)
  ok <- vapply(results, function(r) isTRUE(r$ok), logical(1))
  failed <- vapply(results[!ok], function(r) as.character(r$message %||% "unknown error")[1], character(1))
  failed <- c(failed, why)
  failed <- failed[intersect(names_s, names(failed))]
  list(results = results[ok], failed = failed, index = index, spots = spots, coords = coords, seeds = seeds,
       sections = names_s, elapsed = proc.time()[["elapsed"]] - t0,
       engine = class(BPPARAM)[1], workers = BiocParallel::bpnworkers(BPPARAM))
}

# After a forked worker dies, BiocParallel's MulticoreParam stops with an
# error while the other workers may still be training; their results (or
# NULL, if they are killed) would then arrive in the next call on this
# engine, which fails in turn ("wrong args for environment subassignment").
# Waiting for those orphaned children (at most one section's training) and
# discarding what they return makes the next call start clean.
reset_multicore <- function(BPPARAM) {
  if (!methods::is(BPPARAM, "MulticoreParam") || .Platform$OS.type == "windows") return(invisible())
  tryCatch(suppressWarnings(parallel::mccollect(wait = TRUE)), error = function(e) NULL)
  invisible()
}

# What runs on a worker (it may be another process or another machine): load
# SEDR, train the section, and return plain R data. Its environment is the
# global one so that shipping it to a worker does not ship (and need) the
# SEDR namespace before the package is loaded there; everything it needs is
# in its arguments.
cohort_worker <- function(task, args, lib) {
  tryCatch({
    if (!isNamespaceLoaded("SEDR")) {
      loadNamespace("SEDR", lib.loc = unique(c(lib[dir.exists(lib)], .libPaths())))
    }
    get("cohort_section", envir = asNamespace("SEDR"))(task, args)
  }, error = function(e) {
    list(section = task$section, ok = FALSE, message = conditionMessage(e), class = class(e), elapsed = NA_real_)
  })
}
environment(cohort_worker) <- globalenv()

# One section on the worker. The seed and the generator's kind are fixed
# here, whatever the engine set up (BiocParallel's workers use L'Ecuyer
# streams), and the caller's stream is put back afterwards (SerialParam runs
# in the user's session).
cohort_section <- function(task, args) {
  t0 <- proc.time()
  res <- tryCatch({
    fit <- .with_seed(task$seed, do.call(run_sedr, c(
      list(counts = task$counts, input = task$input, coords = task$coords, group = NULL,
           seed.use = task$seed), args)))
    list(ok = TRUE, result = fit[c("embedding", "dec.q", "losses", "graph", "features", "moran", "params",
                                   "timings", "device")])
  }, error = function(e) {
    list(ok = FALSE, message = conditionMessage(e), class = class(e))
  })
  # Wall and CPU seconds of this section in its worker (the CPU time shows
  # what a section costs when the wall time is inflated by a busy machine).
  d <- proc.time() - t0
  c(list(section = task$section), res,
    list(elapsed = d[["elapsed"]], cpu = d[["user.self"]] + d[["sys.self"]]))
}

# The cohort's results as one embedding (all spots, NA rows for failed
# sections), one block-diagonal graph and the per-section records.
assemble_cohort <- function(co, split.by, key) {
  spots <- co$spots
  n <- length(spots)
  dims <- NULL
  gi <- gj <- integer()
  sections <- list()
  losses <- list()
  emb <- NULL
  for (s in names(co$results)) {
    r <- co$results[[s]]$result
    idx <- co$index[[s]]
    if (is.null(emb)) {
      dims <- ncol(r$embedding)
      emb <- matrix(NA_real_, n, dims, dimnames = list(spots, paste0(key, seq_len(dims))))
    }
    emb[idx, ] <- r$embedding
    g <- methods::as(r$graph, "TsparseMatrix")
    gi <- c(gi, idx[g@i + 1L])
    gj <- c(gj, idx[g@j + 1L])
    sections[[s]] <- c(r[c("params", "losses", "dec.q", "features", "moran", "timings", "device")],
                       list(spots = spots[idx], elapsed = co$results[[s]]$elapsed,
                            cpu = co$results[[s]]$cpu))
    losses[[s]] <- cbind(section = s, r$losses)
  }
  graph <- Matrix::sparseMatrix(i = gi, j = gj, x = rep(1, length(gi)), dims = c(n, n),
                                dimnames = list(spots, spots))
  graph <- methods::as(methods::as(graph, "CsparseMatrix"), "generalMatrix")
  losses <- do.call(rbind, unname(losses))
  misc <- list(split.by = split.by, sections = sections, failed = co$failed, losses = losses,
               graph = graph, coords = co$coords, dec.q = NULL,
               timings = c(total = co$elapsed),
               params = list(split.by = split.by, seed.use = co$seed.use, section.seeds = co$seeds,
                             engine = co$engine, workers = co$workers, n.threads = co$n.threads),
               versions = sedr_versions())
  list(embedding = emb, misc = misc)
}

# The cohort run shared by the Seurat and SCE methods: checks, training,
# assembly. Stops (nothing changed) when every section failed.
cohort_fit <- function(counts, input, coords, sections, args, seed.use, group.by, BPPARAM,
                       split.by, key, verbose) {
  check_cohort_args(args, group.by, seed.use)
  co <- run_cohort(counts, input, coords, sections, args, seed.use, BPPARAM, verbose)
  co$seed.use <- seed.use
  co$n.threads <- args$n.threads
  if (!length(co$results)) {
    stop(sections_condition(co$failed, NULL, length(co$sections), all = TRUE))
  }
  assemble_cohort(co, split.by, key)
}

# The error (or warning) that names the failed sections.
sections_condition <- function(failed, object, n.sections, all = FALSE, warning = FALSE) {
  lines <- sprintf("  %s: %s", names(failed), gsub("\n", " ", failed))
  msg <- sprintf("%s of %d section%s failed%s:\n%s",
                 if (all) "All" else as.character(length(failed)), n.sections,
                 if (n.sections == 1) "" else "s",
                 if (all) "; the object is unchanged" else
                   if (warning) "; the others are in the object" else
                     "; the others are in this condition's `object` (tryCatch(..., sedr_error_sections = function(e) e$object))",
                 paste(lines, collapse = "\n"))
  kind <- if (warning) "warning" else "error"
  structure(class = c(paste0("sedr_", kind, "_sections"), paste0("sedr_", kind), kind, "condition"),
            list(message = msg, call = NULL, failed = failed, object = object))
}

# Returns `object` or signals the failures of some sections, as asked.
cohort_finish <- function(object, misc, on.error) {
  failed <- misc$failed
  if (!length(failed)) return(object)
  n <- length(misc$sections) + length(failed)
  if (on.error == "warning") {
    warning(sections_condition(failed, NULL, n, warning = TRUE))
    return(object)
  }
  stop(sections_condition(failed, object, n))
}

# SEDRClusters(split.by = ): each section clustered on its own, with its own
# spatial graph (the block of the cohort's graph) and DEC assignment. `args`
# are the other arguments the user gave, passed on unchanged.
cluster_sections <- function(emb, graph, q_of, sections, args, verbose, coords = NULL) {
  labels <- rep(NA_character_, nrow(emb))
  for (s in levels(sections)) {
    idx <- which(sections == s)
    done <- stats::complete.cases(emb[idx, , drop = FALSE])
    if (!all(done)) {
      if (any(done)) sedr_abort(sprintf("section \"%s\" is only partly embedded.", s), arg = "split.by")
      if (verbose) cli::cli_inform(sprintf("Section %s: no embedding (its training failed), left NA.", s))
      next
    }
    res <- structure(list(embedding = emb[idx, , drop = FALSE], dec.q = q_of(s, rownames(emb)[idx]),
                          graph = if (!is.null(graph)) graph[idx, idx, drop = FALSE],
                          coords = if (!is.null(coords)) coords[idx, , drop = FALSE]),
                     class = "sedr_result")
    lab <- do.call(SEDRClusters, c(list(res), args))
    labels[idx] <- as.character(lab)
    if (verbose) cli::cli_inform(sprintf("Section %s: %d spots, %d clusters.", s, length(idx), nlevels(lab)))
  }
  lev <- unique(labels[!is.na(labels)])
  num <- suppressWarnings(as.numeric(lev))
  lev <- if (!anyNA(num)) lev[order(num)] else sort(lev)
  stats::setNames(factor(labels, levels = lev), rownames(emb))
}

# SEDRClusters(split.by = ) on a Seurat object or SCE: labels per section
# written into the object's metadata.
cluster_split <- function(object, split.by, reduction, col.name, args, verbose, coords = NULL) {
  args$verbose <- verbose
  if (methods::is(object, "Seurat")) {
    if (!reduction %in% SeuratObject::Reductions(object)) {
      sedr_abort(sprintf("\"%s\" is not a reduction of this object; run RunSEDR() first.", reduction), arg = "reduction")
    }
    sections <- cohort_sections(object[[]], split.by)
    emb <- SeuratObject::Embeddings(object, reduction)
    misc <- SeuratObject::Misc(object[[reduction]])
  } else if (methods::is(object, "SingleCellExperiment")) {
    rd <- if (reduction == "sedr") "SEDR" else reduction
    if (!rd %in% SingleCellExperiment::reducedDimNames(object)) {
      sedr_abort(sprintf("\"%s\" is not a reducedDim of this object; run RunSEDR() first.", rd), arg = "reduction")
    }
    sections <- cohort_sections(as.data.frame(SummarizedExperiment::colData(object)), split.by, where = "colData")
    emb <- SingleCellExperiment::reducedDim(object, rd)
    misc <- S4Vectors_metadata(object)$SEDR
  } else {
    sedr_abort("works on a Seurat object or a SingleCellExperiment (a metadata column names the sections).", arg = "split.by")
  }
  # The DEC assignment of a cohort is per section; of a single model, its rows.
  q_of <- function(s, spots) {
    q <- if (!is.null(misc$sections)) misc$sections[[s]]$dec.q else misc$dec.q
    if (is.null(q)) NULL else q[spots, , drop = FALSE]
  }
  graph <- misc$graph
  if (!is.null(graph) && nrow(graph) != nrow(emb)) graph <- NULL
  coords <- coords %||% misc$coords
  if (!is.null(coords)) coords <- refine_coords(coords, rownames(emb), nrow(emb))
  labels <- cluster_sections(emb, graph, q_of, sections, args, verbose, coords)
  if (methods::is(object, "Seurat")) {
    object[[col.name]] <- labels
  } else {
    SummarizedExperiment::colData(object)[[col.name]] <- labels
  }
  object
}

# The metadata column of sections when `reduction` came from
# RunSEDR(split.by = ), else NULL: independent models' embeddings are not in
# one space, so SEDRClusters() clusters them per section by default.
cohort_split_by <- function(object, reduction) {
  if (!is.character(reduction) || length(reduction) != 1 || is.na(reduction)) return(NULL)
  misc <- if (methods::is(object, "Seurat")) {
    if (reduction %in% SeuratObject::Reductions(object)) SeuratObject::Misc(object[[reduction]])
  } else if (methods::is(object, "SingleCellExperiment")) {
    rd <- if (reduction == "sedr") "SEDR" else reduction
    if (rd %in% SingleCellExperiment::reducedDimNames(object)) S4Vectors_metadata(object)$SEDR
  }
  if (is.list(misc) && is.character(misc$split.by) && !is.null(misc$sections)) misc$split.by else NULL
}
