small_sim <- function(...) {
  SimulateSpatialTissue(n.rows = 12, n.cols = 10, n.genes = 80,
                        n.domains = 3, markers.per.domain = 5, ...)
}

test_that("default simulation has the documented structure", {
  sim <- SimulateSpatialTissue()
  expect_s3_class(sim, "sedr_simulation")
  expect_s4_class(sim$counts, "dgCMatrix")
  expect_equal(dim(sim$counts), c(500L, 1600L))
  expect_equal(rownames(sim$counts)[c(1, 500)], c("Gene1", "Gene500"))
  expect_equal(colnames(sim$counts)[c(1, 1600)], c("Spot1", "Spot1600"))
  expect_true(is.matrix(sim$coords) && is.numeric(sim$coords))
  expect_equal(colnames(sim$coords), c("x", "y"))
  expect_equal(rownames(sim$coords), colnames(sim$counts))
  expect_true(is.factor(sim$domain))
  expect_equal(names(sim$domain), colnames(sim$counts))
  expect_equal(nlevels(sim$domain), 5L)
  # Bands of equal spot count.
  expect_equal(as.vector(table(sim$domain)), rep(320L, 5))
  expect_length(sim$markers, 5L)
  expect_equal(lengths(sim$markers, use.names = FALSE), rep(20L, 5))
  expect_false(anyDuplicated(unlist(sim$markers)) > 0)
  expect_true(all(unlist(sim$markers) %in% rownames(sim$counts)))
  # Counts are non-negative whole numbers.
  expect_true(all(sim$counts@x > 0 & sim$counts@x == round(sim$counts@x)))
})

test_that("spots lie on a hexagonal lattice with spacing 100", {
  sim <- small_sim()
  xy <- sim$coords
  d <- as.matrix(dist(xy))
  diag(d) <- Inf
  expect_equal(unname(apply(d, 1, min)), rep(100, nrow(xy)), tolerance = 1e-9)
  # An interior spot has exactly six neighbours at distance 100.
  n_nb <- rowSums(abs(d - 100) < 1e-6)
  expect_equal(max(n_nb), 6)
  # Odd rows are shifted by half a spacing.
  expect_equal(unname(xy[c(1, 11), "x"]), c(0, 50))
  expect_equal(unname(xy[11, "y"]), 100 * sqrt(3) / 2)
})

test_that("domains are spatially coherent layers", {
  sim <- small_sim()
  xy <- sim$coords
  d <- as.matrix(dist(xy))
  nb <- abs(d - 100) < 1e-6
  same <- outer(as.integer(sim$domain), as.integer(sim$domain), "==")
  # Most neighbouring pairs share a domain (random labels would give ~1/3).
  expect_gt(sum(nb & same) / sum(nb), 0.75)
  # Domain order follows y: the mean y increases with the domain index.
  expect_false(is.unsorted(tapply(xy[, "y"], sim$domain, mean)))
})

test_that("markers are up-regulated in their domain by about exp(effect)", {
  sim <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 200,
                               n.domains = 4, markers.per.domain = 10,
                               effect = 2)
  lib <- Matrix::colSums(sim$counts)
  ratios <- vapply(names(sim$markers), function(d) {
    m <- sim$markers[[d]]
    expr <- Matrix::colSums(sim$counts[m, , drop = FALSE]) / lib
    mean(expr[sim$domain == d]) / mean(expr[sim$domain != d])
  }, numeric(1))
  expect_true(all(ratios > 4 & ratios < 12))

  flat <- SimulateSpatialTissue(n.rows = 20, n.cols = 20, n.genes = 200,
                                n.domains = 4, markers.per.domain = 10,
                                effect = 0)
  m <- flat$markers[[1]]
  expr <- Matrix::colSums(flat$counts[m, ])
  ratio0 <- mean(expr[flat$domain == "Domain1"]) /
    mean(expr[flat$domain != "Domain1"])
  expect_lt(abs(ratio0 - 1), 0.25)
})

test_that("library sizes vary around depth", {
  sim <- small_sim(depth = 5000)
  lib <- Matrix::colSums(sim$counts)
  expect_lt(abs(stats::median(lib) / 5000 - 1), 0.2)
  expect_gt(stats::sd(log(lib)), 0.1)
})

test_that("a gradient gene follows x smoothly", {
  sim <- small_sim(effect = 2)
  expect_length(sim$gradient, 2L)
  g <- as.numeric(sim$counts[sim$gradient[1], ]) /
    Matrix::colSums(sim$counts)
  expect_gt(stats::cor(g, sim$coords[, "x"], method = "spearman"), 0.3)
})

