# Runs the examples of every help page in man/ against the installed package
# and prints how long each took; exits non-zero if one fails.
#   R_LIBS=.r-lib GOMP_SPINCOUNT=3000 Rscript --no-init-file tools/run-examples.R
# Plots go to a null device. Warnings are reported, not fatal.
suppressPackageStartupMessages(library(SEDR))
grDevices::pdf(NULL)
files <- sort(list.files("man", pattern = "\\.Rd$", full.names = TRUE))
res <- data.frame()
for (f in files) {
  ex <- tempfile(fileext = ".R")
  tools::Rd2ex(f, ex, commentDontrun = TRUE, commentDonttest = FALSE)
  if (!file.exists(ex)) next  # no examples (e.g. internal pages)
  t0 <- proc.time()[["elapsed"]]
  ok <- tryCatch({
    withCallingHandlers(
      utils::capture.output(source(ex, echo = FALSE, print.eval = TRUE, local = new.env())),
      warning = function(w) {
        message("warning in ", basename(f), ": ", conditionMessage(w))
        invokeRestart("muffleWarning")
      })
    TRUE
  }, error = function(e) {
    message("ERROR in ", basename(f), ": ", conditionMessage(e))
    FALSE
  })
  res <- rbind(res, data.frame(page = basename(f), ok = ok,
                               seconds = round(proc.time()[["elapsed"]] - t0, 2)))
}
print(res, row.names = FALSE)
if (!all(res$ok)) quit(status = 1)
