# The memory guard: an estimate of training's peak host memory, checked
# against what is available before training (and before the preprocessing
# where the inputs are known), with options(SEDR.memory.limit) as override.

mem_sim <- function() SimulateSpatialTissue(n.rows = 10, n.cols = 10, n.genes = 120, seed = 3)

# Evaluates `code` with the limit set, then restores the option.
with_limit <- function(limit, code) {
  old <- options(SEDR.memory.limit = limit)
  on.exit(options(old))
  code
}

run_small <- function(object, ...) {
  RunSEDR(object, epochs = 5, dec = FALSE, n.hvg = 60, npcs = 10, min.spots = 5,
          device = "cpu", verbose = FALSE, ...)
}

test_that("the estimate grows with spots, inputs and the graph, and skips GPU activations", {
  base <- sum(estimate_training_memory(1e4, 2000, 200, 1.2e5, "clustering", "cpu"))
  expect_gt(base, 0)
  full <- SEDROptions(batch.size = Inf)
  expect_gt(sum(estimate_training_memory(1e5, 2000, 200, 1.2e6, "clustering", "cpu", options = full)), 9 * base)
  expect_gt(sum(estimate_training_memory(1e4, 2000, 400, 1.2e5, "clustering", "cpu")), base)
  expect_gt(sum(estimate_training_memory(1e4, 2000, 200, 1.2e6, "clustering", "cpu")), base)
  gpu <- estimate_training_memory(1e4, 2000, 200, 1.2e5, "clustering", "cuda")
  expect_true(is.na(gpu["activations"]) || gpu[["activations"]] == 0)
  expect_lt(sum(gpu), base)
  # Imputation keeps the denoised genes.
  expect_gt(sum(estimate_training_memory(1e4, 2000, 2000, 1.2e5, "imputation", "cpu")), base)
})

test_that("mini-batches shrink the estimate; automatic above 50,000 spots", {
  full <- estimate_training_memory(2e5, 2000, 200, 2.4e6, "clustering", "cpu", options = SEDROptions(batch.size = Inf))
  auto <- estimate_training_memory(2e5, 2000, 200, 2.4e6, "clustering", "cpu")
  small <- estimate_training_memory(2e5, 2000, 200, 2.4e6, "clustering", "cpu", options = SEDROptions(batch.size = 5000))
  expect_lt(auto[["activations"]], full[["activations"]])
  expect_lt(small[["activations"]], auto[["activations"]])
  expect_lt(sum(small), sum(full))
  # Below the threshold the default is full batch.
  expect_equal(estimate_training_memory(4e4, 2000, 200, 4.8e5, "clustering", "cpu"),
               estimate_training_memory(4e4, 2000, 200, 4.8e5, "clustering", "cpu", options = SEDROptions(batch.size = Inf)))
  expect_equal(resolve_batch_size(NULL, 4e4), 0)
  expect_equal(resolve_batch_size(NULL, 6e4), 20000)
  expect_equal(resolve_batch_size(5000, 4000), 0)
})

test_that("the estimate is the parts held throughout plus the largest stage", {
  one <- function(...) estimate_training_memory(1e6, 2000, 200, 1.3e7, "clustering", "cpu", ...)
  made <- one(input = "made")
  # A million spots with mini-batches: training is the largest stage.
  expect_named(made, c("graph", "input", "activations", "edge_pairs", "negatives", "dec"))
  expect_equal(made[["input"]], 0)
  expect_equal(one(input = "float32")[["input"]], 1e6 * 200 * 4)
  expect_equal(one()[["input"]], 1e6 * 200 * 12)
  # Measured at a million spots (bench/README.md, "Stages"): at most 914 MiB
  # over the resident size before the trainer was made; the estimate stays
  # above it without being several times as large.
  expect_gt(sum(made), 914 * 2^20)
  expect_lt(sum(made), 2 * 914 * 2^20)
  # Without DEC or with fewer spots per DEC centre the estimate shrinks.
  expect_lt(sum(one(input = "made", dec = FALSE)), sum(made))
  # Imputation returns the denoised genes: the output is the largest stage.
  imp <- estimate_training_memory(1e4, 2000, 2000, 1.2e5, "imputation", "cpu")
  expect_true("output" %in% names(imp))
})

