# SEDRIntegration(): the IntegrateLayers() method for Seurat 5, called here
# directly with what IntegrateLayers() would pass (Seurat 4 has no
# IntegrateLayers, so the call itself cannot be tested on this machine).

skip_if_not_installed("SeuratObject")

two_sections <- function() {
  a <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 1)
  b <- SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 100, seed = 2)
  colnames(b$counts) <- rownames(b$coords) <- paste0("b_", colnames(b$counts))
  counts <- cbind(a$counts, b$counts)
  pcs <- stats::prcomp(t(log1p(as.matrix(counts))), rank. = 10)$x
  list(orig = SeuratObject::CreateDimReducObject(pcs, key = "PC_", assay = "RNA"),
       groups = data.frame(group = rep(c("a", "b"), each = 100), row.names = rownames(pcs)),
       coords = rbind(a$coords, b$coords), spots = rownames(pcs))
}

s <- two_sections()

run_int <- function(...) {
  args <- list(object = NULL, orig = s$orig, groups = s$groups, coords = s$coords, epochs = 10,
               device = "cpu", verbose = FALSE)
  over <- list(...)
  args[names(over)] <- over
  do.call(SEDRIntegration, args)
}

test_that("SEDRIntegration returns one named DimReduc over all spots, trained without DEC", {
  out <- run_int()
  expect_named(out, "integrated.sedr")
  red <- out$integrated.sedr
  expect_s4_class(red, "DimReduc")
  emb <- SeuratObject::Embeddings(red)
  expect_equal(dim(emb), c(200L, 32L))
  expect_identical(rownames(emb), s$spots)
  expect_true(all(is.finite(emb)))
  expect_identical(SeuratObject::Key(red), "SEDRintegrated_")
  misc <- SeuratObject::Misc(red)
  expect_false(misc$params$dec)
  expect_equal(misc$params$input, "reduction")
  expect_equal(nrow(misc$losses), 10)
  # Coordinates in another order are aligned by spot name; the result is the same.
  again <- run_int(coords = s$coords[rev(seq_len(200)), ], new.reduction = "x")
  expect_identical(SeuratObject::Embeddings(again$x), emb)
})

test_that("the graph is block diagonal: the sections only share the model", {
  # Same input, groups relabelled: a different block structure changes the result.
  one <- run_int(groups = data.frame(group = rep("all", 200), row.names = s$spots))
  two <- run_int()
  expect_false(isTRUE(all.equal(SeuratObject::Embeddings(one[[1]]), SeuratObject::Embeddings(two[[1]]))))
})

test_that("SEDRIntegration gives classed errors for missing or bad inputs", {
  expect_error(run_int(coords = NULL), class = "sedr_error_input", regexp = "coords")
  expect_error(run_int(orig = matrix(1:4, 2)), class = "sedr_error_input", regexp = "DimReduc")
  expect_error(run_int(groups = NULL), class = "sedr_error_input")
  expect_error(run_int(coords = s$coords[1:150, ]), class = "sedr_error_input")
  expect_error(run_int(groups = data.frame(group = c(rep("a", 199), "b"), row.names = s$spots)),
               class = "sedr_error_input", regexp = "single spot")
  expect_error(run_int(new.reduction = ""), class = "sedr_error_input")
})
