#' Run SEDR: a spatially aware embedding of spatial transcriptomics data
#'
#' Trains the SEDR model (a masked deep autoencoder of expression plus a
#' variational graph autoencoder over the spatial neighbour graph, refined by
#' deep embedded clustering; Xu et al., Genome Medicine 2024) and returns its
#' embedding. Follow with [SEDRClusters()] for spatial domains.
#'
#' **Input.** By default the reference recipe turns raw counts into the
#' model's input: keep genes detected in >= `min.spots` spots with >=
#' `min.counts` counts; counts per million (no log; `normalize = "log"` for
#' log-normalisation instead); the `n.hvg` most variable
#' genes (Seurat v3 VST on the raw counts; optionally only those with a
#' spatial pattern, `moran.z`); z-score every gene (no clipping);
#' PCA to `npcs` components (seeded randomized SVD in the Rust core). The
#' counts stay sparse throughout: the z-scoring is implicit in a sparse PCA,
#' so the spots x genes matrix is never dense (a million spots x 2000 genes
#' fits in a few GB). Pass `reduction` to use an existing reduction instead
#' (e.g. your own PCA). `mode = "imputation"` trains on the scaled genes
#' themselves (dense; no PCA) and also returns the denoised expression; its
#' default MLP decoder and `options = SEDROptions(decoder = "gcn")` (about 3x
#' faster) both beat a spatial-neighbour mean on held-out counts
#' (`bench/README.md`).
#'
#' **Memory.** Before training (and, in clustering mode, before the
#' preprocessing), the peak memory of training is estimated and compared
#' with the available memory (`MemAvailable` on Linux, or a cgroup limit);
#' if it does not fit, RunSEDR stops with an error of class
#' `sedr_error_memory` that gives both numbers, before anything is modified.
#' `options(SEDR.memory.limit = <bytes>)` sets the limit instead.
#'
#' **Reproducibility.** `seed.use` (default 42) seeds R's generator, from
#' which one integer seed is drawn for everything in the Rust core (weights,
#' masks, dropout, negative edges, k-means). On the CPU the same seed and
#' the same `n.threads` give an identical embedding on the same machine
#' type (another processor may take other matrix-product kernels, whose last
#' digits training amplifies); a different thread count changes the order
#' of floating-point sums and so the last digits, which training can
#' amplify. That is why the default is
#' one thread (at DLPFC size two threads save about 10 % of the training
#' time; `bench/README.md`), and why the thread count used is stored with
#' the result (`params$n.threads`). On CUDA results may differ in the last
#' digits. `seed.use = NULL` leaves R's generator alone (Seurat's
#' convention); other values must be whole numbers in R's integer range.
#'
#' @param object A `Seurat` object, a `SingleCellExperiment` (or
#'   `SpatialExperiment`), a matrix (`default` method), or a list of count
#'   matrices, one per section (`list` method).
#' @param ... Arguments passed to the methods. Unknown arguments are an error.
#' @return For a `Seurat` object: the object with a `DimReduc` named
#'   `reduction.name` (default `"sedr"`, key `"SEDR_"`) whose `misc` holds the
#'   parameters, seed, versions, loss history (`misc$losses`) and the DEC soft
#'   assignment (`misc$dec.q`), and the spatial graph (`misc$graph`, used by
#'   `SEDRClusters(smooth = )`), the model's genes (`misc$features`) and,
#'   with `moran.z`, every variable gene's Moran's I (`misc$moran`); with
#'   `mode = "imputation"` also an assay
#'   (`assay.name`, default `"SEDR"`) with the denoised expression in `data`
#'   (expression scale, CPM) and its z-scores in `scale.data`. The default
#'   assay is not changed. For a `SingleCellExperiment`: `reducedDim(x, "SEDR")`
#'   and `metadata(x)$SEDR`. For a matrix: a list of class `sedr_result`.
#'   On error the input object is not modified.
#' @seealso [SEDRClusters()], [SEDROptions()], [BuildSpatialGraph()].
#' @export
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 200)
#' res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 20, dec = FALSE,
#'                n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE)
#' dim(res$embedding)
#' res
#' head(res$losses, 3)
#'
#' # Seurat: counts in the default assay, coordinates in meta.data x and y.
#' if (requireNamespace("SeuratObject", quietly = TRUE)) {
#'   obj <- SimulationToSeurat(sim)
#'   obj <- RunSEDR(obj, epochs = 20, dec = FALSE, n.hvg = 100, npcs = 20,
#'                  min.spots = 5, verbose = FALSE)
#'   obj <- SEDRClusters(obj, n.clusters = 5, verbose = FALSE)
#'   table(obj$domain, obj$sedr_clusters)
#' }
#'
#' # Sections of different sizes and genes, mixed: a list of count matrices.
#' a <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 120, seed = 1)
#' b <- SimulateSpatialTissue(n.rows = 8, n.cols = 10, n.genes = 120, seed = 2)
#' two <- RunSEDR(list(a = a$counts, b = b$counts[-(1:10), ]),
#'                coords = list(a = a$coords, b = b$coords), integrate = "soft",
#'                epochs = 20, n.hvg = 100, npcs = 20, min.spots = 5, verbose = FALSE)
#' table(two$section)
#'
#' # Denoising: the reconstruction of the scaled genes, back on the CPM scale.
#' imp <- RunSEDR(sim$counts, coords = sim$coords, mode = "imputation",
#'                epochs = 20, n.hvg = 50, min.spots = 5, verbose = FALSE)
#' dim(imp$denoised$expression)
RunSEDR <- function(object, ...) {
  UseMethod("RunSEDR")
}

