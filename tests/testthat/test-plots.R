plot_sim <- function() {
  SimulateSpatialTissue(n.rows = 8, n.cols = 8, n.genes = 60, n.domains = 3,
                        markers.per.domain = 5)
}

test_that(".sedr_palette gives up to 20 distinct fixed colours", {
  p20 <- .sedr_palette(20)
  expect_length(p20, 20L)
  expect_equal(anyDuplicated(toupper(p20)), 0L)
  expect_match(p20, "^#[0-9A-Fa-f]{6}$")
  # Smaller palettes are prefixes, so colours are stable as n grows.
  expect_equal(.sedr_palette(5), p20[1:5])
  expect_length(unique(.sedr_palette(25)), 25L)
})

test_that("SEDRSpatialPlot draws coordinates coloured by labels", {
  sim <- plot_sim()
  p <- SEDRSpatialPlot(sim$coords, labels = sim$domain)
  expect_s3_class(p, "ggplot")
  built <- ggplot2::ggplot_build(p)
  d <- built$data[[1]]
  expect_equal(nrow(d), 64L)
  expect_equal(sort(d$x), sort(unname(sim$coords[, "x"])))
  # Reversed y axis: built y is -y, and a fixed aspect ratio.
  expect_equal(sort(d$y), sort(-unname(sim$coords[, "y"])))
  expect_s3_class(p$coordinates, "CoordFixed")
  # Colours follow the palette in level order.
  pal <- .sedr_palette(3)
  expect_equal(d$colour, pal[as.integer(sim$domain)])
  expect_equal(p$labels$colour, "label")
})

test_that("SEDRSpatialPlot reads labels and coordinates from objects", {
  sim <- plot_sim()
  p_sim <- SEDRSpatialPlot(sim)
  expect_equal(nrow(p_sim$data), 64L)
  expect_equal(p_sim$data$label, unname(sim$domain))

  df <- data.frame(sim$coords, sedr_clusters = as.character(sim$domain))
  p_df <- SEDRSpatialPlot(df)
  expect_equal(as.character(p_df$data$label), as.character(sim$domain))
  expect_equal(levels(p_df$data$label), levels(sim$domain))

  # Unnamed coordinate columns: the first two are x and y.
  xy <- unname(sim$coords[, c("x", "y")])
  p_xy <- SEDRSpatialPlot(xy, labels = as.integer(sim$domain))
  expect_equal(p_xy$data$x, unname(sim$coords[, "x"]))
})

test_that("SEDRSpatialPlot works on a Seurat object", {
  skip_if_not_installed("SeuratObject")
  sim <- plot_sim()
  obj <- SimulationToSeurat(sim)
  obj$sedr_clusters <- factor(rev(as.integer(sim$domain)))
  p <- SEDRSpatialPlot(obj)
  expect_equal(p$data$x, unname(sim$coords[, "x"]))
  expect_equal(as.integer(as.character(p$data$label)),
               rev(as.integer(sim$domain)))
  p2 <- SEDRSpatialPlot(obj, group.by = "domain")
  expect_equal(as.character(p2$data$label), as.character(sim$domain))
  # Explicit coordinates, matched by spot name even when shuffled.
  shuffled <- sim$coords[rev(rownames(sim$coords)), ] * 2
  p3 <- SEDRSpatialPlot(obj, coords = shuffled)
  expect_equal(p3$data$x, 2 * unname(sim$coords[, "x"]))
  expect_error(SEDRSpatialPlot(obj, group.by = "nope"), "`group.by`",
               class = "sedr_error_input")
})

test_that("SEDRSpatialPlot accepts palettes and point sizes", {
  sim <- plot_sim()
  cols <- c(Domain1 = "red", Domain2 = "green", Domain3 = "blue")
  p <- SEDRSpatialPlot(sim, palette = rev(cols), pt.size = 2)
  d <- ggplot2::ggplot_build(p)$data[[1]]
  expect_equal(d$colour, unname(cols[as.character(sim$domain)]))
  expect_equal(unique(d$size), 2)
  expect_error(SEDRSpatialPlot(sim, palette = c("red", "blue")),
               "`palette`", class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, palette = c(Domain1 = "red")),
               "Domain2", class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, pt.size = -1), "`pt.size`")
})

test_that("SEDRSpatialPlot validates its inputs", {
  sim <- plot_sim()
  expect_error(SEDRSpatialPlot(sim$coords), "`labels`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim$coords, labels = 1:3), "`labels`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(list(1)), "`object`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, coords = matrix(1:4, 2)), "`coords`",
               class = "sedr_error_input")
  expect_error(SEDRSpatialPlot(sim, group.by = 1), "`group.by`")
})

test_that("SEDRLossPlot draws one panel per component, wide or long", {
  wide <- data.frame(epoch = rep(1:20, 2),
                     phase = rep(c("pretrain", "train"), each = 20))
  wide$total <- exp(-wide$epoch / 5) + 0.1
  wide$mse <- wide$total / 2
  wide$dec_kl <- ifelse(wide$phase == "train", 0.01, NA)
  p <- SEDRLossPlot(wide)
  expect_s3_class(p, "ggplot")
  expect_equal(levels(p$data$component), c("total", "mse", "dec_kl"))
  # NA entries (no KL loss while pretraining) are dropped.
  expect_equal(nrow(p$data), 20 * 2 * 2 + 20)
  expect_true(any(vapply(p$scales$scales, function(s) {
    "y" %in% s$aesthetics && s$trans$name == "log-10"
  }, logical(1))))
  expect_equal(nrow(ggplot2::ggplot_build(p)$layout$layout), 3L)

  long <- p$data
  p_long <- SEDRLossPlot(long)
  expect_equal(p_long$data, p$data)
})

test_that("SEDRLossPlot uses a linear axis for non-positive losses", {
  losses <- data.frame(epoch = 1:5, total = c(1, 0.5, 0, -0.2, -0.3))
  p <- SEDRLossPlot(losses)
  has_log <- any(vapply(p$scales$scales, function(s) {
    "y" %in% s$aesthetics && identical(s$trans$name, "log-10")
  }, logical(1)))
  expect_false(has_log)
  expect_equal(as.character(unique(p$data$phase)), "train")
  expect_equal(p$labels$y, "loss")
})

test_that("SEDRLossPlot validates its input", {
  expect_error(SEDRLossPlot(1:3), "`losses`", class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(step = 1, total = 1)), "epoch",
               class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(epoch = 1:2, phase = "a")),
               "numeric loss", class = "sedr_error_input")
  expect_error(SEDRLossPlot(data.frame(epoch = 1:2, total = NA_real_)),
               "finite", class = "sedr_error_input")
})
