# Simulated Visium-like tissue with known spatial domains, used by the
# examples, the tests and the benchmarks, so that every clustering result can
# be scored against a ground truth without shipping data.

#' Simulate a spatial transcriptomics tissue with layered domains
#'
#' Builds a Visium-like hexagonal lattice of spots, splits it into curved,
#' layered spatial domains and draws negative binomial counts in which each
#' domain has its own up-regulated marker genes. The result is deterministic
#' given `seed`, and the random number generator state of the calling session
#' is left exactly as it was.
#'
#' Spot `(r, c)` (row `r`, column `c`, both from 0) sits at
#' `x = 100 * (c + 0.5 * (r %% 2))`, `y = 100 * r * sqrt(3) / 2`, so
#' neighbouring spots are 100 units apart as on a Visium slide. Domains are
#' bands of equal spot count along `y` plus a sine wave in `x`. Each gene has a
#' lognormal baseline; each spot a lognormal library size around `depth`. In
#' the domain it marks, a marker gene's mean is multiplied by `exp(effect)`.
#' Up to two further genes follow smooth gradients (one along `x`, one along
#' `y`) and are listed in `gradient`.
#'
#' @param n.rows,n.cols Number of lattice rows and columns (positive
#'   integers); the tissue has `n.rows * n.cols` spots.
#' @param n.genes Number of genes (positive integer), at least
#'   `n.domains * markers.per.domain`.
#' @param n.domains Number of spatial domains, between 2 and `n.rows`.
#' @param markers.per.domain Number of marker genes per domain (positive
#'   integer).
#' @param depth Median library size (total counts) per spot, a positive
#'   number.
#' @param effect Log fold change of marker genes in their domain, a
#'   non-negative number.
#' @param seed Random seed (a single whole number).
#'
#' @return A list of class `sedr_simulation` with elements
#'   * `counts`: a `dgCMatrix` of counts, genes x spots, row names
#'     `Gene1`, `Gene2`, ..., column names `Spot1`, `Spot2`, ...;
#'   * `coords`: a numeric matrix, spots x 2, columns `x` and `y`;
#'   * `domain`: a factor of true domains (levels `Domain1`, ...), named by
#'     spot;
#'   * `markers`: a named list with the marker genes of each domain;
#'   * `gradient`: the names of the gradient genes;
#'   * `params`: the arguments used.
#'
#' @examples
#' sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100,
#'                              n.domains = 3, markers.per.domain = 5)
#' dim(sim$counts)
#' table(sim$domain)
#' @export
SimulateSpatialTissue <- function(n.rows = 40, n.cols = 40, n.genes = 500,
                                  n.domains = 5, markers.per.domain = 20,
                                  depth = 2000, effect = 2, seed = 1) {
  n.rows <- .check_whole(n.rows, "n.rows", min = 1)
  n.cols <- .check_whole(n.cols, "n.cols", min = 1)
  n.genes <- .check_whole(n.genes, "n.genes", min = 1)
  n.domains <- .check_whole(n.domains, "n.domains", min = 2)
  markers.per.domain <- .check_whole(markers.per.domain, "markers.per.domain",
                                     min = 1)
  seed <- .check_whole(seed, "seed", min = -.Machine$integer.max)
  .check_number(depth, "depth", positive = TRUE)
  .check_number(effect, "effect", positive = FALSE)
  if (effect < 0) {
    sedr_abort(paste0("must be >= 0 (a log fold change for markers), not ",
                      format(effect), "."), arg = "effect")
  }
  if (n.domains > n.rows) {
    sedr_abort(paste0("must be at most `n.rows` (", n.rows, ") so that every ",
                      "domain spans at least one lattice row; lower ",
                      "`n.domains` or raise `n.rows`."), arg = "n.domains")
  }
  n.markers <- n.domains * markers.per.domain
  if (n.markers > n.genes) {
    sedr_abort(paste0("must be at least n.domains * markers.per.domain = ",
                      n.markers, "; raise `n.genes` or lower ",
                      "`markers.per.domain`."), arg = "n.genes")
  }

  .with_seed(seed, {
    # Hexagonal (Visium-like) lattice: odd rows are shifted half a spacing.
    grid <- expand.grid(c = seq_len(n.cols) - 1L, r = seq_len(n.rows) - 1L)
    x <- 100 * (grid$c + 0.5 * (grid$r %% 2))
    y <- 100 * grid$r * sqrt(3) / 2
    n.spots <- length(x)
    spots <- paste0("Spot", seq_len(n.spots))
    genes <- paste0("Gene", seq_len(n.genes))

    # Curved layers: a sine wave in x bends the bands; the amplitude is a
    # fraction of one band's height so that bands stay contiguous.
    height <- max(y) - min(y) + 100
    width <- max(x) - min(x) + 100
    amplitude <- 0.5 * height / n.domains
    phase <- stats::runif(1, 0, 2 * pi)
    layer <- y + amplitude * sin(2 * pi * x / width + phase)
    # Equal spot counts per band: cut the ranks, not the values.
    rk <- rank(layer, ties.method = "first")
    dom <- ceiling(rk * n.domains / n.spots)
    domain <- factor(paste0("Domain", dom),
                     levels = paste0("Domain", seq_len(n.domains)))
    names(domain) <- spots

    # Gene baselines (relative abundances) and spot library sizes.
    baseline <- stats::rlnorm(n.genes, meanlog = 0, sdlog = 1)
    baseline <- baseline / sum(baseline)
    libsize <- depth * stats::rlnorm(n.spots, meanlog = 0, sdlog = 0.3)

    # Markers are spread at random over the gene list so that the first rows
    # of the matrix are not special.
    picked <- sample.int(n.genes)
    marker_idx <- matrix(picked[seq_len(n.markers)], nrow = markers.per.domain)
    n.gradient <- min(2L, n.genes - n.markers)
    gradient_idx <- picked[n.markers + seq_len(n.gradient)]

    # Expected counts, genes x spots; markers and gradient genes are scaled
    # in place, only on their own rows.
    mu <- outer(baseline, libsize)
    up <- exp(effect)
    for (d in seq_len(n.domains)) {
      in_d <- dom == d
      mu[marker_idx[, d], in_d] <- mu[marker_idx[, d], in_d] * up
    }
    grads <- list(
      (x - min(x)) / max(1, max(x) - min(x)),
      (y - min(y)) / max(1, max(y) - min(y))
    )
    for (k in seq_len(n.gradient)) {
      g <- gradient_idx[k]
      mu[g, ] <- mu[g, ] * exp(effect * grads[[k]])
    }

    # Rescale so each spot's expected total is its library size: markers
    # then shift composition, not depth, as after library-size normalisation.
    mu <- mu * rep(libsize / colSums(mu), each = n.genes)

    counts <- matrix(stats::rnbinom(length(mu), size = 5, mu = mu),
                     nrow = n.genes, ncol = n.spots)
  })

  nz <- which(counts > 0, arr.ind = TRUE)
  counts <- Matrix::sparseMatrix(
    i = nz[, 1], j = nz[, 2], x = as.numeric(counts[nz]),
    dims = c(n.genes, n.spots), dimnames = list(genes, spots)
  )
  coords <- cbind(x = x, y = y)
  rownames(coords) <- spots
  markers <- lapply(seq_len(n.domains), function(d) genes[marker_idx[, d]])
  names(markers) <- levels(domain)

  structure(
    list(
      counts = counts, coords = coords, domain = domain, markers = markers,
      gradient = genes[gradient_idx],
      params = list(n.rows = n.rows, n.cols = n.cols, n.genes = n.genes,
                    n.domains = n.domains,
                    markers.per.domain = markers.per.domain, depth = depth,
                    effect = effect, seed = seed)
    ),
    class = "sedr_simulation"
  )
}