#' @rdname RunSEDR
#' @param coords Spatial coordinates. For the `default` method, a numeric
#'   matrix (spots x 2 or 3) with spot names as row names; for a list of
#'   sections, a list of such matrices, one per section. For a `Seurat`
#'   object, `NULL` (tissue coordinates of the image if there is one, else the
#'   meta.data columns `x` and `y`), two or three meta.data column names, or
#'   a matrix. For a `SingleCellExperiment`, `NULL` (`spatialCoords()` of a
#'   `SpatialExperiment`, else colData columns `x`, `y`), column names, or a
#'   matrix.
#' @param features Genes to use instead of the most variable ones.
#' @param k.neighbors Neighbours per spot in the spatial graph (12).
#' @param group.by Sections: for a `Seurat`/`SingleCellExperiment` a metadata
#'   column name, for the `default` method a vector with one label per spot
#'   (for a list of sections, the list names). The graph then has no edge
#'   across sections (multi-section integration); see `integrate` for how the
#'   sections are mixed. Only the genes with counts in every section are used
#'   (a gene absent from one section's panel, or all zero there after a
#'   merge, is dropped), with a message of class
#'   `sedr_message_shared_genes` saying how many (silence it with
#'   `suppressMessages(classes = "sedr_message_shared_genes")`); fewer than
#'   10 shared genes is an error naming the section with the fewest.
#' @param integrate With `group.by` (clustering mode): `"none"` (default)
#'   trains one model on the sections as they are (each section then keeps
#'   its own region of the embedding). `"mnn"` mixes the sections before
#'   training: the model input (the joint PCA) is centred per section and
#'   corrected by mutual nearest neighbours between sections (matched on the
#'   spatially smoothed input). `"soft"` mixes them after training: the
#'   embedding is corrected as Harmony does (soft k-means with a penalty on
#'   clusters that miss a section, then a per-cluster ridge regression on the
#'   sections, iterated; the SEDR authors' recipe is Harmony on the SEDR
#'   embedding), written in this package, so no other package is needed,
#'   followed by one mutual-nearest-neighbour pass on the corrected
#'   embedding with a narrow kernel (which aligns what a per-cluster shift
#'   cannot: each section's own spread within a domain). Either way one
#'   [SEDRClusters()] call can find the same domain in every section. Over
#'   10 seeds `"soft"` meets the mixing targets on DLPFC 151673 + 151510 (two
#'   donors: median iLISI 1.00 to 1.60, cLISI 1.14, joint-domain ARIs
#'   0.49 / 0.49 against single-section 0.47 / 0.45) and on simulated
#'   sections with a batch shift (iLISI 1.81 for a pair, 1.94 of 3 for a
#'   triple, median joint-domain ARI above 0.9 in every section); `"mnn"` mixes the
#'   simulated sections more but the two donors less (1.38) and blurs the
#'   layers (cLISI 1.20). Neither is the default, because the joint-domain
#'   ARI of 151673 drops (median 0.51 to 0.49 with `"soft"`, 0.40 with
#'   `"mnn"`) while that of 151510 rises. `"soft"` costs about 20 s on
#'   8,000 spots. Ignored without `group.by` and in imputation mode.
#'   Measured in `bench/README.md` ("Integration").
#' @param mode `"clustering"` (default) or `"imputation"` (denoising).
#' @param epochs Pre-training epochs. `NULL` (default): the mode's, 100 for
#'   clustering and 200 for imputation (the reference: 200; see
#'   [SEDROptions()] `dec.epochs` for why).
#' @param dec Run the deep-embedded-clustering phase (`TRUE`; another
#'   `dec.epochs` epochs, see [SEDROptions()]). Defaults to `FALSE` when
#'   `group.by` is given, as in the reference's integration recipe.
#' @param device `"auto"` (CUDA when available), `"cpu"`, `"cuda"` or `"cuda:N"`.
#' @param n.threads CPU threads for libtorch and the neighbour search (1).
#'   More than the machine's cores is capped at the core count, with a
#'   warning of class `sedr_warning_threads`.
#' @param seed.use Random seed (42), a whole number in R's integer range;
#'   `NULL` does not set one.
#' @param n.hvg Number of highly variable genes (2000).
#' @param npcs Principal components fed to the model (200).
#' @param min.spots,min.counts Gene filter of the recipe (50 spots, 10 counts).
#' @param normalize How the recipe normalises each spot by its library size
#'   (the counts of all kept genes) before z-scoring: `"cpm"` (default),
#'   counts per million without a log, as the reference SEDR; or `"log"`,
#'   Seurat's LogNormalize, `log1p(1e4 * counts / library size)` (scanpy's
#'   `normalize_total(1e4)` + `log1p`). The variable genes are chosen on the
#'   raw counts either way. With `"log"` the imputed `expression` is on that
#'   log scale.
#' @param moran.z A spatial gene filter for the recipe (clustering mode,
#'   variable genes only), off by default (`NULL`, every variable gene, as
#'   the reference). A number keeps, of the `n.hvg` variable genes, those
#'   whose Moran's I on the spatial graph has a z-score (normality
#'   assumption) of at least `moran.z`, and at least 10 of them: genes whose
#'   neighbouring spots are no more alike than random spots are noise at the
#'   resolution of the data. Each gene's I and z are returned (`moran`; with
#'   the other results for Seurat and Bioconductor objects). Genes named in
#'   `features`, and imputation's genes, are never filtered. Over 60 seeds
#'   `moran.z = 2` raised the simulated tissues' median ARI (layers 0.58 to
#'   0.79, patches 0.51 to 0.53) and left the real sections level (DLPFC and
#'   STARmap within 0.01), but lowered the worst run, so it is not the
#'   default (`bench/README.md`, "A spatial gene filter").
#' @param options Advanced model settings, see [SEDROptions()].
#' @param verbose Show stage messages and a progress bar.
#' @export
RunSEDR.default <- function(object, coords, features = NULL, k.neighbors = 12, group.by = NULL,
                            integrate = "none", mode = c("clustering", "imputation"), epochs = NULL, dec = NULL,
                            device = "auto", n.threads = 1, seed.use = 42, n.hvg = 2000,
                            npcs = 200, min.spots = 50, min.counts = 10, normalize = "cpm", moran.z = NULL,
                            options = SEDROptions(), verbose = TRUE, ...) {
  check_dots(...)
  if (missing(coords)) {
    sedr_abort("is required for a matrix: a spots x 2 (or 3) numeric matrix with spot names as row names.",
               arg = "coords")
  }
  mode <- match_choice(mode, c("clustering", "imputation"), "mode")
  counts <- as_counts(object, coords)
  coords <- check_coords(coords)
  coords <- align_coords(coords, colnames(counts))
  res <- run_sedr(counts = counts, input = NULL, coords = coords, group = group.by,
                  features = features, k.neighbors = k.neighbors, mode = mode, epochs = epochs,
                  dec = dec, device = device, n.threads = n.threads, seed.use = seed.use,
                  n.hvg = n.hvg, npcs = npcs, min.spots = min.spots, min.counts = min.counts,
                  normalize = normalize, moran.z = moran.z, options = options, verbose = verbose, integrate = integrate)
  structure(res, class = "sedr_result")
}

