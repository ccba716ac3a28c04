# Multi-section integration: how well an embedding mixes sections while
# keeping their domains apart.
#   Rscript bench/integration.R [dlpfc] [sim2] [sim3]     (default: all three)
# Data sets:
#   dlpfc  DLPFC 151673 + 151510 (two donors; the genes both sections have);
#   sim2   two simulated sections of one tissue (SimulateSpatialTissue(),
#          5 layered domains) with a known batch shift: section B has half
#          the depth, a per-gene scale exp(N(0, 0.5)) and a per-gene offset
#          of 0.3 x the gene's mean, and is cropped to 22 of 30 columns;
#   sim3   sim2 plus section C: 1.5x depth, scale exp(N(0, 0.7)), offset 0.5,
#          26 of 30 columns.
# Rows: the recipe's PCA (32 PCs); SEDR with integrate = "none" (one model,
# block-diagonal graph, nothing mixes; the default); SEDR with
# integrate = "mnn" (bandwidths 0.1 and 0.3) and integrate = "soft"; SEDR +
# Harmony where the harmony package is installed. SEDR_ROWS (default
# "mnn,mnn0.3,soft") picks the mixing rows; "none", PCA and the
# single-section runs are always there.
# Columns: median iLISI on section (1 = unmixed, the number of sections =
# perfect mixing), median cLISI on domain (1 = pure), the ARI of *joint*
# domains (one SEDRClusters() over all sections, mclust) in each section,
# and that section's single-section ARI (RunSEDR on the section alone, the
# package defaults, same genes), the joint domains' ARI over all sections
# pooled (high only if a domain is the same layer in every section), time
# of RunSEDR in seconds. Medians over seeds
# (SEDR_SEEDS, default 1,2,3) with [min, max]. One thread (SEDR_THREADS).
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))
threads <- as.integer(Sys.getenv("SEDR_THREADS", "1"))
seeds <- as.integer(strsplit(Sys.getenv("SEDR_SEEDS", "1,2,3"), ",")[[1]])
mix_rows <- strsplit(Sys.getenv("SEDR_ROWS", "mnn,mnn0.3,soft"), ",")[[1]]
which_sets <- commandArgs(TRUE)
if (!length(which_sets)) which_sets <- c("dlpfc", "sim2", "sim3")

load_dlpfc <- function() {
  a <- read_dataset(data_dir("dlpfc_151673"))
  b <- read_dataset(data_dir("dlpfc_151510"))
  if (is.null(a) || is.null(b)) return(NULL)
  shared <- intersect(rownames(a$counts), rownames(b$counts))
  colnames(a$counts) <- rownames(a$coords) <- paste0("151673_", colnames(a$counts))
  colnames(b$counts) <- rownames(b$coords) <- paste0("151510_", colnames(b$counts))
  list(counts = cbind(a$counts[shared, ], b$counts[shared, ]), coords = rbind(a$coords, b$coords),
       section = rep(c("151673", "151510"), c(ncol(a$counts), ncol(b$counts))),
       domain = c(a$spots$layer, b$spots$layer), n.clusters = 7, min.spots = 50)
}

# One simulated section: the same tissue (seed 1) at `depth`, cropped to the
# first `cols` columns, with a per-gene scale exp(N(0, scale.sd)) and an
# offset `offset` x the gene's mean (Poisson noise on the shifted counts).
sim_section <- function(id, depth, scale.sd, offset, cols, seed) {
  s <- SimulateSpatialTissue(n.rows = 30, n.cols = 30, n.genes = 500, depth = depth, effect = 1.5, seed = 1)
  keep <- s$coords[, "x"] < cols * 100
  m <- s$counts[, keep]
  if (scale.sd > 0 || offset > 0) {
    set.seed(seed)
    mu <- as.matrix(m) * exp(stats::rnorm(nrow(m), 0, scale.sd)) + offset * Matrix::rowMeans(m)
    shifted <- matrix(stats::rpois(length(mu), mu), nrow(mu), dimnames = dimnames(m))
    m <- methods::as(Matrix::Matrix(shifted, sparse = TRUE), "CsparseMatrix")
  }
  colnames(m) <- paste0(id, "_", colnames(m))
  xy <- s$coords[keep, ]
  rownames(xy) <- colnames(m)
  list(counts = m, coords = xy, domain = as.character(s$domain[keep]))
}

load_sim <- function(n.sections) {
  secs <- list(A = sim_section("A", 2000, 0, 0, 30, 1), B = sim_section("B", 1000, 0.5, 0.3, 22, 2),
               C = sim_section("C", 3000, 0.7, 0.5, 26, 3))[seq_len(n.sections)]
  list(counts = do.call(cbind, lapply(secs, `[[`, "counts")),
       coords = do.call(rbind, lapply(secs, `[[`, "coords")),
       section = rep(names(secs), vapply(secs, function(s) ncol(s$counts), 1L)),
       domain = unlist(lapply(secs, `[[`, "domain")), n.clusters = 5, min.spots = 5)
}

