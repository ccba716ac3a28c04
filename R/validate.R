# Checks shared by every entry point that takes a seed or a thread count.

# A seed R's generator can take: NULL (leave the generator alone) or a whole
# number in R's integer range. Larger or fractional values are refused rather
# than reduced, so two different seeds never silently give the same stream.
check_seed <- function(seed, arg = "seed.use", null.ok = TRUE) {
  if (is.null(seed) && null.ok) return(NULL)
  ok <- is.numeric(seed) && length(seed) == 1L && !is.na(seed) && is.finite(seed) &&
    seed == round(seed) && abs(seed) <= .Machine$integer.max
  if (!ok) {
    shown <- if (is.numeric(seed) && length(seed) == 1L) format(seed) else
      sprintf("an object of class %s and length %d", class(seed)[1], length(seed))
    sedr_abort(sprintf("must be a whole number between -%d and %d%s, not %s.",
                       .Machine$integer.max, .Machine$integer.max,
                       if (null.ok) " (or NULL)" else "", shown), arg = arg)
  }
  as.integer(seed)
}

# Cores this process may use (at least 1).
available_cores <- function() {
  n <- suppressWarnings(parallel::detectCores(logical = TRUE))
  if (is.na(n) || n < 1) 1L else as.integer(n)
}

# A thread count: a whole number >= 1, capped at the machine's cores with a
# warning of class `sedr_warning_threads`. More threads than cores only adds
# waiting (and a count like 1e5 would try to start that many threads).
check_threads <- function(n.threads, arg = "n.threads") {
  n <- check_count(n.threads, arg, min = 1)
  cores <- available_cores()
  if (n > cores) {
    sedr_warn(sprintf("`%s` = %d exceeds the %d core(s) of this machine; using %d. Results depend on the thread count: the one used is recorded in the parameters.",
                      arg, n, cores, cores), kind = "threads")
    n <- cores
  }
  n
}

# The first element of `x` if it is one of `choices` (so a default vector
# such as c("error", "warning") gives its first), or a classed error listing
# them; match.arg()'s own error is unclassed.
match_choice <- function(x, choices, arg) {
  if (!is.character(x) || !length(x) || is.na(x[1]) || !x[1] %in% choices) {
    sedr_abort(sprintf("must be one of %s.", paste0("\"", choices, "\"", collapse = ", ")), arg = arg)
  }
  x[1]
}
