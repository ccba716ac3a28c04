# Sections with different gene sets and sizes (R/sections.R): a merged object
# whose genes are absent from one section, and RunSEDR() on a list of sections.

# Two simulated sections of different sizes; section b lacks the genes
# `missing_b` (all zero there, as after a merge of different panels).
sections <- function(missing_b = 1:20) {
  a <- SimulateSpatialTissue(n.rows = 12, n.cols = 12, n.genes = 120, n.domains = 3, seed = 1)
  b <- SimulateSpatialTissue(n.rows = 9, n.cols = 11, n.genes = 120, n.domains = 3, seed = 2)
  colnames(b$counts) <- rownames(b$coords) <- paste0("b_", colnames(b$counts))
  if (length(missing_b)) b$counts[missing_b, ] <- 0
  list(a = a, b = b, counts = cbind(a$counts, Matrix::drop0(b$counts)), coords = rbind(a$coords, b$coords),
       section = rep(c("a", "b"), c(ncol(a$counts), ncol(b$counts))))
}
fit <- function(object, coords, ...) {
  RunSEDR(object, coords = coords, epochs = 10, n.hvg = 80, npcs = 10, min.spots = 3,
          device = "cpu", n.threads = 1, verbose = FALSE, ...)
}

test_that("a merged object uses the genes detected in every section and says how many", {
  s <- sections()
  expect_message(res <- fit(s$counts, s$coords, group.by = s$section),
                 class = "sedr_message_shared_genes", regexp = "100 of 120 genes")
  expect_false(any(res$features %in% rownames(s$counts)[1:20]))
  expect_equal(nrow(res$embedding), 144 + 99)
  # The message can be silenced by its class, and the result is the same.
  expect_silent(quiet <- suppressMessages(fit(s$counts, s$coords, group.by = s$section),
                                          classes = "sedr_message_shared_genes"))
  expect_identical(quiet$embedding, res$embedding)
  # One section alone, or sections that share every gene: no message.
  expect_no_message(fit(s$a$counts, s$a$coords), class = "sedr_message_shared_genes")
  full <- sections(missing_b = integer())
  expect_no_message(fit(full$counts, full$coords, group.by = full$section), class = "sedr_message_shared_genes")
})

test_that("too few shared genes is an error naming the section", {
  s <- sections(missing_b = 1:115)
  expect_error(suppressMessages(fit(s$counts, s$coords, group.by = s$section)),
               class = "sedr_error_input", regexp = "`group.by`.*share only 5 gene.*section \"b\"")
  s <- sections()
  expect_error(suppressMessages(fit(s$counts, s$coords, group.by = s$section, features = rownames(s$counts)[1:30])),
               class = "sedr_error_input", regexp = "`features`.*without counts in some section")
})

test_that("RunSEDR() on a list of sections of different sizes and genes", {
  s <- sections()
  keep_b <- rownames(s$b$counts)[-(1:20)]
  object <- list(a = s$a$counts, b = s$b$counts[keep_b, ])
  coords <- list(a = s$a$coords, b = s$b$coords)
  expect_message(res <- fit(object, coords, integrate = "soft", seed.use = 3),
                 class = "sedr_message_shared_genes", regexp = "100 of 120 genes")
  expect_s3_class(res, "sedr_result")
  expect_identical(rownames(res$embedding), c(colnames(s$a$counts), colnames(s$b$counts)))
  expect_identical(unname(res$section), s$section)
  expect_identical(res$params$integrate, "soft")
  e <- Matrix::summary(res$graph)
  expect_false(any(res$section[e$i] != res$section[e$j]))
  # The same as the merged object (genes absent from b are zero there).
  merged <- suppressMessages(fit(s$counts, s$coords, group.by = s$section, integrate = "soft", seed.use = 3))
  expect_identical(res$embedding, merged$embedding)
  # Same seed, identical integrated embedding; coordinates matched by name.
  again <- suppressMessages(fit(object, coords[c("b", "a")], integrate = "soft", seed.use = 3))
  expect_identical(again$embedding, res$embedding)
  expect_false(isTRUE(all.equal(
    suppressMessages(fit(object, coords, integrate = "soft", seed.use = 4))$embedding, res$embedding)))
})

