# EM for mclust's "EEE" Gaussian mixture (one shared full covariance), the
# same iteration as mclust's me(modelName = "EEE") (its Fortran `meeee`),
# in the Rust core (src/rust/src/mixture.rs, which says why not mclust's
# own): an M-step from the given z, then an E-step, repeated until the
# relative change of the log-likelihood is at most `tol` (mclust's default
# 1e-5). NULL where mclust's EM fails (an empty component, a singular
# covariance). test-clusters.R compares it with mclust::meEEE.
#' @noRd
em_eee <- function(x, z, tol = 1e-5, itmax = 10000L) {
  storage.mode(x) <- "double"
  storage.mode(z) <- "double"
  fit <- unwrap_rust(.Call(wrap__sedr_em_eee, x, nrow(x), ncol(x), z, ncol(z),
                           as.double(tol), as.integer(itmax)))
  if (is.null(fit)) return(NULL)
  p <- ncol(x)
  fit$mean <- matrix(fit$mean, p, ncol(z), dimnames = list(colnames(x), colnames(z)))
  fit$cholSigma <- matrix(fit$cholSigma, p, p, dimnames = list(colnames(x), colnames(x)))
  fit$z <- matrix(fit$z, nrow(x), ncol(z), dimnames = list(rownames(x), colnames(z)))
  c(fit, list(modelName = "EEE"))
}

# Responsibilities z (n x G) and the log-likelihood of `x` under an em_eee()
# fit.
eee_estep <- function(x, fit) {
  storage.mode(x) <- "double"
  e <- unwrap_rust(.Call(wrap__sedr_estep_eee, x, nrow(x), ncol(x), as.double(fit$pro),
                         as.double(fit$mean), as.double(fit$cholSigma)))
  list(z = matrix(e$z, nrow(x), length(fit$pro)), loglik = e$loglik)
}