#' @export
#' @method print sedr_result
print.sedr_result <- function(x, ...) {
  cat(sprintf("<SEDR result> %d spots x %d dims (%s mode, %s, %d epochs)\n",
              nrow(x$embedding), ncol(x$embedding), x$params$mode, x$device, nrow(x$losses)))
  invisible(x)
}

# Counts (genes x spots dgCMatrix) from a matrix in either orientation.
as_counts <- function(object, coords) {
  if (!((is.matrix(object) && is.numeric(object)) || methods::is(object, "dMatrix"))) {
    sedr_abort("must be a numeric matrix (genes x spots or spots x genes), a Seurat object or a SingleCellExperiment.",
               arg = "object")
  }
  if (length(dim(object)) != 2 || any(dim(object) == 0)) sedr_abort("is empty.", arg = "object")
  n_spots <- if (is.matrix(coords) || is.data.frame(coords)) nrow(coords) else NA
  spots <- rownames(coords)
  by_name_cols <- !is.null(spots) && !is.null(colnames(object)) && all(spots %in% colnames(object))
  by_name_rows <- !is.null(spots) && !is.null(rownames(object)) && all(spots %in% rownames(object))
  if (by_name_rows && !by_name_cols || (!by_name_cols && !is.na(n_spots) && nrow(object) == n_spots && ncol(object) != n_spots)) {
    object <- Matrix::t(object)
  }
  if (is.null(colnames(object))) {
    colnames(object) <- rownames(coords) %||% paste0("spot", seq_len(ncol(object)))
  }
  if (is.null(rownames(object))) rownames(object) <- paste0("gene", seq_len(nrow(object)))
  methods::as(methods::as(object, "CsparseMatrix"), "generalMatrix")
}

