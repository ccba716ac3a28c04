metric_names <- c("ARI", "AMI", "NMI", "homogeneity", "completeness",
                  "v_measure", "purity", "silhouette")

test_that("identical labels score 1 on every agreement metric", {
  x <- c(1, 1, 2, 2, 2, 3, 3, 3, 3)
  m <- SpatialClusterMetrics(x, x)
  expect_named(m, metric_names)
  expect_equal(unname(m[metric_names[1:7]]), rep(1, 7))
  expect_true(is.na(m[["silhouette"]]))
})

test_that("renaming the clusters does not change the scores", {
  truth <- c(1, 1, 2, 2, 2, 3, 3, 3, 3)
  renamed <- c("c", "c", "a", "a", "a", "b", "b", "b", "b")
  m <- SpatialClusterMetrics(truth, renamed)
  expect_equal(unname(m[1:7]), rep(1, 7))

  # And renaming inside a non-trivial comparison changes nothing either.
  pred <- c(1, 2, 2, 2, 3, 3, 1, 3, 3)
  perm <- c("z", "x", "y")[pred]
  expect_equal(SpatialClusterMetrics(truth, pred),
               SpatialClusterMetrics(truth, perm))
  expect_equal(SpatialClusterMetrics(factor(truth), pred),
               SpatialClusterMetrics(truth, pred))
})

test_that("a small example matches hand-computed values", {
  truth <- c(1, 1, 1, 2, 2, 2)
  pred <- c(1, 1, 2, 2, 3, 3)
  m <- SpatialClusterMetrics(truth, pred)

  # Contingency table rows (2, 1, 0) and (0, 1, 2):
  # sum C(n_ij, 2) = 2, sum C(a_i, 2) = 6, sum C(b_j, 2) = 3, C(6, 2) = 15.
  # ARI = (2 - 6 * 3 / 15) / ((6 + 3) / 2 - 6 * 3 / 15) = 0.8 / 3.3.
  expect_equal(m[["ARI"]], 0.8 / 3.3)
  expect_equal(m[["ARI"]], 0.2424242, tolerance = 1e-6)

  # MI = 2 * (2/6) * log(6 * 2 / (3 * 2)) = (2/3) log 2; H_t = log 2,
  # H_p = log 3.
  mi <- 2 / 3 * log(2)
  expect_equal(m[["homogeneity"]], 2 / 3)
  expect_equal(m[["completeness"]], mi / log(3))
  expect_equal(m[["completeness"]], 0.4206198, tolerance = 1e-6)
  expect_equal(m[["NMI"]], mi / mean(c(log(2), log(3))))
  expect_equal(m[["NMI"]], 0.5158037, tolerance = 1e-6)
  expect_equal(m[["v_measure"]], m[["NMI"]])

  # Majorities per predicted cluster: 2, 1, 2 of 6 spots.
  expect_equal(m[["purity"]], 5 / 6)

  # EMI by hand: for every (class of 3, cluster of 2) pair, n_ij = 2 has
  # probability C(3,2) / C(6,2) = 3/15 and adds (2/6) log 2; n_ij = 1 adds
  # log 1 = 0. Six pairs: EMI = 6 * 3/15 * (1/3) log 2 = 0.4 log 2.
  emi <- 0.4 * log(2)
  expect_equal(m[["AMI"]], (mi - emi) / (mean(c(log(2), log(3))) - emi))
  expect_equal(m[["AMI"]], 0.2987925, tolerance = 1e-6)
})

test_that("EMI equals the average MI over all permutations of the labels", {
  truth <- c(1, 1, 1, 2, 2, 2)
  pred <- c(1, 1, 2, 2, 3, 3)
  mi <- function(x, y) {
    p <- table(x, y) / length(x)
    pa <- rowSums(p)
    pb <- colSums(p)
    nz <- p > 0
    sum(p[nz] * log(p[nz] / outer(pa, pb)[nz]))
  }
  perms <- function(v) {
    if (length(v) <= 1) return(list(v))
    do.call(c, lapply(seq_along(v), function(i) {
      lapply(perms(v[-i]), function(r) c(v[i], r))
    }))
  }
  all_perms <- perms(seq_along(pred))
  expect_length(all_perms, 720L)
  emi_brute <- mean(vapply(all_perms, function(p) mi(truth, pred[p]),
                           numeric(1)))
  expect_equal(.expected_mutual_info(c(3, 3), c(2, 2, 2)), emi_brute)

  # Unbalanced marginals too.
  t2 <- c(1, 1, 1, 1, 2, 3)
  p2 <- c(1, 2, 2, 1, 1, 2)
  emi2 <- mean(vapply(all_perms, function(p) mi(t2, p2[p]), numeric(1)))
  expect_equal(.expected_mutual_info(c(4, 1, 1), c(3, 3)), emi2)
  m2 <- SpatialClusterMetrics(t2, p2)
  h <- function(x) {
    p <- table(x) / length(x)
    -sum(p * log(p))
  }
  expect_equal(m2[["AMI"]],
               (mi(t2, p2) - emi2) / (mean(c(h(t2), h(p2))) - emi2))
})

test_that("ARI agrees with mclust::adjustedRandIndex", {
  skip_if_not_installed("mclust")
  set.seed(11)
  for (k in 1:5) {
    n <- sample(20:300, 1)
    truth <- sample(sample(2:8, 1), n, replace = TRUE)
    pred <- ifelse(stats::runif(n) < 0.6, truth,
                   sample(sample(2:9, 1), n, replace = TRUE))
    expect_equal(SpatialClusterMetrics(truth, pred)[["ARI"]],
                 mclust::adjustedRandIndex(truth, pred))
  }
})