#' @export
#' @method print sedr_simulation
print.sedr_simulation <- function(x, ...) {
  cat("<sedr_simulation> ", nrow(x$counts), " genes x ", ncol(x$counts),
      " spots, ", nlevels(x$domain), " domains, ",
      length(unlist(x$markers)), " marker genes\n", sep = "")
  invisible(x)
}

#' Convert a simulated tissue to a Seurat object
#'
#' Wraps the counts of a [SimulateSpatialTissue()] result in a Seurat object
#' (assay `"Spatial"`) and stores the spot coordinates and the true domains in
#' its metadata, as columns `x`, `y` and `domain`. Needs the SeuratObject
#' package.
#'
#' @param sim A `sedr_simulation`, as returned by [SimulateSpatialTissue()].
#'
#' @return A `Seurat` object with one assay, `"Spatial"`, and metadata
#'   columns `x`, `y` and `domain`.
#'
#' @examples
#' if (requireNamespace("SeuratObject", quietly = TRUE)) {
#'   sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100,
#'                                n.domains = 3, markers.per.domain = 5)
#'   obj <- SimulationToSeurat(sim)
#'   head(obj[[]])
#' }
#' @export
SimulationToSeurat <- function(sim) {
  if (!inherits(sim, "sedr_simulation")) {
    sedr_abort(paste0("must be the result of SimulateSpatialTissue(), not an ",
                      "object of class ", class(sim)[1], "."), arg = "sim")
  }
  if (!requireNamespace("SeuratObject", quietly = TRUE)) {
    sedr_abort(paste0("SimulationToSeurat() needs the SeuratObject package; ",
                      "install it with install.packages(\"SeuratObject\")."),
               kind = "dependency")
  }
  obj <- SeuratObject::CreateSeuratObject(counts = sim$counts,
                                          assay = "Spatial")
  meta <- data.frame(x = sim$coords[, "x"], y = sim$coords[, "y"],
                     domain = sim$domain,
                     row.names = colnames(sim$counts))
  SeuratObject::AddMetaData(obj, metadata = meta)
}