# Coordinates in the order of `spots`.
align_coords <- function(coords, spots, arg = "coords") {
  if (is.null(rownames(coords))) {
    if (nrow(coords) != length(spots)) {
      sedr_abort(sprintf("has %d rows but there are %d spots; give one row per spot (with spot names as row names).",
                         nrow(coords), length(spots)), arg = arg)
    }
    rownames(coords) <- spots
    return(coords)
  }
  missing <- setdiff(spots, rownames(coords))
  if (length(missing)) {
    sedr_abort(sprintf("has no row for %d spot(s) (e.g. \"%s\"); its row names must be the spot names.",
                       length(missing), missing[1]), arg = arg)
  }
  coords[spots, , drop = FALSE]
}

check_dots <- function(...) {
  dots <- list(...)
  if (length(dots)) {
    nm <- names(dots)
    nm[is.null(nm) | nm == ""] <- "<unnamed>"
    sedr_abort(sprintf("unknown argument(s): %s; see ?RunSEDR (advanced settings go in options = SEDROptions(...)).",
                       paste(nm, collapse = ", ")), arg = "...")
  }
}


check_device <- function(device) {
  if (!is.character(device) || length(device) != 1 || is.na(device) ||
      !grepl("^(cpu|auto|cuda|cuda:[0-9]+)$", device)) {
    sedr_abort("must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\".", arg = "device")
  }
  if (startsWith(device, "cuda") && !isTRUE(SEDRBackendInfo()$cuda_available)) {
    sedr_abort(sprintf("\"%s\" was requested but no CUDA device is available; use device = \"cpu\" or \"auto\".", device),
               kind = "device", arg = "device")
  }
  device
}

