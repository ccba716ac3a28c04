# A memory guard: before training, estimate the peak host memory it needs and
# refuse (a classed "memory" error) when that exceeds what is available,
# rather than letting the process be killed by the OOM killer half way.

# Bytes available to this process: options(SEDR.memory.limit = <bytes>) when
# set, else MemAvailable from /proc/meminfo, lowered to the free part of a
# cgroup (v2) memory limit when there is one. NA where neither can be read.
available_memory <- function() {
  lim <- getOption("SEDR.memory.limit")
  if (!is.null(lim)) {
    if (!is.numeric(lim) || length(lim) != 1 || is.na(lim) || lim < 0) {
      sedr_abort("must be a single number of bytes >= 0 (or NULL).", arg = "options(SEDR.memory.limit)")
    }
    return(as.numeric(lim))
  }
  read_num <- function(path) {
    v <- tryCatch(suppressWarnings(readLines(path, n = 1L, warn = FALSE)), error = function(e) character())
    if (length(v) != 1) return(NA_real_)
    suppressWarnings(as.numeric(v))
  }
  avail <- tryCatch({
    info <- readLines("/proc/meminfo", warn = FALSE)
    line <- grep("^MemAvailable:", info, value = TRUE)
    if (length(line) == 1) as.numeric(gsub("[^0-9]", "", line)) * 1024 else NA_real_
  }, error = function(e) NA_real_, warning = function(w) NA_real_)
  cg_max <- read_num("/sys/fs/cgroup/memory.max")  # "max" reads as NA
  cg_cur <- read_num("/sys/fs/cgroup/memory.current")
  if (is.finite(cg_max) && is.finite(cg_cur)) {
    free <- max(0, cg_max - cg_cur)
    avail <- if (is.finite(avail)) min(avail, free) else free
  }
  avail
}

# Estimated peak host bytes of training (and of returning its output): the
# parts held throughout (`graph`, `input`) plus those of the largest of three
# stages, which follow one another (their transients are freed in between):
# building the trainer (`build`), training (`activations`, `edge_pairs`,
# `negatives`, `dec`) and returning the output (`output`). Returned by part
# (the parts of the largest stage only); the sum is the estimate.
# * graph: Â as indices (8 bytes) and a float weight (4) per entry of A + I,
#   with in full batch the edge loss's pairs and sampler (3 x (8 + 8 + 4) per
#   entry in all), with mini-batches the graph the batches are cut from
#   (8 + 8 per entry) instead;
# * input: `input = "doubles"`: the R doubles passed in plus their float32
#   tensor; "float32": that tensor only (the native recipe writes the PCs
#   into it); "made": nothing, the tensor exists already;
# * build: the graph's transients while the trainer is made (a copy of the
#   pattern and the unsorted rows, 16 bytes per entry);
# * activations: the layers' n x width outputs kept for the backward pass and
#   their gradients, 2 float32 copies of n x (input + encoder + graph encoder
#   + latent + decoder output); with mini-batches, batch x width for those
#   plus one eval pass over all spots (no grad, its input exists already, no
#   reconstruction): n x (2 x the widest layer + latent) floats;
# * edge_pairs: the edge decoder's latent vectors gathered for every positive
#   and negative pair, 2 float32 latent vectors per pair;
# * negatives: their indices and weights, twice (draw and grouping);
# * dec: DEC's n x K assignment, target and gradients;
# * output: the eval pass again, or the embedding as doubles (x3 at most:
#   the cast, its transpose and the vector R copies), whichever is larger,
#   with the DEC assignment likewise and, in imputation, the denoised genes
#   (x4: also the expression-scale copy).
# Checked against the CPU trainer's peak RSS increase (bench/README.md,
# "Stages"): at a million spots with mini-batches, 200 PCs, k = 12, the
# stages measured +0.18 (build), +0.88 (training) and +0.89 GiB (output)
# over the resident size before the trainer was made, against an estimate
# of 1.48 GiB; full batch, at 50k-200k spots (calibrated then): 10.5 KB per spot
# at 200 PCs, 7.6 KB at 30 PCs and 95 KB in imputation with 2000 genes,
# against 15.6, 11.0 and 124 KB here. With a CUDA device the activations,
# pairs, negatives and DEC live on the GPU, so only the host copies of the
# graph, the inputs and the outputs count.
estimate_training_memory <- function(n_spots, n_features, input_dims, nnz_graph, mode, device,
                                     options = SEDROptions(), dec = TRUE,
                                     input = c("doubles", "float32", "made")) {
  input <- match.arg(input)
  n <- as.numeric(n_spots)
  d <- as.numeric(input_dims)
  edges <- as.numeric(nnz_graph) + n  # A + I
  latent <- options$feat.hidden2 + options$gcn.hidden2
  hidden <- options$feat.hidden1 + options$feat.hidden2 + options$gcn.hidden1 +
    2 * options$gcn.hidden2 + latent
  width <- d + hidden + d
  neg_ratio <- options$neg.ratio %||% (if (mode == "imputation") 0 else 1)
  on_gpu <- is.character(device) && startsWith(device, "cuda")
  # Mini-batches: the backward pass and the edge loss see one batch; the
  # eval passes (DEC target, output) still run once over all spots, no grad.
  b <- resolve_batch_size(options$batch.size, n)
  frac <- if (b > 0) b / n else 1
  # The eval pass's peak: two n x widest-layer tensors (a layer's output and
  # its batch norm) and the embedding.
  eval_pass <- if (on_gpu) 0 else n * (2 * max(options$feat.hidden1, options$gcn.hidden1) + latent) * 4
  k <- if (isTRUE(dec)) options$dec.clusters else 0
  stages <- list(
    build = c(build = 16 * edges),
    training = c(
      activations = if (on_gpu) 0 else 2 * n * frac * width * 4 + if (b > 0) eval_pass else 0,
      edge_pairs = if (on_gpu) 0 else frac * (1 + neg_ratio) * edges * 2 * latent * 4,
      negatives = if (on_gpu) 0 else frac * 2 * neg_ratio * edges * (8 + 8 + 4),
      dec = if (on_gpu) 0 else 6 * n * k * 4
    ),
    output = c(output = max(eval_pass, 3 * n * (latent + k) * 8) +
                 if (mode == "imputation") 4 * n * as.numeric(n_features) * 8 else 0)
  )
  peak <- which.max(vapply(stages, sum, numeric(1)))
  c(graph = (if (b > 0) 20 + 16 else 3 * 20) * edges,
    input = n * d * switch(input, doubles = 8 + 4, float32 = 4, made = 0),
    stages[[peak]])
}

