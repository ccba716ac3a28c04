# Drives the Rust trainer: chunks of epochs between which R shows progress
# and can be interrupted (Ctrl-C lands between .Call()s, within a second).

# The trainer's input (checked, float32, row-major) from `x` (spots x
# dims), a handle for sedr_trainer_new(). Made first so the caller can free
# the doubles before the trainer builds its graph structures.
sedr_trainer_input <- function(x) {
  # The matrix itself goes to Rust (as.double() would copy it to drop its
  # attributes: 1.6 GB at a million spots x 200 PCs).
  if (!is.double(x)) storage.mode(x) <- "double"
  unwrap_rust(.Call(wrap__sedr_trainer_input, x, as.integer(nrow(x)), as.integer(ncol(x))))
}

# The Rust trainer on `input` (from sedr_trainer_input(), used up) and `graph`.
sedr_trainer_new <- function(input, graph, mode, epochs, dec, options, device, n.threads, seed) {
  opts <- unclass(options)
  opts$epochs <- epochs
  opts$dec <- dec
  opts$seed <- seed
  opts$n.threads <- n.threads
  unwrap_rust(.Call(wrap__sedr_trainer_new, input, graph@p, graph@i, mode, opts, device))
}

# Trains `trainer` (from sedr_trainer_new(), n spots) to the end of its schedule.
sedr_train <- function(trainer, n, mode, epochs, dec, options, verbose) {
  total <- epochs + if (dec) options$dec.epochs else 0L
  history <- vector("list", 0)
  chunk <- 10L
  done <- 0L
  if (verbose) {
    cli::cli_progress_bar("Training SEDR", total = total, clear = FALSE,
                          format = "{cli::pb_bar} {cli::pb_current}/{cli::pb_total} epochs | loss {sprintf('%.4f', last_loss)} | ETA {cli::pb_eta}")
  }
  last_loss <- NA_real_
  repeat {
    t0 <- proc.time()[["elapsed"]]
    res <- unwrap_rust(.Call(wrap__sedr_trainer_step, trainer, chunk))
    chunk_losses <- as.data.frame(res[c("epoch", "phase", "total", "mse", "graph", "sce", "dec_kl")])
    # A term that is not part of a phase is NA there, not 0 (plots, log scales).
    chunk_losses$sce[chunk_losses$phase == "dec"] <- NA
    chunk_losses$dec_kl[chunk_losses$phase == "pretrain"] <- NA
    history[[length(history) + 1]] <- chunk_losses
    done <- done + length(res$epoch)
    if (length(res$total)) last_loss <- res$total[length(res$total)]
    if (verbose) cli::cli_progress_update(set = done)
    if (isTRUE(res$done) || length(res$epoch) == 0) break
    # Keep each chunk well under a second so Ctrl-C and progress stay responsive.
    per_epoch <- (proc.time()[["elapsed"]] - t0) / max(1, length(res$epoch))
    chunk <- as.integer(max(1, min(50, floor(0.5 / max(per_epoch, 1e-4)))))
  }
  if (verbose) cli::cli_progress_done()
  # Column-major from Rust: each matrix is taken out of `out` and given its
  # dim in place, with no copy (GBs each at millions of spots).
  out <- unwrap_rust(.Call(wrap__sedr_trainer_output, trainer, mode == "imputation"))
  as_matrix <- function(name) {
    v <- out[[name]]
    out[[name]] <<- NULL
    if (!is.null(v)) dim(v) <- c(n, length(v) %/% n)
    v
  }
  emb <- as_matrix("embedding")
  q <- as_matrix("q")
  recon <- as_matrix("recon")
  losses <- do.call(rbind, history)
  list(embedding = emb, q = q, recon = recon, losses = losses, device = out$device,
       n.parameters = out$n_parameters)
}

# Seeded randomized PCA in the Rust core (libtorch); x is spots x features.
sedr_pca <- function(x, npcs, seed, device = "cpu", n.threads = 1L) {
  npcs <- min(npcs, nrow(x) - 1L, ncol(x))
  res <- unwrap_rust(.Call(
    wrap__sedr_pca, x, as.integer(nrow(x)), as.integer(ncol(x)), as.integer(npcs),
    as.integer(seed), as.integer(n.threads), device
  ))
  pca_result(res, nrow(x), ncol(x), npcs, rownames(x), colnames(x))
}

# The same PCA for a sparse genes x spots matrix `x` (dgCMatrix), centred and
# scaled implicitly: the components of Z = (t(x) - center) / scale, with Z
# never formed (memory O(nnz + spots x npcs)). `center` and `scale` have one
# value per gene; `scale` 0 marks a constant gene (its column of Z is 0).
# Scores are spots x npcs, loadings genes x npcs, as sedr_pca(). On the CPU
# the Rust core runs the randomized SVD by sparse products or through the
# genes x genes Gram matrix of the scaled data, whichever its cost model says
# is cheaper (the same components up to rounding; .pca_method()).
sedr_pca_sparse <- function(x, center, scale, npcs, seed, device = "cpu", n.threads = 1L) {
  x <- .as_dgc(x, arg = "x")
  n <- ncol(x)
  g <- nrow(x)
  npcs <- min(npcs, n - 1L, g)
  res <- unwrap_rust(.Call(
    wrap__sedr_pca_sparse, x@p, x@i, x@x, as.integer(n), as.integer(g),
    as.double(center), as.double(scale), as.integer(npcs), as.integer(seed),
    as.integer(n.threads), device, .pca_method()
  ))
  pca_result(res, n, g, npcs, colnames(x), rownames(x))
}

# How the sparse PCA finds the components (options(SEDR.pca = ), for
# benchmarks and tests): "auto" (the default), the randomized SVD by the
# cheaper of "sparse" products and the "gram" matrix (the Rust core's cost
# model); or "exact", the exact PCA from the Gram matrix's eigenvectors (not
# the default: bench/README.md, "Stages").
.pca_method <- function() {
  m <- getOption("SEDR.pca", "auto")
  if (!(is.character(m) && length(m) == 1L && m %in% c("auto", "sparse", "gram", "exact"))) {
    sedr_abort('must be "auto", "sparse", "gram" or "exact" (options(SEDR.pca = )).',
               arg = "SEDR.pca")
  }
  m
}

# The PCA the Rust core returned (scores, loadings, singular values) as
# list(scores = n spots x npcs, sdev, loadings = g genes x npcs), named.
pca_result <- function(res, n, g, npcs, spots, genes) {
  # Taken out of `res` first, so that setting dim does not copy the scores.
  # NULL when the recipe made them the trainer's input instead.
  scores <- res$scores
  res$scores <- NULL
  if (!is.null(scores)) {
    dim(scores) <- c(n, npcs)
    dimnames(scores) <- list(spots, paste0("PC_", seq_len(npcs)))
  }
  loadings <- matrix(res$loadings, nrow = g)
  dimnames(loadings) <- list(genes, paste0("PC_", seq_len(npcs)))
  list(scores = scores, sdev = res$sdev / sqrt(max(1, n - 1)), loadings = loadings)
}
