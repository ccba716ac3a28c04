# How often the implementation rule of bench/README.md ("Changes of
# implementation": rules 2 and 3 and a combined score not lower by more than
# 0.005) rejects a change that computes the same function and differs only by
# rounding. Each pair of per-run CSVs (bench/domains.R) is such a change: two
# codes with the same function, or the same code on two hosts. Their
# differences are what rounding alone does after training, so a rejection
# is a false one unless rounding has a systematic effect.
#
# For each pair: the rule on the seeds both files hold, then its pass rate
# over bootstrap resamples of the seeds (the same resampled seeds on every
# dataset, as the evaluation pairs them), at the pair's own number of seeds
# and at 30; beside it, per dataset, the spread of the median difference
# across resamples and the paired mean difference with its standard error.
#
#   Rscript bench/rule-null.R A.csv B.csv [A2.csv B2.csv ...] [--reps=2000]
#
# A file argument may join several CSVs with "+" (halves of one evaluation).
args <- commandArgs(trailingOnly = TRUE)
reps_arg <- grep("^--reps=", args, value = TRUE)
reps <- if (length(reps_arg)) as.integer(sub("^--reps=", "", reps_arg)) else 2000L
files <- args[!args %in% reps_arg]
if (length(files) < 2 || length(files) %% 2) {
  stop("usage: Rscript bench/rule-null.R A.csv B.csv [A2.csv B2.csv ...] [--reps=N]")
}

read_runs <- function(spec) {
  parts <- strsplit(spec, "+", fixed = TRUE)[[1]]
  runs <- do.call(rbind, lapply(parts, function(f) utils::read.csv(f)[, c("dataset", "seed", "ARI")]))
  runs[!duplicated(runs[, c("dataset", "seed")]), ]
}

# ARI as a seeds x datasets matrix over the seeds and datasets both hold.
paired <- function(a, b) {
  sets <- sort(intersect(unique(a$dataset), unique(b$dataset)))
  seeds <- Reduce(intersect, lapply(sets, function(s) intersect(a$seed[a$dataset == s], b$seed[b$dataset == s])))
  grab <- function(r) sapply(sets, function(s) r$ARI[r$dataset == s][match(seeds, r$seed[r$dataset == s])])
  list(a = matrix(grab(a), ncol = length(sets), dimnames = list(seeds, sets)),
       b = matrix(grab(b), ncol = length(sets), dimnames = list(seeds, sets)))
}

# The implementation rule on one set of rows (seeds) of the two matrices,
# and two paired readings of it (TRUE: passes): "paired" asks every
# dataset's mean per-seed difference to be at least -0.01 and their mean at
# least -0.005; "paired, 2 SE" rejects only a dataset whose mean difference
# is below -0.01 and also more than two standard errors below zero (and the
# same for the mean of them, at -0.005).
rule <- function(a, b) {
  ma <- apply(a, 2, stats::median)
  mb <- apply(b, 2, stats::median)
  d <- b - a
  m <- colMeans(d)
  se <- apply(d, 2, stats::sd) / sqrt(nrow(d))
  comb <- rowMeans(d)
  comb_m <- mean(comb)
  comb_se <- stats::sd(comb) / sqrt(length(comb))
  c(worst = min(b) >= min(a), medians = all(mb - ma >= -0.01),
    combined = mean(mb) - mean(ma) >= -0.005,
    paired = all(m >= -0.01) && comb_m >= -0.005,
    paired2se = !any(m < -0.01 & m + 2 * se < 0) && !(comb_m < -0.005 && comb_m + 2 * comb_se < 0))
}

set.seed(1)
for (p in seq(1, length(files), by = 2)) {
  pr <- paired(read_runs(files[p]), read_runs(files[p + 1]))
  n <- nrow(pr$a)
  cat(sprintf("\nA = %s\nB = %s\n%d seeds on each of %d datasets\n", files[p], files[p + 1], n, ncol(pr$a)))
  point <- rule(pr$a, pr$b)
  d <- pr$b - pr$a
  tab <- data.frame(
    dataset = colnames(d),
    `median A` = sprintf("%.3f", apply(pr$a, 2, stats::median)),
    `median B` = sprintf("%.3f", apply(pr$b, 2, stats::median)),
    `paired mean (SE)` = sprintf("%+.3f (%.3f)", colMeans(d), apply(d, 2, stats::sd) / sqrt(n)),
    check.names = FALSE)
  # Rows 1-5: the rule's criteria (0/1); then the median difference per dataset.
  boot <- function(size) {
    replicate(reps, {
      rows <- sample.int(n, size, replace = TRUE)
      a <- pr$a[rows, , drop = FALSE]
      b <- pr$b[rows, , drop = FALSE]
      c(rule(a, b), apply(b, 2, stats::median) - apply(a, 2, stats::median))
    })
  }
  for (size in unique(c(n, 30L))) {
    dr <- boot(size)
    k <- ncol(pr$a)
    tab[[sprintf("median diff, 90%% of resamples (%d seeds)", size)]] <-
      apply(dr[5 + seq_len(k), , drop = FALSE], 1, function(v) {
        q <- stats::quantile(v, c(0.05, 0.95))
        sprintf("%+.3f to %+.3f", q[1], q[2])
      })
    pass <- rowMeans(dr[1:5, , drop = FALSE] > 0.5)
    cat(sprintf("resamples of %d seeds: rule passed in %.0f %% (worst run %.0f %%, medians %.0f %%, combined %.0f %%); paired %.0f %%, paired 2 SE %.0f %%\n",
                size, 100 * mean(colSums(dr[1:3, , drop = FALSE] > 0.5) == 3),
                100 * pass[["worst"]], 100 * pass[["medians"]], 100 * pass[["combined"]],
                100 * pass[["paired"]], 100 * pass[["paired2se"]]))
  }
  cat(sprintf("on the seeds as they are: %s (worst run %s, medians %s, combined %s); paired %s, paired 2 SE %s\n",
              if (all(point[1:3])) "passes" else "fails", point[["worst"]], point[["medians"]], point[["combined"]],
              point[["paired"]], point[["paired2se"]]))
  cat("| ", paste(names(tab), collapse = " | "), " |\n", sep = "")
  cat("|", strrep("---|", ncol(tab)), "\n", sep = "")
  for (i in seq_len(nrow(tab))) cat("| ", paste(unlist(tab[i, ]), collapse = " | "), " |\n", sep = "")
}