format_bytes <- function(b) {
  if (!is.finite(b)) return("unknown")
  units <- c("B", "KiB", "MiB", "GiB", "TiB")
  i <- max(1, min(length(units), floor(log(max(b, 1), 1024)) + 1))
  sprintf("%.1f %s", b / 1024^(i - 1), units[i])
}

# Stops with a "memory" error when the estimate exceeds the available memory;
# returns the estimate (bytes, with the parts and the limit as attributes)
# invisibly otherwise, or when the available memory cannot be read.
check_memory <- function(n_spots, n_features, input_dims, nnz_graph, mode, device,
                         options = SEDROptions(), dec = TRUE, input = "doubles") {
  parts <- estimate_training_memory(n_spots, n_features, input_dims, nnz_graph, mode, device,
                                    options = options, dec = dec, input = input)
  need <- sum(parts)
  avail <- available_memory()
  if (is.finite(avail) && need > avail) {
    on_gpu <- is.character(device) && startsWith(device, "cuda")
    big <- names(parts)[which.max(parts)]
    sedr_abort(sprintf(paste0(
      "Training on %s spots x %d input dimensions needs about %s of host memory ",
      "(estimate; largest part: %s, %s), but only %s is available%s. ",
      "Use fewer genes or PCs (`n.hvg`, `npcs`)%s, or smaller mini-batches (SEDROptions(batch.size = ...)); ",
      "options(SEDR.memory.limit = <bytes>) changes the limit."),
      format(n_spots, big.mark = ",", scientific = FALSE), as.integer(input_dims),
      format_bytes(need), big, format_bytes(parts[[big]]), format_bytes(avail),
      if (!is.null(getOption("SEDR.memory.limit"))) " (options(SEDR.memory.limit))" else "",
      if (on_gpu) "" else ", device = \"cuda\" (activations then live on the GPU)"),
      kind = "memory", arg = NULL)
  }
  invisible(structure(need, parts = parts, available = avail))
}
