# Denoising benchmark on DLPFC 151673 (mode = "imputation").
# 10 % of the non-zero counts are held out (set to 0) before training; the
# Pearson correlation between the held-out true values and each estimate is
# computed on the CPM scale of the masked data, over held-out entries of the
# genes the model used:
#   (a) raw: the masked data itself (all zeros at held-out entries, so the
#       correlation is undefined: reported as NA),
#   (b) the mean of the spot's spatial neighbours (k = 12),
#   (c) SEDR's denoised expression.
# Also: layer-marker contrast (mean in the marker's layer / mean elsewhere),
# raw vs denoised.   Rscript bench/impute.R [seed]
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))
args <- commandArgs(trailingOnly = TRUE)
seed <- if (length(args)) as.integer(args[1]) else 1L
d <- read_dataset(data_dir("dlpfc_151673"))
if (is.null(d)) { cat("skip: dlpfc_151673 not found\n"); quit(status = 0) }
counts <- d$counts
set.seed(seed)
nz <- which(counts@x > 0)
held <- sort(sample(nz, round(0.1 * length(nz))))
truth_counts <- counts@x[held]
masked <- counts
masked@x[held] <- 0
# (row, col) of every held-out entry.
col_of <- rep(seq_len(ncol(counts)), diff(counts@p))
held_row <- counts@i[held] + 1L
held_col <- col_of[held]
t0 <- proc.time()[["elapsed"]]
# SEDR_DECODER = "gcn" or "mlp" overrides the decoder (default: the mode's).
decoder <- Sys.getenv("SEDR_DECODER", "")
# SEDR_WEIGHT_DECAY overrides Adam's weight decay (default 0; the reference's is 0.01).
wd <- as.numeric(Sys.getenv("SEDR_WEIGHT_DECAY", "0"))
# SEDR_EPOCHS / SEDR_DEC_EPOCHS override the schedule (default: the package's).
ep <- Sys.getenv("SEDR_EPOCHS", ""); dec_ep <- Sys.getenv("SEDR_DEC_EPOCHS", "")
opts <- do.call(SEDROptions, c(list(weight.decay = wd), if (nzchar(decoder)) list(decoder = decoder),
                               if (nzchar(dec_ep)) list(dec.epochs = as.integer(dec_ep))))
res <- do.call(RunSEDR, c(list(masked, coords = d$coords, mode = "imputation", device = "cpu", options = opts,
                               n.threads = as.integer(Sys.getenv("SEDR_THREADS", "2")), seed.use = seed, verbose = FALSE),
                          if (nzchar(ep)) list(epochs = as.integer(ep))))
train_s <- proc.time()[["elapsed"]] - t0
genes <- res$features
libsize <- Matrix::colSums(masked)
keep <- rownames(counts)[held_row] %in% genes
g <- rownames(counts)[held_row][keep]
s <- held_col[keep]
truth <- truth_counts[keep] / libsize[s] * 1e6
cpm <- masked[genes, , drop = FALSE] %*% Matrix::Diagonal(x = 1e6 / libsize)
A <- BuildSpatialGraph(d$coords, k.neighbors = 12)
nbr_mean <- as.matrix(cpm %*% Matrix::t(A)) / rep(Matrix::rowSums(A), each = length(genes))
gi <- match(g, genes)
est_nbr <- nbr_mean[cbind(gi, s)]
est_sedr <- t(res$denoised$expression)[cbind(gi, s)]
cat(sprintf("\nheld-out entries scored: %d (of %d held out; genes used by the model: %d); training %.1f s\n\n",
            length(truth), length(held), length(genes), train_s))
cat("| estimate | Pearson r (held-out, CPM) | Spearman rho |\n|---|---|---|\n")
cat(sprintf("| raw (zeros) | NA (constant) | NA |\n"))
cat(sprintf("| spatial-neighbour mean (k=12) | %.3f | %.3f |\n", cor(truth, est_nbr), cor(truth, est_nbr, method = "spearman")))
cat(sprintf("| SEDR denoised | %.3f | %.3f |\n", cor(truth, est_sedr), cor(truth, est_sedr, method = "spearman")))

layer <- d$spots$layer
markers <- c(MOBP = "WM", PCP4 = "Layer5", HPCAL1 = "Layer2", CARTPT = "Layer3", NEFH = "Layer3",
             KRT17 = "Layer6", AQP4 = "Layer1", RELN = "Layer1")
markers <- markers[names(markers) %in% genes]
cat("\n| marker | layer | contrast raw | contrast denoised |\n|---|---|---|---|\n")
den <- t(res$denoised$expression)
for (m in names(markers)) {
  inl <- !is.na(layer) & layer == markers[[m]]
  out <- !is.na(layer) & layer != markers[[m]]
  cr <- mean(cpm[m, inl]) / mean(cpm[m, out])
  cd <- mean(den[m, inl]) / mean(den[m, out])
  cat(sprintf("| %s | %s | %.2f | %.2f |\n", m, markers[[m]], cr, cd))
}
