# Screening of post-training corrections of the block-diagonal embedding
# (integrate = "soft" and variants): the model is trained once per data set
# and seed (integrate = "none"), then every variant corrects the same
# embedding, so the variants differ only in the correction.
#   SEDR_SEEDS=1,2,3 SEDR_VARIANTS=soft,theta4 Rscript bench/integration-screen.R [dlpfc] [sim2] [sim3]
# Columns as bench/integration.R (no single-section rows; time = seconds of
# the correction alone).
options(SEDR.bench.library = TRUE)
source(file.path("bench", "integration.R"))
variants_all <- list(
  soft = function(e, g, gr, s) soft_then_mnn(e, g, gr, s),
  soft_nomnn = function(e, g, gr, s) SEDR:::soft_correct(e, g, seed = s)$x,
  theta4 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, theta = 4),
  rounds30 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, rounds = 30L, tol = 1e-6),
  lambda0.1 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, lambda = 0.1),
  clusters_n60 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, n.clusters = max(2L, round(nrow(e) / 60))),
  clusters_n15 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, n.clusters = min(200L, round(nrow(e) / 15))),
  mnn2 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, passes = 2L),
  mnn_k40 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, k = 40L),
  mnn_first = function(e, g, gr, s) {
    m <- SEDR:::correct_sections(SEDR:::center_by_section(e, g), g, gr, dims = ncol(e), smooth = 1L)$x
    soft_then_mnn(m, g, gr, s)
  },
  soft_coral = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_coral_nomnn = function(e, g, gr, s) coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s),
  soft_coral8 = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, per = 8)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_coral2 = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, per = 2)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_coral1 = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, per = 1)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_coralH = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, K = max(2L, min(round(nrow(e) / 30), 100L)))
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_ot2 = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, per = 2, ot = TRUE)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  soft_ot4 = function(e, g, gr, s) {
    x <- coral_align(SEDR:::soft_correct(e, g, seed = s)$x, g, s, per = 4, ot = TRUE)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  noise_soft = function(e, g, gr, s) soft_then_mnn(noise_align(e, g, gr), g, gr, s),
  soft_noise = function(e, g, gr, s) {
    x <- noise_align(SEDR:::soft_correct(e, g, seed = s)$x, g, gr)
    SEDR:::correct_sections(x, g, gr, dims = ncol(e), smooth = 0L)$x
  },
  mnn3 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, passes = 3L),
  mnn3_k10 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, passes = 3L, k = 10L),
  mnn_s05 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, sigma.mnn = 0.05),
  mnn2_s05 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, passes = 2L, sigma.mnn = 0.05),
  mnn2_s05_sm1 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, passes = 2L, sigma.mnn = 0.05, smooth = 1L),
  mnn_s05_sm1 = function(e, g, gr, s) soft_then_mnn(e, g, gr, s, sigma.mnn = 0.05, smooth = 1L),
  mnn_only = function(e, g, gr, s) {
    SEDR:::correct_sections(SEDR:::center_by_section(e, g), g, gr, dims = ncol(e), smooth = 1L)$x
  }
)
# Moment matching per soft cluster: K clusters (k-means of the unit-length
# rows, soft weights exp(-d / sigma)); in each, every section's weighted
# mean and covariance (shrunk towards the isotropic, weight d / (n + d)) are
# mapped to the pooled ones (x -> mu + C^1/2 Cb^-1/2 (x - mu_b)).
coral_align <- function(x, g, seed, K = NULL, sigma = 0.1, per = 4, ot = FALSE) {
  d <- ncol(x)
  K <- K %||% max(1L, floor(min(tabulate(g + 1L)) / (per * d)))
  zc <- SEDR:::unit_rows(x)
  set.seed(seed)
  cen <- if (K > 1) SEDR:::unit_rows(stats::kmeans(zc, K, iter.max = 50)$centers) else matrix(colMeans(zc), 1)
  logr <- -2 * (1 - tcrossprod(zc, cen)) / sigma
  R <- exp(logr - apply(logr, 1, max)); R <- R / rowSums(R)
  msq <- function(C, inv) {
    e <- eigen(C, symmetric = TRUE); v <- pmax(e$values, 1e-10)
    e$vectors %*% (t(e$vectors) * (if (inv) 1 / sqrt(v) else sqrt(v)))
  }
  wcov <- function(w) {
    n <- sum(w); mu <- colSums(x * w) / n
    xc <- sweep(x, 2, mu); C <- crossprod(xc * w, xc) / n
    a <- d / (n + d)
    list(mu = mu, C = (1 - a) * C + a * sum(diag(C)) / d * diag(d))
  }
  out <- matrix(0, nrow(x), d)
  for (k in seq_len(K)) {
    all <- wcov(R[, k]); half <- msq(all$C, FALSE)
    for (b in unique(g)) {
      i <- which(g == b)
      sb <- wcov(R[, k] * (g == b))
      T <- if (ot) {
        # Gaussian optimal-transport (Monge) map: the least displacement.
        a <- msq(sb$C, FALSE); ai <- msq(sb$C, TRUE)
        ai %*% msq(a %*% all$C %*% a, FALSE) %*% ai
      } else msq(sb$C, TRUE) %*% half
      out[i, ] <- out[i, ] + R[i, k] * (sweep(sweep(x[i, , drop = FALSE], 2, sb$mu) %*% T, 2, all$mu, `+`))
    }
  }
  out
}
# Each section's spatially incoherent part (the embedding minus its
# one-step neighbourhood mean) mapped to the pooled covariance by the
# Gaussian optimal-transport map; the smooth part (the tissue) is kept.
noise_align <- function(x, g, gr) {
  d <- ncol(x)
  sm <- SEDR:::smooth_embedding(x, gr, 1L)
  nz <- x - sm
  msq <- function(C, inv) {
    e <- eigen(C, symmetric = TRUE); v <- pmax(e$values, 1e-10)
    e$vectors %*% (t(e$vectors) * (if (inv) 1 / sqrt(v) else sqrt(v)))
  }
  shrink <- function(C, n) { a <- d / (n + d); (1 - a) * C + a * sum(diag(C)) / d * diag(d) }
  C <- shrink(crossprod(nz) / nrow(nz), nrow(nz))
  for (b in unique(g)) {
    i <- which(g == b)
    Cb <- shrink(crossprod(nz[i, , drop = FALSE]) / length(i), length(i))
    a <- msq(Cb, FALSE); ai <- msq(Cb, TRUE)
    x[i, ] <- sm[i, , drop = FALSE] + nz[i, , drop = FALSE] %*% (ai %*% msq(a %*% C %*% a, FALSE) %*% ai)
  }
  x
}
`%||%` <- function(a, b) if (is.null(a)) b else a
# soft_correct() with its defaults, once per embedding (the variants share it).
soft_cache <- new.env()
soft_default <- function(e, g, s) {
  key <- paste(nrow(e), s, sum(e))
  if (is.null(soft_cache[[key]])) soft_cache[[key]] <- SEDR:::soft_correct(e, g, seed = s)$x
  soft_cache[[key]]
}
soft_then_mnn <- function(e, g, gr, s, passes = 1L, k = 20L, sigma.mnn = 0.1, smooth = 0L, ...) {
  x <- if (...length()) SEDR:::soft_correct(e, g, seed = s, ...)$x else soft_default(e, g, s)
  for (p in seq_len(passes)) x <- SEDR:::correct_sections(x, g, gr, k = k, dims = ncol(e), sigma = sigma.mnn, smooth = smooth)$x
  x
}
variants <- strsplit(Sys.getenv("SEDR_VARIANTS", paste(names(variants_all), collapse = ",")), ",")[[1]]