check_counts_values <- function(counts) {
  # One pass over the values in the Rust core (no per-entry temporaries).
  pr <- unwrap_rust(.Call(wrap__sedr_count_problems, counts@p, counts@i, counts@x, nrow(counts)))
  if (pr$non_finite) sedr_abort("contains NA, NaN or Inf counts; remove or fix them.", arg = "object")
  if (pr$negative) sedr_abort("contains negative values; raw counts (>= 0) are needed.", arg = "object")
  if (pr$non_integer) {
    sedr_abort("contains non-integer values; the built-in recipe needs raw counts. Pass normalised data through `reduction`, or round it.",
               arg = "object")
  }
  zero <- pr$empty + 1L
  if (length(zero)) {
    sedr_abort(sprintf("has %d spot(s) with no counts (e.g. \"%s\"); remove them first.",
                       length(zero), colnames(counts)[zero[1]]), arg = "object")
  }
  if (anyDuplicated(colnames(counts))) sedr_abort("has duplicated spot names; make them unique.", arg = "object")
  if (anyDuplicated(rownames(counts))) sedr_abort("has duplicated gene names; make them unique.", arg = "object")
}

# R's garbage given back between stages of a large run (n spots), before the
# Rust core allocates outside R's heap: at a million spots it holds GBs of
# copies. Below 100,000 spots the memory is small and a full collection
# would only cost time.
collect_if_large <- function(n) if (n >= 1e5) invisible(gc(verbose = FALSE))