# ---- internal helpers shared by the R side of the package -----------------

# R's RNG state (`.Random.seed`), or NULL before the generator is first used.
.rng_state <- function() {
  if (exists(".Random.seed", envir = globalenv(), inherits = FALSE)) get(".Random.seed", envir = globalenv())
}

# Evaluate `expr` with the RNG seeded by `seed`, then put the caller's RNG
# state back (including "no seed yet"), so that package functions are
# reproducible without changing the user's random stream.
.with_seed <- function(seed, expr) {
  if (is.null(seed)) return(expr)  # NULL: use the generator as it stands
  env <- globalenv()
  old_seed <- .rng_state()
  had_seed <- !is.null(old_seed)
  old_kind <- RNGkind()
  on.exit({
    # RNGkind() re-seeds, so it must come before the seed is put back;
    # "Rounding" sampling warns on every call, which is not news here.
    suppressWarnings(RNGkind(old_kind[1], old_kind[2], old_kind[3]))
    if (had_seed) {
      assign(".Random.seed", old_seed, envir = env)
    } else if (exists(".Random.seed", envir = env, inherits = FALSE)) {
      rm(".Random.seed", envir = env)
    }
  }, add = TRUE)
  # Fix the generator kinds too, so results do not depend on the user's
  # RNGkind() settings.
  set.seed(seed, kind = "Mersenne-Twister", normal.kind = "Inversion",
           sample.kind = "Rejection")
  expr
}

# A single finite whole number >= min, returned as integer.
.check_whole <- function(x, arg, min = 1) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x) &&
    x == round(x) && x >= min && abs(x) <= .Machine$integer.max
  if (!ok) {
    shown <- if (is.numeric(x) && length(x) == 1L) format(x) else
      paste0("an object of class ", class(x)[1], " and length ", length(x))
    sedr_abort(paste0("must be a single whole number >= ", min, ", not ",
                      shown, "."), arg = arg)
  }
  as.integer(x)
}

# A single finite number (optionally > 0).
.check_number <- function(x, arg, positive = FALSE) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x) &&
    (!positive || x > 0)
  if (!ok) {
    what <- if (positive) "a single positive number" else
      "a single finite number"
    shown <- if (is.numeric(x) && length(x) == 1L) format(x) else
      paste0("an object of class ", class(x)[1], " and length ", length(x))
    sedr_abort(paste0("must be ", what, ", not ", shown, "."), arg = arg)
  }
  invisible(x)
}