test_that("check_memory passes under the limit and refuses above it", {
  est <- with_limit(1e12, check_memory(1000, 100, 20, 12000, "clustering", "cpu"))
  expect_gt(as.numeric(est), 0)
  expect_equal(attr(est, "available"), 1e12)

  err <- with_limit(1000, tryCatch(check_memory(1000, 100, 20, 12000, "clustering", "cpu"),
                                   error = identity))
  expect_s3_class(err, "sedr_error_memory")
  expect_s3_class(err, "sedr_error")
  expect_null(err$arg)
  msg <- conditionMessage(err)
  expect_match(msg, "1,000 spots")
  expect_match(msg, "only 1000.0 B is available", fixed = TRUE)
  expect_match(msg, "npcs")
  expect_match(msg, "device = \"cuda\"", fixed = TRUE)
  expect_match(msg, "mini-batches")

  expect_error(with_limit("a lot", check_memory(1000, 100, 20, 12000, "clustering", "cpu")),
               class = "sedr_error_input")
  expect_null(getOption("SEDR.memory.limit"))
})

test_that("without an override the limit is the available memory (or none)", {
  avail <- with_limit(NULL, available_memory())
  expect_length(avail, 1)
  if (file.exists("/proc/meminfo")) expect_gt(avail, 0)
  # A tiny job passes.
  expect_silent(with_limit(NULL, check_memory(100, 50, 10, 1200, "clustering", "cpu")))
})

test_that("RunSEDR refuses with a memory error under a tiny limit (matrix)", {
  sim <- mem_sim()
  expect_error(with_limit(1024, run_small(sim$counts, coords = sim$coords)),
               class = "sedr_error_memory")
  # Imputation is checked before training too.
  expect_error(with_limit(1024, run_small(sim$counts, coords = sim$coords, mode = "imputation")),
               class = "sedr_error_memory")
})

test_that("RunSEDR leaves a Seurat object unchanged when the memory guard refuses", {
  skip_if_not_installed("SeuratObject")
  obj <- SimulationToSeurat(mem_sim())
  before <- obj
  err <- with_limit(1024, tryCatch(run_small(obj), error = identity))
  expect_s3_class(err, "sedr_error_memory")
  expect_identical(obj, before)
  expect_false("sedr" %in% SeuratObject::Reductions(obj))
  # The guard also runs on an existing reduction.
  emb <- matrix(stats::rnorm(100 * 5), 100, 5, dimnames = list(colnames(obj), paste0("PC_", 1:5)))
  obj[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = emb, key = "PC_", assay = "Spatial")
  before <- obj
  expect_error(with_limit(1024, run_small(obj, reduction = "pca")), class = "sedr_error_memory")
  expect_identical(obj, before)
  # With the limit lifted the same call works.
  out <- with_limit(1e12, run_small(obj))
  expect_true("sedr" %in% SeuratObject::Reductions(out))
})

test_that("the CUDA libraries are loaded only where wanted (SEDR_CUDA, else an NVIDIA driver)", {
  skip_on_cran()
  skip_if_not_installed("callr")
  skip_if_not(file.exists("/proc/self/maps"), "needs /proc (Linux)")
  # A fresh R process per setting: the choice is made when the package loads.
  loaded <- function(flag) {
    callr::r(function() {
      suppressPackageStartupMessages(library(SEDR))
      maps <- readLines("/proc/self/maps")
      cpu <- grep("libtorch_cpu\\.so", maps, value = TRUE)
      list(cuda = any(grepl("libtorch_cuda\\.so", maps)),
           cpu_dir = dirname(sub("^.* ", "", cpu[1])),
           available = SEDRBackendInfo()$cuda_available)
    }, env = c(callr::rcmd_safe_env(), SEDR_CUDA = flag))
  }
  off <- loaded("0")
  expect_false(off$cuda)
  expect_false(off$available)
  on <- loaded("1")
  # Forced on, libtorch_cuda is mapped wherever this libtorch has it.
  expect_identical(on$cuda, file.exists(file.path(off$cpu_dir, "libtorch_cuda.so")))
})