test_that("simulation is reproducible and leaves the global RNG alone", {
  expect_identical(small_sim(seed = 7), small_sim(seed = 7))
  expect_false(identical(small_sim(seed = 7)$counts,
                         small_sim(seed = 8)$counts))

  set.seed(123)
  before <- .Random.seed
  small_sim(seed = 99)
  expect_identical(.Random.seed, before)

  # With no seed set yet, none is created.
  old <- .Random.seed
  on.exit(assign(".Random.seed", old, envir = globalenv()), add = TRUE)
  rm(".Random.seed", envir = globalenv())
  small_sim()
  expect_false(exists(".Random.seed", envir = globalenv(), inherits = FALSE))
})

test_that("simulation does not depend on the user's RNG kind", {
  set.seed(1)
  old_kind <- RNGkind()
  old_seed <- .Random.seed
  on.exit({
    RNGkind(old_kind[1], old_kind[2], old_kind[3])
    assign(".Random.seed", old_seed, envir = globalenv())
  }, add = TRUE)
  RNGkind("L'Ecuyer-CMRG")
  under_lecuyer <- small_sim(seed = 7)
  expect_equal(RNGkind()[1], "L'Ecuyer-CMRG")
  RNGkind("Mersenne-Twister")
  under_mt <- small_sim(seed = 7)
  expect_identical(under_lecuyer, under_mt)
})

test_that("the default simulation is fast", {
  skip_on_cran()
  SimulateSpatialTissue()  # warm up (loads Matrix methods)
  elapsed <- system.time(SimulateSpatialTissue())[["elapsed"]]
  expect_lt(elapsed, 1)
})

test_that("invalid arguments raise classed errors naming the argument", {
  expect_error(SimulateSpatialTissue(n.rows = 0), class = "sedr_error_input")
  expect_error(SimulateSpatialTissue(n.rows = 0), "`n.rows`")
  expect_error(SimulateSpatialTissue(n.cols = 2.5), "`n.cols`")
  expect_error(SimulateSpatialTissue(n.genes = "a"), "`n.genes`")
  expect_error(SimulateSpatialTissue(n.domains = 1), "`n.domains`")
  expect_error(SimulateSpatialTissue(n.rows = 3, n.domains = 4),
               "`n.domains`.*n.rows", class = "sedr_error_input")
  expect_error(SimulateSpatialTissue(n.genes = 10, n.domains = 3,
                                     markers.per.domain = 5),
               "`n.genes`", class = "sedr_error_input")
  expect_error(SimulateSpatialTissue(markers.per.domain = 0),
               "`markers.per.domain`")
  expect_error(SimulateSpatialTissue(depth = -1), "`depth`")
  expect_error(SimulateSpatialTissue(effect = NA_real_), "`effect`")
  expect_error(SimulateSpatialTissue(effect = -1), "`effect`")
  expect_error(SimulateSpatialTissue(seed = c(1, 2)), "`seed`")
  err <- tryCatch(SimulateSpatialTissue(n.domains = 1), error = identity)
  expect_s3_class(err, "sedr_error")
  expect_equal(err$arg, "n.domains")
})

test_that("print method summarises the simulation", {
  expect_output(print(small_sim()), "80 genes x 120 spots, 3 domains")
})

test_that("SimulationToSeurat builds a Seurat object with coordinates", {
  skip_if_not_installed("SeuratObject")
  sim <- small_sim()
  obj <- SimulationToSeurat(sim)
  expect_s4_class(obj, "Seurat")
  expect_equal(SeuratObject::Assays(obj), "Spatial")
  expect_equal(SeuratObject::DefaultAssay(obj), "Spatial")
  meta <- obj[[]]
  expect_true(all(c("x", "y", "domain") %in% colnames(meta)))
  expect_equal(meta$x, unname(sim$coords[, "x"]))
  expect_equal(meta$y, unname(sim$coords[, "y"]))
  expect_equal(as.character(meta$domain), as.character(sim$domain))
  cnt <- SEDR:::seurat_layer(obj, "Spatial", "counts")
  expect_equal(unname(as.matrix(cnt)), unname(as.matrix(sim$counts)))
  expect_equal(colnames(obj), colnames(sim$counts))

  expect_error(SimulationToSeurat(list(counts = 1)), "`sim`",
               class = "sedr_error_input")
})
