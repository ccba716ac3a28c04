# BuildSpatialGraph(): k-NN / radius graphs on 2-D and 3-D coordinates.

# A hexagonal (Visium-like) lattice with unit spacing: every spot's nearest
# neighbours are at distance 1, six of them for a spot away from the border.
hex_grid <- function(n.rows = 9, n.cols = 9, prefix = "s") {
  g <- expand.grid(c = seq_len(n.cols) - 1, r = seq_len(n.rows) - 1)
  xy <- cbind(x = g$c + 0.5 * (g$r %% 2), y = g$r * sqrt(3) / 2)
  rownames(xy) <- paste0(prefix, seq_len(nrow(xy)))
  xy
}

# Neighbour sets as a list of sorted integer vectors.
nb_sets <- function(A) {
  A <- methods::as(A, "CsparseMatrix")
  lapply(seq_len(ncol(A)), function(j) sort(A@i[(A@p[j] + 1L):A@p[j + 1L]] + 1L))
}

test_that("k = 6 on a hex grid links interior spots to their six lattice neighbours", {
  xy <- hex_grid()
  n <- nrow(xy)
  A <- BuildSpatialGraph(xy, k.neighbors = 6)
  expect_s4_class(A, "dgCMatrix")
  expect_equal(dim(A), c(n, n))
  expect_identical(dimnames(A), list(rownames(xy), rownames(xy)))
  # Symmetric, unweighted, no self loops.
  expect_true(Matrix::isSymmetric(A))
  expect_true(all(A@x == 1))
  expect_true(all(Matrix::diag(A) == 0))
  deg <- Matrix::rowSums(A)
  expect_equal(min(deg), 6)

  d <- as.matrix(dist(xy))
  unit <- abs(d - 1) < 1e-9
  n_unit <- rowSums(unit)
  expect_equal(max(n_unit), 6)
  # Spots whose whole 2-neighbourhood is interior cannot receive extra edges
  # from border spots (which reach out to distance sqrt(3) or 2).
  deep <- which(vapply(seq_len(n), function(i) all(n_unit[d[i, ] <= 2 + 1e-9] == 6), logical(1)))
  expect_gt(length(deep), 5)
  sets <- nb_sets(A)
  expect_identical(sets[deep], lapply(deep, function(i) unname(which(unit[i, ]))))
  expect_true(all(deg[deep] == 6))
  # Every edge of the graph is at most the k-th nearest distance of one end.
  kth <- apply(d + diag(Inf, n), 1, function(v) sort(v)[6])
  s <- Matrix::summary(A)
  expect_true(all(d[cbind(s$i, s$j)] <= pmax(kth[s$i], kth[s$j]) + 1e-9))
})

test_that("the k-NN graph is the union of each spot's k nearest (min degree = k)", {
  xy <- hex_grid(7, 8)
  for (k in c(1, 3, 12)) {
    A <- BuildSpatialGraph(xy, k.neighbors = k)
    expect_true(Matrix::isSymmetric(A))
    expect_equal(min(Matrix::rowSums(A)), k)
    expect_true(all(Matrix::diag(A) == 0))
  }
})

test_that("spot names are optional", {
  xy <- unname(hex_grid(5, 5))
  A <- BuildSpatialGraph(xy, k.neighbors = 6)
  expect_equal(dim(A), c(25L, 25L))
  expect_null(rownames(A))
  expect_true(Matrix::isSymmetric(A))
})

test_that("a data frame of coordinates works like the matrix", {
  xy <- hex_grid(6, 6)
  A <- BuildSpatialGraph(xy, k.neighbors = 6)
  B <- BuildSpatialGraph(as.data.frame(xy), k.neighbors = 6)
  expect_identical(A, B)
})

test_that("group gives a block-diagonal graph with no edge across sections", {
  xy1 <- hex_grid(6, 6, prefix = "a")
  xy2 <- hex_grid(6, 6, prefix = "b")
  n <- nrow(xy1)
  # The two sections lie on top of each other: without `group` they would mix.
  xy <- rbind(xy1, xy2)
  grp <- rep(c("A", "B"), each = n)
  A <- BuildSpatialGraph(xy, k.neighbors = 6, group = grp)
  expect_true(Matrix::isSymmetric(A))
  expect_equal(Matrix::nnzero(A[1:n, n + (1:n)]), 0)
  expect_equal(Matrix::nnzero(A[n + (1:n), 1:n]), 0)
  # Each block is the section's own graph.
  single <- BuildSpatialGraph(xy1, k.neighbors = 6)
  expect_equal(unname(as.matrix(A[1:n, 1:n])), unname(as.matrix(single)))
  expect_equal(unname(as.matrix(A[n + (1:n), n + (1:n)])), unname(as.matrix(single)))
  expect_equal(min(Matrix::rowSums(A)), 6)
  # Without group, the stacked sections are connected.
  mixed <- BuildSpatialGraph(xy, k.neighbors = 6)
  expect_gt(Matrix::nnzero(mixed[1:n, n + (1:n)]), 0)
  # Interleaved (unsorted) labels work too.
  perm <- c(rbind(1:n, n + (1:n)))
  Ap <- BuildSpatialGraph(xy[perm, ], k.neighbors = 6, group = grp[perm])
  expect_equal(as.matrix(Ap), as.matrix(A[perm, perm]))
})