test_that("list input: clashing spot names get the section as prefix", {
  s <- sections(missing_b = integer())
  b <- s$b$counts
  colnames(b) <- colnames(s$a$counts)[seq_len(ncol(b))]
  xy_b <- s$b$coords
  rownames(xy_b) <- colnames(b)
  res <- fit(list(s$a$counts, b), list(s$a$coords, xy_b))
  expect_identical(rownames(res$embedding)[c(1, 145)], paste0(c("section1_", "section2_"), colnames(s$a$counts)[1]))
  expect_identical(unique(res$section), c("section1", "section2"))
})

test_that("one section's bad input gets an error naming it", {
  s <- sections(missing_b = integer())
  object <- list(a = s$a$counts, b = s$b$counts)
  coords <- list(a = s$a$coords, b = s$b$coords)
  neg <- object
  neg$b[1, 1] <- -1
  expect_error(fit(neg, coords), class = "sedr_error_input", regexp = "`object\\[\\[\"b\"\\]\\]`: .*negative")
  empty <- object
  empty$b[, 3] <- 0
  expect_error(fit(empty, coords), class = "sedr_error_input", regexp = "`object\\[\\[\"b\"\\]\\]`: .*no counts")
  bad_xy <- coords
  bad_xy$b[2, 1] <- NA
  expect_error(fit(object, bad_xy), class = "sedr_error_input", regexp = "`coords\\[\\[\"b\"\\]\\]`")
  short <- coords
  short$b <- short$b[-1, ]
  expect_error(fit(object, short), class = "sedr_error_input", regexp = "`coords\\[\\[\"b\"\\]\\]`: .*no row")
  few <- object
  few$b <- few$b[1:5, ]
  expect_error(suppressMessages(fit(few, coords)), class = "sedr_error_input",
               regexp = "`object\\[\\[\"b\"\\]\\]`: .*share only 5")
  # List-level mistakes name the argument.
  expect_error(fit(list(), list()), class = "sedr_error_input", regexp = "`object`")
  expect_error(fit(list(a = object$a, a = object$b), coords), class = "sedr_error_input", regexp = "unique")
  expect_error(fit(object, coords["a"]), class = "sedr_error_input", regexp = "`coords`")
  expect_error(fit(object, list(a = coords$a, c = coords$b)), class = "sedr_error_input", regexp = "same names")
  expect_error(fit(object, coords, group.by = "x"), class = "sedr_error_input", regexp = "`group.by`")
  # The user's list is not changed.
  before <- object
  try(fit(neg, coords), silent = TRUE)
  expect_identical(object, before)
})

test_that("merged Seurat objects with different genes use the shared ones", {
  skip_if_not_installed("SeuratObject")
  s <- sections(missing_b = integer())
  a <- SeuratObject::CreateSeuratObject(s$a$counts, meta.data = data.frame(
    x = s$a$coords[, 1], y = s$a$coords[, 2], section = "a", row.names = colnames(s$a$counts)))
  b <- SeuratObject::CreateSeuratObject(s$b$counts[-(1:20), ], meta.data = data.frame(
    x = s$b$coords[, 1], y = s$b$coords[, 2], section = "b", row.names = colnames(s$b$counts)))
  obj <- merge(a, b)
  expect_message(obj <- RunSEDR(obj, group.by = "section", integrate = "soft", epochs = 10, n.hvg = 80,
                                npcs = 10, min.spots = 3, device = "cpu", verbose = FALSE),
                 class = "sedr_message_shared_genes", regexp = "100 of 120 genes")
  emb <- SeuratObject::Embeddings(obj, "sedr")
  expect_equal(nrow(emb), 144 + 99)
  expect_false(any(SeuratObject::Misc(obj[["sedr"]])$features %in% rownames(s$a$counts)[1:20]))
})
