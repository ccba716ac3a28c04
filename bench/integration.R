# Multi-section integration: DLPFC 151673 + 151510 (shared genes), one model
# on the block-diagonal graph (no cross-section edge, DEC off), versus the
# PCA baseline (the recipe's PCA, first 32 components). Reports iLISI (on
# section; 1 = unmixed, 2 = fully mixed), cLISI (on layer; 1 = pure) and the
# per-section ARI of mclust EEE with 7 clusters. With the harmony package,
# also SEDR + Harmony.   Rscript bench/integration.R
suppressPackageStartupMessages(library(SEDR))
source(file.path("bench", "common.R"))
a <- read_dataset(data_dir("dlpfc_151673"))
b <- read_dataset(data_dir("dlpfc_151510"))
if (is.null(a) || is.null(b)) { cat("skip: DLPFC folders not found\n"); quit(status = 0) }
shared <- intersect(rownames(a$counts), rownames(b$counts))
colnames(a$counts) <- rownames(a$coords) <- paste0("151673_", colnames(a$counts))
colnames(b$counts) <- rownames(b$coords) <- paste0("151510_", colnames(b$counts))
counts <- cbind(a$counts[shared, ], b$counts[shared, ])
coords <- rbind(a$coords, b$coords)
section <- rep(c("151673", "151510"), c(ncol(a$counts), ncol(b$counts)))
layer <- c(a$spots$layer, b$spots$layer)
cat(sprintf("%d + %d spots, %d shared genes\n", ncol(a$counts), ncol(b$counts), length(shared)))
threads <- as.integer(Sys.getenv("SEDR_THREADS", "2"))
t0 <- proc.time()[["elapsed"]]
# SEDR_EPOCHS overrides the number of epochs (default: the package's).
ep <- Sys.getenv("SEDR_EPOCHS", "")
res <- do.call(RunSEDR, c(list(counts, coords = coords, group.by = section, device = "cpu", n.threads = threads,
                               verbose = FALSE), if (nzchar(ep)) list(epochs = as.integer(ep))))
cat(sprintf("SEDR (block-diagonal, dec = %s): %.1f s\n", res$params$dec, proc.time()[["elapsed"]] - t0))
prep <- SEDR:::.preprocess_counts(counts)
pca <- SEDR:::sedr_pca(prep$scaled, 32, seed = 1, n.threads = threads)$scores
embs <- list(PCA = pca, SEDR = res$embedding)
if (requireNamespace("harmony", quietly = TRUE)) {
  embs[["SEDR+Harmony"]] <- harmony::RunHarmony(res$embedding, data.frame(section = section), "section", verbose = FALSE)
}
ok <- !is.na(layer)
cat("\n| embedding | median iLISI (section) | median cLISI (layer) | ARI 151673 | ARI 151510 |\n|---|---|---|---|---|\n")
for (nm in names(embs)) {
  e <- embs[[nm]]
  l <- ComputeLISI(e[ok, ], data.frame(section = section[ok], layer = layer[ok]), n.threads = threads)
  ari <- sapply(c("151673", "151510"), function(s) {
    idx <- section == s
    # Each section's own graph, for mclust's spatially smoothed start.
    cl <- SEDRClusters(e[idx, ], n.clusters = 7, graph = res$graph[idx, idx], verbose = FALSE)
    SpatialClusterMetrics(layer[idx], cl)[["ARI"]]
  })
  cat(sprintf("| %s | %.2f | %.2f | %.3f | %.3f |\n", nm, median(l$section), median(l$layer), ari[1], ari[2]))
}