# Median LISI and joint-domain ARI per section of one embedding. `like`: a
# RunSEDR() result over the same spots, whose graph, coordinates and
# sections SEDRClusters() uses (smoothed start; label refinement within each
# section, the default, as in the single-section runs).
score <- function(d, emb, like) {
  ok <- !is.na(d$domain)
  l <- ComputeLISI(emb[ok, ], data.frame(section = d$section[ok], domain = d$domain[ok]), n.threads = threads)
  if (is.null(rownames(emb))) rownames(emb) <- rownames(like$embedding)
  like$embedding <- emb
  cl <- SEDRClusters(like, n.clusters = d$n.clusters, verbose = FALSE)
  ari <- vapply(unique(d$section), function(s) {
    i <- d$section == s & ok
    SpatialClusterMetrics(d$domain[i], cl[i])[["ARI"]]
  }, 1)
  # Pooled over all sections: a domain must mean the same in every section.
  pooled <- SpatialClusterMetrics(d$domain[ok], cl[ok])[["ARI"]]
  c(iLISI = median(l$section), cLISI = median(l$domain), setNames(ari, paste0("ARI_", names(ari))),
    ARI_pooled = pooled)
}

run_set <- function(name, d) {
  cat(sprintf("\n## %s: %s spots (%s), %d genes\n", name, format(ncol(d$counts), big.mark = ","),
              paste(table(d$section)[unique(d$section)], collapse = " + "), nrow(d$counts)))
  rows <- list()
  add <- function(row, seed, vals, time) {
    rows[[length(rows) + 1]] <<- data.frame(row = row, seed = seed, t(vals), time = time, check.names = FALSE)
  }
  sedr <- function(integrate, seed) {
    t0 <- proc.time()[["elapsed"]]
    res <- RunSEDR(d$counts, coords = d$coords, group.by = d$section, integrate = integrate, device = "cpu",
                   n.threads = threads, seed.use = seed, min.spots = d$min.spots, verbose = FALSE)
    list(res = res, time = proc.time()[["elapsed"]] - t0)
  }
  prep <- SEDR:::.preprocess_counts(d$counts, min.spots = d$min.spots)
  pca <- SEDR:::sedr_pca(prep$scaled, 32, seed = 1, n.threads = threads)$scores
  for (seed in seeds) {
    none <- sedr("none", seed)
    if (seed == seeds[1]) add("PCA (recipe, 32 PCs)", NA, score(d, pca, none$res), NA)
    add("SEDR, integrate = \"none\" (block-diagonal)", seed, score(d, none$res$embedding, none$res), none$time)
    if ("mnn" %in% mix_rows) {
      mnn <- sedr("mnn", seed)
      add("SEDR, integrate = \"mnn\"", seed, score(d, mnn$res$embedding, none$res), mnn$time)
    }
    if ("mnn0.3" %in% mix_rows) {
      # The correction's bandwidth, wider than the default 0.1.
      op <- options(SEDR.mnn.sigma = 0.3)
      wide <- sedr("mnn", seed)
      options(op)
      add("SEDR, integrate = \"mnn\", bandwidth 0.3", seed, score(d, wide$res$embedding, none$res), wide$time)
    }
    if ("soft" %in% mix_rows) {
      soft <- sedr("soft", seed)
      add("SEDR, integrate = \"soft\"", seed, score(d, soft$res$embedding, none$res), soft$time)
    }
    if (requireNamespace("harmony", quietly = TRUE)) {
      t0 <- proc.time()[["elapsed"]]
      h <- harmony::RunHarmony(none$res$embedding, data.frame(section = d$section), "section", verbose = FALSE)
      add("SEDR (\"none\") + Harmony", seed, score(d, h, none$res), none$time + proc.time()[["elapsed"]] - t0)
    }
    # Single-section reference: each section alone, the package defaults.
    single <- vapply(unique(d$section), function(s) {
      i <- d$section == s
      r <- RunSEDR(d$counts[, i], coords = d$coords[i, ], device = "cpu", n.threads = threads,
                   seed.use = seed, min.spots = d$min.spots, verbose = FALSE)
      cl <- SEDRClusters(r, n.clusters = d$n.clusters, verbose = FALSE)
      ok <- !is.na(d$domain[i])
      SpatialClusterMetrics(d$domain[i][ok], cl[ok])[["ARI"]]
    }, 1)
    add("single-section SEDR (each section alone)", seed,
        c(iLISI = NA, cLISI = NA, setNames(single, paste0("ARI_", names(single))), ARI_pooled = NA), NA)
    cat(sprintf("seed %d done\n", seed))
  }
  tab <- do.call(rbind, rows)
  cols <- setdiff(names(tab), c("row", "seed"))
  fmt <- function(v, digits) {
    v <- v[!is.na(v)]
    if (!length(v)) return("")
    if (length(v) == 1) return(formatC(v, format = "f", digits = digits))
    sprintf("%s [%s, %s]", formatC(median(v), format = "f", digits = digits),
            formatC(min(v), format = "f", digits = digits), formatC(max(v), format = "f", digits = digits))
  }
  cat(sprintf("\n| %s | %s |\n|%s\n", name, paste(sub("^ARI_", "ARI ", cols), collapse = " | "),
              strrep("---|", length(cols) + 1)))
  for (r in unique(tab$row)) {
    sub <- tab[tab$row == r, ]
    cells <- vapply(cols, function(cn) fmt(sub[[cn]], if (cn == "time") 1 else if (startsWith(cn, "ARI")) 3 else 2), "")
    cat(sprintf("| %s | %s |\n", r, paste(cells, collapse = " | ")))
  }
  invisible(tab)
}

# Sourced by bench/integration-screen.R for the loaders and score() only.
if (!isTRUE(getOption("SEDR.bench.library"))) {
  for (w in which_sets) {
    d <- switch(w, dlpfc = load_dlpfc(), sim2 = load_sim(2), sim3 = load_sim(3))
    if (is.null(d)) { cat("skip", w, ": data not found\n"); next }
    run_set(w, d)
  }
}