screen_set <- function(name, d) {
  cat(sprintf("\n## %s: %d spots\n", name, ncol(d$counts)))
  rows <- list()
  for (seed in seeds) {
    res <- RunSEDR(d$counts, coords = d$coords, group.by = d$section, integrate = "none", device = "cpu",
                   n.threads = threads, seed.use = seed, min.spots = d$min.spots, verbose = FALSE)
    g <- as.integer(factor(res$sections, levels = unique(res$sections))) - 1L
    sc <- score(d, res$embedding, res)
    rows[[length(rows) + 1]] <- data.frame(row = "none", seed = seed, t(sc), time = 0, check.names = FALSE)
    for (v in variants) {
      t0 <- proc.time()[["elapsed"]]
      x <- variants_all[[v]](res$embedding, g, res$graph, res$params$seed)
      tt <- proc.time()[["elapsed"]] - t0
      dimnames(x) <- dimnames(res$embedding)
      sc <- score(d, x, res)
      rows[[length(rows) + 1]] <- data.frame(row = v, seed = seed, t(sc), time = tt, check.names = FALSE)
      cat(sprintf("%s seed %d %s: %s time %.1f\n", name, seed, v, paste(sprintf("%s=%.3f", names(sc), sc), collapse = " "), tt))
    }
  }
  tab <- do.call(rbind, rows)
  cols <- setdiff(names(tab), c("row", "seed"))
  cat(sprintf("\n| %s | %s |\n|%s\n", name, paste(sub("^ARI_", "ARI ", cols), collapse = " | "), strrep("---|", length(cols) + 1)))
  for (r in unique(tab$row)) {
    sub <- tab[tab$row == r, ]
    cells <- vapply(cols, function(cn) {
      v <- sub[[cn]]
      dg <- if (cn == "time") 1 else if (startsWith(cn, "ARI")) 3 else 2
      sprintf("%s [%s, %s]", formatC(median(v), format = "f", digits = dg), formatC(min(v), format = "f", digits = dg),
              formatC(max(v), format = "f", digits = dg))
    }, "")
    cat(sprintf("| %s | %s |\n", r, paste(cells, collapse = " | ")))
  }
  invisible(tab)
}

for (w in which_sets) {
  d <- switch(w, dlpfc = load_dlpfc(), sim2 = load_sim(2), sim3 = load_sim(3))
  if (is.null(d)) { cat("skip", w, ": data not found\n"); next }
  screen_set(w, d)
}