test_that("random labellings score near 0 on the adjusted metrics", {
  set.seed(3)
  truth <- sample(5, 2000, replace = TRUE)
  pred <- sample(6, 2000, replace = TRUE)
  m <- SpatialClusterMetrics(truth, pred)
  expect_lt(abs(m[["ARI"]]), 0.02)
  expect_lt(abs(m[["AMI"]]), 0.02)
  # NMI is not adjusted for chance: it stays positive.
  expect_gt(m[["NMI"]], m[["AMI"]])
})

test_that("degenerate labellings follow scikit-learn's conventions", {
  one <- rep("a", 6)
  m <- SpatialClusterMetrics(one, one)
  expect_equal(unname(m[c("ARI", "AMI", "NMI")]), c(1, 1, 1))

  # Truth has one class, prediction splits it: perfectly homogeneous,
  # not complete, no information.
  m <- SpatialClusterMetrics(one, c(1, 1, 2, 2, 3, 3))
  expect_equal(m[["ARI"]], 0)
  expect_equal(m[["NMI"]], 0)
  expect_equal(m[["homogeneity"]], 1)
  expect_equal(m[["completeness"]], 0)
  expect_equal(m[["purity"]], 1)

  # All spots apart in both labellings: identical partitions.
  m <- SpatialClusterMetrics(1:5, letters[1:5])
  expect_equal(m[["ARI"]], 1)
  expect_equal(m[["NMI"]], 1)
})

test_that("spots with NA labels are dropped, with their embedding rows", {
  truth <- c(1, 1, NA, 2, 2, 3, 3)
  pred <- c(1, 1, 1, 2, NA, 3, 2)
  emb <- cbind(c(0, 0.1, 50, 5, 99, 10, 10.2), 0)
  keep <- !is.na(truth) & !is.na(pred)
  expect_equal(SpatialClusterMetrics(truth, pred, emb),
               SpatialClusterMetrics(truth[keep], pred[keep],
                                     emb[keep, , drop = FALSE]))
  expect_false(anyNA(SpatialClusterMetrics(truth, pred, emb)))
})

test_that("silhouette matches a hand computation", {
  # Cluster A at 0 and 1, cluster B a singleton at 10.
  # s(0) = (10 - 1) / 10, s(1) = (9 - 1) / 9, singleton s = 0.
  emb <- matrix(c(0, 1, 10), ncol = 1)
  m <- SpatialClusterMetrics(c(1, 1, 2), c("A", "A", "B"), emb)
  expect_equal(m[["silhouette"]], (0.9 + 8 / 9 + 0) / 3)
  # A single predicted cluster has no silhouette.
  m1 <- SpatialClusterMetrics(c(1, 1, 2), c(1, 1, 1), emb)
  expect_true(is.na(m1[["silhouette"]]))
  # A data frame embedding is accepted.
  m_df <- SpatialClusterMetrics(c(1, 1, 2), c("A", "A", "B"),
                                data.frame(v = c(0, 1, 10)))
  expect_equal(m_df[["silhouette"]], m[["silhouette"]])
})

test_that("silhouette agrees with cluster::silhouette", {
  skip_if_not_installed("cluster")
  set.seed(5)
  n <- 300
  lab <- sample(4, n, replace = TRUE)
  emb <- matrix(stats::rnorm(n * 3), n) + lab
  ref <- mean(cluster::silhouette(lab, stats::dist(emb))[, "sil_width"])
  expect_equal(SpatialClusterMetrics(lab, lab, emb)[["silhouette"]], ref,
               tolerance = 1e-8)
})

test_that("large inputs use a fixed subsample without touching the RNG", {
  set.seed(9)
  n <- 6000
  lab <- rep(1:3, length.out = n)
  emb <- cbind(stats::rnorm(n) + 3 * lab, stats::rnorm(n))
  full <- .mean_silhouette(emb, lab, max_n = n)

  set.seed(42)
  before <- .Random.seed
  s1 <- SpatialClusterMetrics(lab, lab, emb)[["silhouette"]]
  expect_identical(.Random.seed, before)
  s2 <- SpatialClusterMetrics(lab, lab, emb)[["silhouette"]]
  expect_identical(s1, s2)
  expect_false(identical(s1, full))  # really a subsample
  expect_lt(abs(s1 - full), 0.02)
})

test_that("invalid inputs raise classed errors naming the argument", {
  expect_error(SpatialClusterMetrics(1:3, 1:4), "`predicted`",
               class = "sedr_error_input")
  err <- tryCatch(SpatialClusterMetrics(1:3, 1:4), error = identity)
  expect_equal(err$arg, "predicted")
  expect_error(SpatialClusterMetrics(c(1, NA, 2), c(NA, 1, 1)),
               "at least 2", class = "sedr_error_input")
  expect_error(SpatialClusterMetrics(1:3, 1:3, matrix(0, 2, 2)),
               "`embedding`", class = "sedr_error_input")
  expect_error(SpatialClusterMetrics(1:3, 1:3, matrix("a", 3, 2)),
               "`embedding`", class = "sedr_error_input")
  expect_error(SpatialClusterMetrics(1:3, 1:3, matrix(c(1, NA, 3), 3, 1)),
               "finite", class = "sedr_error_input")
  expect_error(SpatialClusterMetrics(list(1, 2), 1:2), "`truth`",
               class = "sedr_error_input")
})