# The shared engine of all methods. `counts` (genes x spots) feeds the recipe;
# `input` (spots x dims) is an existing reduction. Returns a plain list.
run_sedr <- function(counts, input, coords, group, features, k.neighbors, mode, epochs, dec,
                     device, n.threads, seed.use, n.hvg, npcs, min.spots, min.counts,
                     options, verbose, integrate = "none", normalize = "cpm", moran.z = NULL) {
  timings <- c()
  tic <- function() proc.time()[["elapsed"]]
  say <- function(...) if (verbose) cli::cli_inform(sprintf(...))
  if (!inherits(options, "sedr_options")) sedr_abort("must be made by SEDROptions().", arg = "options")
  integrate <- match_choice(integrate, c("none", "mnn", "soft"), "integrate")
  normalize <- match_choice(normalize, c("cpm", "log"), "normalize")
  check_moran_z(moran.z)
  n.threads <- check_threads(n.threads)
  k.neighbors <- check_count(k.neighbors, "k.neighbors", min = 1)
  device <- check_device(device)
  if (is.null(dec)) dec <- is.null(group) && mode == "clustering"
  if (!isTRUE(dec) && !isFALSE(dec)) sedr_abort("must be TRUE, FALSE or NULL.", arg = "dec")
  epochs <- check_count(epochs %||% default_epochs(mode), "epochs", min = 1)
  options$dec.epochs <- options$dec.epochs %||% default_epochs(mode)
  seed.use <- check_seed(seed.use)
  if (!is.null(seed.use)) set.seed(seed.use)
  seed <- sample.int(.Machine$integer.max, 1)
  spots <- if (!is.null(input)) rownames(input) else colnames(counts)
  n <- length(spots)
  if (n < 2) sedr_abort("has fewer than 2 spots.", arg = "object")
  group_int <- check_group(group, n, arg = "group.by")
  if (!is.null(group_int) && any(tabulate(group_int + 1L) < 2)) {
    single <- levels(factor(group))[tabulate(group_int + 1L) < 2]
    sedr_abort(sprintf("section \"%s\" has a single spot; drop it or merge it with another section.", single[1]),
               arg = "group.by")
  }
  check_section_sizes(group_int, n, k.neighbors)
  if (dec && options$dec.clusters > n) {
    sedr_abort(sprintf("(%d) exceeds the number of spots (%d).", options$dec.clusters, n), arg = "dec.clusters")
  }

  # Where the model will live, for the memory guard.
  train_device <- if (device == "auto") (if (isTRUE(SEDRBackendInfo()$cuda_available)) "cuda" else "cpu") else device
  mixes <- !is.null(group_int) && max(group_int) > 0 && mode == "clustering"
  # The native recipe writes the PCs straight into the trainer's float32
  # input, unless R needs them (integrate = "mnn" corrects them in R).
  direct_input <- .native_recipe() && !(integrate == "mnn" && mixes)
  # A first memory check before the (long) preprocessing, with what is known
  # now: a lower bound of the graph (n x k) and at most npcs / n.hvg inputs.
  if (is.null(input) && mode == "clustering" && is.numeric(npcs) && length(npcs) == 1 && is.finite(npcs)) {
    check_memory(n, nrow(counts), min(npcs, nrow(counts), n - 1), n * k.neighbors, mode, train_device,
                 options = options, dec = dec, input = if (direct_input) "float32" else "doubles")
  }

  # The counts are checked before anything is built from them or the coordinates.
  if (is.null(input)) check_counts_values(counts)

  # 1. Graph. It comes first: the recipe's spatial gene filter (`moran.z`)
  # scores the variable genes on it.
  t0 <- tic()
  graph <- BuildSpatialGraph(coords, k.neighbors = k.neighbors, group = group, n.threads = n.threads)
  timings["graph"] <- tic() - t0
  say("Spatial graph: %d spots, mean degree %.1f%s.", n, Matrix::nnzero(graph) / n,
      if (is.null(group)) "" else sprintf(", %d sections, no edge across them", length(unique(group))))

  # 2. Model input. Clustering: the sparse recipe (native: its passes in the
  # Rust core, see .preprocess_native) and a sparse PCA (the spots x genes
  # matrix is never dense). Imputation trains on the scaled genes themselves,
  # which are dense (the R recipe). With `direct_input` the PCs come back as
  # the trainer's input (`x_handle`); `x` holds R's copy otherwise.
  t0 <- tic()
  prep <- NULL
  x <- x_handle <- NULL
  if (is.null(input)) {
    all_genes <- rownames(counts)
    if (!is.null(group_int) && max(group_int) > 0) {
      counts <- shared_genes(counts, group_int, levels(factor(group)))
    }
    dense <- mode == "imputation"
    if (mode == "clustering") npcs <- check_count(npcs, "npcs", min = 2)
    # The spatial gene filter scores the variable genes of the model input;
    # genes the user names, and imputation's genes, are all kept.
    recipe <- function(counts, n.hvg, min.spots, min.counts, moran) {
      if (!dense && .native_recipe()) {
        .preprocess_native(counts, n.hvg = n.hvg, min.spots = min.spots, min.counts = min.counts,
                           npcs = npcs, seed = seed, n.threads = n.threads, normalize = normalize,
                           as.input = direct_input, moran = moran)
      } else {
        .preprocess_counts(counts, n.hvg = n.hvg, min.spots = min.spots, min.counts = min.counts,
                           dense = dense, normalize = normalize, moran = moran, n.threads = n.threads)
      }
    }
    if (!is.null(features)) {
      features <- unique(as.character(features))
      unknown <- setdiff(features, rownames(counts))
      if (length(unknown) && !is.null(group_int) && all(unknown %in% all_genes)) {
        sedr_abort(sprintf("has %d gene(s) without counts in some section (e.g. \"%s\"); with several sections only the genes detected in every section can be used.",
                           length(unknown), unknown[1]), arg = "features")
      }
      if (length(unknown)) {
        sedr_abort(sprintf("has %d gene(s) not in the data (e.g. \"%s\").", length(unknown), unknown[1]), arg = "features")
      }
      if (length(features) < 2) sedr_abort("needs at least 2 genes.", arg = "features")
      counts <- counts[features, , drop = FALSE]
      prep <- recipe(counts, n.hvg = length(features), min.spots = 0, min.counts = 0, moran = NULL)
    } else {
      n.hvg <- check_count(n.hvg, "n.hvg", min = 2)
      moran <- if (!dense && !is.null(moran.z)) list(graph = graph, z = moran.z)
      prep <- recipe(counts, n.hvg = n.hvg, min.spots = min.spots, min.counts = min.counts, moran = moran)
    }
    rm(counts)
    if (mode == "clustering") {
      if (is.null(prep$pcs)) {
        # Give the recipe's temporaries back before the Rust core allocates
        # outside R's heap (GBs at a million spots).
        collect_if_large(n)
        prep$pcs <- sedr_pca_sparse(prep$norm, center = prep$center,
                                    scale = ifelse(prep$constant, 0, prep$scale), npcs = npcs,
                                    seed = seed, device = "cpu", n.threads = n.threads)
        prep$norm <- NULL
      }
      x_handle <- prep$input
      input_dims <- prep$input.dims
      if (is.null(x_handle)) {
        x <- prep$pcs$scores
        input_dims <- ncol(x)
      }
      prep$pcs <- prep$input <- NULL
      say("Preprocessed %d spots: %d genes%s, %d PCs.", n, length(prep$features),
          if (is.null(prep$moran)) "" else sprintf(" (of %d variable genes, those with a spatial pattern)", nrow(prep$moran)),
          input_dims)
    } else {
      x <- prep$scaled
      input_dims <- ncol(x)
      prep$scaled <- NULL
      say("Preprocessed %d spots: %d scaled genes (imputation input).", n, length(prep$features))
    }
  } else {
    x <- input
    input_dims <- ncol(x)
    if (mode == "imputation") {
      sedr_abort("imputation needs expression, not a reduction; drop `reduction`.", arg = "reduction")
    }
  }
  # The recipe's garbage goes before the graph and the trainer allocate
  # outside R's heap: at a million spots it holds GBs (a copy of the PCs made
  # when their dimnames are set), which set the peak during the graph build.
  collect_if_large(n)
  timings["preprocess"] <- tic() - t0

  # Mixing of the sections (R/mixing.R). "mnn": the input is centred per
  # section and corrected by mutual nearest neighbours before training;
  # "soft" corrects the trained embedding (step 3).
  n_pairs <- NA_integer_
  if (integrate == "mnn" && mixes) {
    t0 <- tic()
    # options(SEDR.mnn.sigma =) sets the correction's bandwidth (benchmarks).
    mixed <- correct_sections(center_by_section(x, group_int), group_int, graph,
                              sigma = getOption("SEDR.mnn.sigma", 0.1))
    x <- mixed$x
    n_pairs <- mixed$pairs
    rm(mixed)
    timings["mixing"] <- tic() - t0
    say("Mixing: input centred per section and corrected by %d mutual-nearest-neighbour pairs.", n_pairs)
  }

  # 3. Training.
  collect_if_large(n)
  options$batch.size <- resolve_batch_size(options$batch.size, n)
  check_memory(n, if (is.null(prep)) input_dims else length(prep$features), input_dims,
               length(graph@i), mode, train_device, options = options, dec = dec,
               input = if (is.null(x_handle)) "doubles" else "made")
  t0 <- tic()
  info <- SEDRBackendInfo()
  say("Training on %s (%d thread%s): %d epochs%s%s.",
      if (device == "auto") (if (info$cuda_available) "cuda:0" else "cpu") else device,
      n.threads, if (n.threads > 1) "s" else "", epochs,
      if (dec) sprintf(" + %d DEC epochs", options$dec.epochs) else "",
      if (options$batch.size > 0) {
        sprintf(", mini-batches of ~%s spots (one step per epoch)",
                format(options$batch.size, big.mark = ",", scientific = FALSE))
      } else "")
  # The trainer keeps a float32 copy of the input; the doubles (1.6 GB at a
  # million spots x 200 PCs) go before it builds its graph structures.
  if (is.null(x_handle)) {
    x_handle <- sedr_trainer_input(x)
    rm(x)
    collect_if_large(n)
  }
  trainer <- sedr_trainer_new(x_handle, graph, mode = mode, epochs = epochs, dec = dec, options = options,
                              device = device, n.threads = n.threads, seed = seed)
  rm(x_handle)
  fit <- sedr_train(trainer, n, mode = mode, epochs = epochs, dec = dec, options = options,
                    verbose = verbose)
  # Frees the trainer (its finalizer runs at a collection) before clustering.
  rm(trainer)
  collect_if_large(n)
  timings["train"] <- tic() - t0
  # Taken out of `fit`, so that setting their dimnames does not copy them.
  emb <- fit$embedding
  dec_q <- fit$q
  fit$embedding <- fit$q <- NULL
  dimnames(emb) <- list(spots, paste0("SEDR_", seq_len(ncol(emb))))
  soft_rounds <- NA_integer_
  if (integrate == "soft" && mixes) {
    t0 <- tic()
    mixed <- soft_mix(emb, group_int, graph, seed = seed)
    emb[] <- mixed$x
    soft_rounds <- mixed$rounds
    n_pairs <- mixed$pairs
    timings["mixing"] <- tic() - t0
    say("Mixing: embedding corrected by soft clustering (%d clusters, %d rounds), then by %d mutual-nearest-neighbour pairs.",
        mixed$clusters, mixed$rounds, n_pairs)
    rm(mixed)
  }
  if (!is.null(dec_q)) dimnames(dec_q) <- list(spots, paste0("DEC_", seq_len(ncol(dec_q))))
  denoised <- NULL
  if (!is.null(fit$recon)) {
    z <- fit$recon
    dimnames(z) <- list(spots, prep$features)
    expr <- sweep(sweep(z, 2, prep$scale, `*`), 2, prep$center, `+`)
    expr[expr < 0] <- 0
    denoised <- list(scaled = z, expression = expr)
  }
  params <- c(list(mode = mode, epochs = epochs, dec = dec, k.neighbors = k.neighbors,
                   device = fit$device, n.threads = n.threads, seed.use = seed.use, seed = seed,
                   n.hvg = if (is.null(prep)) NA else length(prep$features),
                   normalize = if (is.null(prep)) NA else normalize,
                   moran.z = if (is.null(prep$moran)) NA else moran.z,
                   input = if (is.null(input)) (if (mode == "clustering") "pca" else "scaled") else "reduction",
                   input.dims = input_dims, integrate = if (is.null(group)) NA else integrate,
                   mnn.pairs = n_pairs, soft.rounds = soft_rounds),
              unclass(options))
  # The sections go with the coordinates: sections may share a coordinate
  # frame, and SEDRClusters() refines labels within each section only.
  sections <- if (is.null(group)) NULL else stats::setNames(as.character(group), spots)
  list(embedding = emb, dec.q = dec_q, denoised = denoised, losses = fit$losses, graph = graph, coords = coords,
       sections = sections,
       features = if (is.null(prep)) NULL else prep$features, moran = prep$moran, params = params, device = fit$device,
       timings = timings, versions = sedr_versions())
}

# Spots per training step (0 = full batch). Automatic (NULL): full batch up
# to `threshold` spots, where an epoch costs well under a second on a CPU;
# above, mini-batches of `auto.size` spots keep an epoch at about that cost
# (1 M spots: ~0.5 s per step on 2 cores instead of ~21 s per full epoch).
resolve_batch_size <- function(batch.size, n, threshold = 50000, auto.size = 20000) {
  b <- if (is.null(batch.size)) (if (n > threshold) auto.size else 0) else batch.size
  if (b >= n) 0 else b
}

sedr_versions <- function() {
  list(SEDR = as.character(utils::packageVersion("SEDR")), libtorch = "2.11.0",
       R = as.character(getRversion()))
}
