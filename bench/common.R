# Shared helpers of the benchmark scripts: read a dataset folder in the
# ../shared/data layout (counts.mtx.gz genes x spots, genes.tsv.gz, spots.tsv.gz).
read_dataset <- function(dir) {
  if (!dir.exists(dir)) return(NULL)
  counts <- Matrix::readMM(gzfile(file.path(dir, "counts.mtx.gz")))
  genes <- utils::read.delim(gzfile(file.path(dir, "genes.tsv.gz")))
  spots <- utils::read.delim(gzfile(file.path(dir, "spots.tsv.gz")))
  counts <- methods::as(counts, "CsparseMatrix")
  gene_names <- make.unique(ifelse(is.na(genes[[ncol(genes)]]) | genes[[ncol(genes)]] == "", genes[[1]], genes[[ncol(genes)]]))
  dimnames(counts) <- list(gene_names, spots$barcode)
  coords <- as.matrix(spots[, c("x", "y")])
  rownames(coords) <- spots$barcode
  list(counts = counts, coords = coords, spots = spots)
}

peak_rss_mb <- function() {
  st <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmHWM", st, value = TRUE))) / 1024
}

data_dir <- function(name) {
  root <- Sys.getenv("SEDR_DATA", file.path("..", "shared", "data"))
  file.path(root, name)
}

# Counts of a simulated tissue at n spots, sparse from the start (O(nnz) time
# and memory; see bench/scale.R's header): a hexagonal Visium-like lattice
# with layered domains, per-gene detection rates raised 4x for each domain's
# markers, detected entries 1 + Poisson(gene level x spot depth).
simulate_sparse <- function(n, n_genes = 2000, n_domains = 7, density = 0.05,
                            markers = 20, seed = 1) {
  set.seed(seed)
  cols <- ceiling(sqrt(n))
  r <- (seq_len(n) - 1L) %/% cols
  c <- (seq_len(n) - 1L) %% cols
  x <- 100 * (c + 0.5 * (r %% 2))
  y <- 100 * r * sqrt(3) / 2
  height <- max(y) + 100
  layer <- y + 0.5 * height / n_domains * sin(2 * pi * x / (max(x) + 100) + 1)
  dom <- as.integer(ceiling(rank(layer, ties.method = "first") * n_domains / n))
  by_dom <- split(seq_len(n), factor(dom, levels = seq_len(n_domains)))
  nd <- lengths(by_dom)

  # Detection rate per gene and domain; markers up in their domain.
  rate <- stats::runif(n_genes, 0.2, 1.8) * density
  p <- matrix(rate, n_genes, n_domains)
  mk <- matrix(sample.int(n_genes, markers * n_domains), markers)
  for (d in seq_len(n_domains)) p[mk[, d], d] <- pmin(0.9, 4 * p[mk[, d], d])
  m <- matrix(stats::rbinom(n_genes * n_domains, rep(nd, each = n_genes), p), n_genes, n_domains)
  per_gene <- rowSums(m)
  nnz <- sum(per_gene)
  if (nnz >= .Machine$integer.max) stop("too many nonzeros for a dgCMatrix")

  # Spots of each gene (CSC of spots x genes), sorted within the gene.
  ii <- integer(nnz)
  pos <- 0
  for (g in seq_len(n_genes)) {
    idx <- vector("list", n_domains)
    for (d in seq_len(n_domains)) idx[[d]] <- by_dom[[d]][sample.int(nd[d], m[g, d])]
    idx <- sort.int(unlist(idx, use.names = FALSE))
    ii[pos + seq_along(idx)] <- idx - 1L
    pos <- pos + length(idx)
  }
  level <- stats::rlnorm(n_genes, 0, 0.8)
  depth <- stats::rlnorm(n, 0, 0.3)
  vals <- 1 + stats::rpois(nnz, rep.int(level, per_gene) * depth[ii + 1L])
  spots <- paste0("spot", seq_len(n))
  genes <- paste0("gene", seq_len(n_genes))
  sg <- new("dgCMatrix", i = ii, p = c(0L, as.integer(cumsum(per_gene))), x = as.double(vals),
            Dim = c(as.integer(n), as.integer(n_genes)), Dimnames = list(spots, genes))
  rm(ii, vals)
  counts <- Matrix::t(sg)  # genes x spots
  rm(sg)
  coords <- cbind(x = x, y = y)
  rownames(coords) <- spots
  empty <- which(diff(counts@p) == 0)
  if (length(empty)) {  # (vanishingly rare) spots without counts: drop them
    counts <- counts[, -empty, drop = FALSE]
    coords <- coords[-empty, , drop = FALSE]
  }
  list(counts = counts, coords = coords, domain = dom)
}