test_that("radius connects exactly the spots closer than the radius", {
  xy <- hex_grid(7, 7)
  A <- BuildSpatialGraph(xy, radius = 1.01)
  d <- as.matrix(dist(xy))
  expected <- (d < 1.01) * 1
  diag(expected) <- 0
  expect_equal(unname(as.matrix(A)), unname(expected))
  expect_true(Matrix::isSymmetric(A))
  expect_equal(max(Matrix::rowSums(A)), 6)
  # A larger radius reaches the second ring.
  B <- BuildSpatialGraph(xy, radius = 1.8)
  expect_equal(max(Matrix::rowSums(B)), 12)
  # A radius below the spacing leaves every spot isolated.
  C <- BuildSpatialGraph(xy, radius = 0.5)
  expect_equal(Matrix::nnzero(C), 0)
  # group also applies to radius graphs.
  xy2 <- rbind(xy, `rownames<-`(xy, paste0("t", seq_len(nrow(xy)))))
  G <- BuildSpatialGraph(xy2, radius = 1.01, group = rep(1:2, each = nrow(xy)))
  n <- nrow(xy)
  expect_equal(Matrix::nnzero(G[1:n, n + (1:n)]), 0)
  expect_error(BuildSpatialGraph(xy, radius = -1), class = "sedr_error_input", regexp = "radius")
  expect_error(BuildSpatialGraph(xy, radius = c(1, 2)), class = "sedr_error_input", regexp = "radius")
  expect_error(BuildSpatialGraph(xy, radius = NA_real_), class = "sedr_error_input", regexp = "radius")
})

test_that("the graph is deterministic, also with ties and several threads", {
  # A square grid has many exact ties at the k-th distance.
  g <- expand.grid(x = 1:10, y = 1:10)
  xy <- as.matrix(g)
  rownames(xy) <- paste0("q", seq_len(nrow(xy)))
  A1 <- BuildSpatialGraph(xy, k.neighbors = 5)
  A2 <- BuildSpatialGraph(xy, k.neighbors = 5)
  A3 <- BuildSpatialGraph(xy, k.neighbors = 5, n.threads = 2)
  expect_identical(A1, A2)
  expect_identical(A1, A3)
  expect_equal(min(Matrix::rowSums(A1)), 5)
})

test_that("duplicate (stacked) coordinates are allowed and linked", {
  xy <- hex_grid(5, 5)
  xy <- rbind(xy, dup = xy[13, ])
  A <- BuildSpatialGraph(xy, k.neighbors = 6)
  expect_equal(nrow(A), 26)
  expect_true(Matrix::isSymmetric(A))
  expect_true(all(Matrix::diag(A) == 0))
  expect_equal(A["dup", "s13"], 1)
  expect_equal(min(Matrix::rowSums(A)), 6)
  # Several spots at one position still give a valid graph.
  many <- rbind(xy, matrix(rep(xy[1, ], 8), ncol = 2, byrow = TRUE,
                           dimnames = list(paste0("stack", 1:8), NULL)))
  B <- BuildSpatialGraph(many, k.neighbors = 6)
  expect_true(Matrix::isSymmetric(B))
  expect_equal(min(Matrix::rowSums(B)), 6)
  expect_true(all(Matrix::diag(B) == 0))
})

test_that("3-D coordinates work; distant planes stay apart", {
  xy <- hex_grid(6, 6)
  n <- nrow(xy)
  xyz <- rbind(cbind(xy, z = 0), cbind(xy, z = 50))
  rownames(xyz) <- c(paste0("p", 1:n), paste0("q", 1:n))
  A <- BuildSpatialGraph(xyz, k.neighbors = 6)
  expect_equal(dim(A), c(2L * n, 2L * n))
  expect_true(Matrix::isSymmetric(A))
  expect_equal(min(Matrix::rowSums(A)), 6)
  expect_equal(Matrix::nnzero(A[1:n, n + (1:n)]), 0)
  # Each plane equals the 2-D graph.
  expect_equal(unname(as.matrix(A[1:n, 1:n])), unname(as.matrix(BuildSpatialGraph(xy, k.neighbors = 6))))
  # Close planes are linked through z.
  close <- rbind(cbind(xy, z = 0), cbind(xy, z = 0.1))
  rownames(close) <- rownames(xyz)
  B <- BuildSpatialGraph(close, k.neighbors = 6)
  expect_gt(Matrix::nnzero(B[1:n, n + (1:n)]), 0)
  expect_equal(B["p1", "q1"], 1)
})

