# A small end-to-end run for `R -d valgrind` (see RELIABILITY.md): graph,
# PCA, a short training, clustering and the error paths of the FFI.
suppressPackageStartupMessages(library(SEDR))
sim <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, n.domains = 2)
A <- BuildSpatialGraph(sim$coords, k.neighbors = 6)
res <- RunSEDR(sim$counts, coords = sim$coords, epochs = 3, n.hvg = 50, npcs = 10, min.spots = 5,
               options = SEDROptions(dec.epochs = 2, dec.interval = 1, kmeans.restarts = 1),
               device = "cpu", verbose = FALSE)
cl <- SEDRClusters(res, n.clusters = 2, verbose = FALSE)
l <- ComputeLISI(res$embedding, cl, perplexity = 5)
e1 <- tryCatch(BuildSpatialGraph(sim$coords[1:3, ], k.neighbors = 6), error = function(e) class(e)[1])
e2 <- tryCatch(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_fail, "panic")), error = function(e) class(e)[1])
e3 <- tryCatch(SEDR:::unwrap_rust(.Call(SEDR:::wrap__sedr_fail, "torch")), error = function(e) class(e)[1])
cat("valgrind smoke done:", dim(res$embedding), nlevels(cl), e1, e2, e3, "\n")