test_that("invalid coordinates are input errors naming `coords`", {
  xy <- hex_grid(5, 5)
  chr <- xy
  storage.mode(chr) <- "character"
  expect_error(BuildSpatialGraph(chr), class = "sedr_error_input", regexp = "coords")
  df <- data.frame(x = xy[, 1], y = as.character(xy[, 2]))
  expect_error(BuildSpatialGraph(df), class = "sedr_error_input", regexp = "coords")
  expect_error(BuildSpatialGraph(list(xy)), class = "sedr_error_input", regexp = "coords")
  na <- xy
  na[3, 2] <- NA
  expect_error(BuildSpatialGraph(na, k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  nan <- xy
  nan[4, 1] <- NaN
  expect_error(BuildSpatialGraph(nan, k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  inf <- xy
  inf[5, 1] <- Inf
  expect_error(BuildSpatialGraph(inf, k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  expect_error(BuildSpatialGraph(xy[, 1, drop = FALSE], k.neighbors = 6),
               class = "sedr_error_input", regexp = "coords")
  expect_error(BuildSpatialGraph(xy[, 1], k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  expect_error(BuildSpatialGraph(cbind(xy, xy), k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  expect_error(BuildSpatialGraph(xy[0, ], k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  const <- matrix(3, nrow = 20, ncol = 2, dimnames = list(paste0("c", 1:20), NULL))
  expect_error(BuildSpatialGraph(const, k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
  dup <- xy
  rownames(dup)[2] <- rownames(dup)[1]
  expect_error(BuildSpatialGraph(dup, k.neighbors = 6), class = "sedr_error_input", regexp = "coords")
})

test_that("invalid k.neighbors, group and n.threads are input errors naming the argument", {
  xy <- hex_grid(5, 5)
  expect_error(BuildSpatialGraph(xy, k.neighbors = 0), class = "sedr_error_input", regexp = "k.neighbors")
  expect_error(BuildSpatialGraph(xy, k.neighbors = -3), class = "sedr_error_input", regexp = "k.neighbors")
  expect_error(BuildSpatialGraph(xy, k.neighbors = 2.5), class = "sedr_error_input", regexp = "k.neighbors")
  expect_error(BuildSpatialGraph(xy, k.neighbors = NA), class = "sedr_error_input", regexp = "k.neighbors")
  # Fewer spots than k + 1.
  expect_error(BuildSpatialGraph(xy[1:6, ], k.neighbors = 6), class = "sedr_error_input", regexp = "k.neighbors")
  expect_silent(BuildSpatialGraph(xy[1:7, ], k.neighbors = 6))
  # ... also within one section.
  grp <- c(rep("a", 20), rep("b", 5))
  expect_error(BuildSpatialGraph(xy, k.neighbors = 6, group = grp),
               class = "sedr_error_input", regexp = "k.neighbors")
  expect_error(BuildSpatialGraph(xy, k.neighbors = 6, group = rep("a", 24)),
               class = "sedr_error_input", regexp = "group")
  expect_error(BuildSpatialGraph(xy, k.neighbors = 6, group = c(NA, rep("a", 24))),
               class = "sedr_error_input", regexp = "group")
  expect_error(BuildSpatialGraph(xy, k.neighbors = 6, n.threads = 0),
               class = "sedr_error_input", regexp = "n.threads")
})

test_that("DLPFC 151673 graph matches the reference edge counts", {
  # SEDR_DATA is the data root (as in bench/common.R), holding dlpfc_151673/.
  root <- Sys.getenv("SEDR_DATA", "")
  if (!nzchar(root)) {
    root <- normalizePath(testthat::test_path("../../../shared/data"), mustWork = FALSE)
  }
  spots_file <- file.path(root, "dlpfc_151673", "spots.tsv.gz")
  skip_if_not(file.exists(spots_file), "DLPFC 151673 data not available (set SEDR_DATA)")
  spots <- utils::read.delim(gzfile(spots_file))
  xy <- as.matrix(spots[, c("x", "y")])
  rownames(xy) <- spots$barcode
  expect_equal(nrow(xy), 3639)
  A12 <- BuildSpatialGraph(xy, k.neighbors = 12)
  expect_equal(Matrix::nnzero(A12) + nrow(A12), 48471)
  expect_equal(min(Matrix::rowSums(A12)), 12)
  expect_true(Matrix::isSymmetric(A12))
  A6 <- BuildSpatialGraph(xy, k.neighbors = 6)
  expect_equal(Matrix::nnzero(A6) + nrow(A6), 26003)
  expect_equal(min(Matrix::rowSums(A6)), 6)
  expect_identical(rownames(A6), spots$barcode)
})
