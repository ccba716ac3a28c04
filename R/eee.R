# EM for mclust's "EEE" Gaussian mixture (one shared full covariance), the
# same iteration as mclust's me(modelName = "EEE") (its Fortran `meeee`):
# an M-step from the given z, then an E-step, repeated until the relative
# change of the log-likelihood |l - l_prev| / (1 + |l|) is at most `tol`
# (mclust's default 1e-5). It fails (NULL) where mclust's does: a component
# whose total weight is at most sqrt(eps), or a Cholesky factor U of the
# covariance with min|U_jj| / (1 + max|U_jj|) at most sqrt(eps).
#
# Why not mclust::me itself: mclust accumulates the covariance by a Givens
# rotation per spot and component and solves one triangular system per spot
# and component, ~45 ms per iteration on DLPFC's 3,639 x 32 embedding (35-60
# iterations: 1.6-2.8 s). Here both are matrix products (BLAS): a few ms per
# iteration, with the same fit (test-clusters.R compares the two).
#' @noRd
em_eee <- function(x, z, tol = 1e-5, itmax = 10000L) {
  # Centred once: the fit is translation-equivariant, and the scatter
  # identity in eee_mstep loses less precision about the data's mean.
  center <- colMeans(x)
  xc <- sweep(x, 2, center)
  total <- crossprod(xc)
  hold <- .Machine$double.xmax / 2
  for (iter in seq_len(itmax)) {
    fit <- eee_mstep(xc, z, total)
    if (is.null(fit)) return(NULL)
    e <- eee_estep(xc, fit)
    z <- e$z
    err <- abs(hold - e$loglik) / (1 + abs(e$loglik))
    hold <- e$loglik
    if (err <= tol) break
  }
  fit$mean <- fit$mean + center
  c(fit, list(z = z, loglik = e$loglik, iterations = iter, modelName = "EEE"))
}

# Mixing proportions, means (p x G) and the upper Cholesky factor U of the
# shared covariance W / n, or NULL. As every row of z sums to 1, the pooled
# within-component scatter is W = X'X - sum_k n_k mu_k mu_k' (`total` = X'X),
# so an M-step is one n x p x G product.
eee_mstep <- function(x, z, total = crossprod(x)) {
  rteps <- sqrt(.Machine$double.eps)
  nk <- colSums(z)
  if (min(nk) <= rteps) return(NULL)
  sums <- crossprod(x, z)
  mean <- sweep(sums, 2, nk, "/")
  scatter <- total - tcrossprod(mean, sums)
  u <- tryCatch(chol((scatter + t(scatter)) / (2 * nrow(x))), error = function(e) NULL)
  if (is.null(u)) return(NULL)
  d <- abs(diag(u))
  if (min(d) / (1 + max(d)) <= rteps) return(NULL)
  list(pro = nk / nrow(x), mean = mean, cholSigma = u)
}

# Responsibilities z (n x G) and the log-likelihood under an eee_mstep fit.
# With Sigma = U'U the Mahalanobis distance is |U^-T (x - mu)|^2: every spot
# is whitened once (one triangular solve with n right-hand sides) and the
# distances to the G whitened means come from one n x p x G product.
eee_estep <- function(x, fit) {
  u <- fit$cholSigma
  n <- nrow(x)
  y <- backsolve(u, t(x), transpose = TRUE)
  m <- backsolve(u, fit$mean, transpose = TRUE)
  maha <- outer(colSums(y^2), colSums(m^2), "+") - 2 * crossprod(y, m)
  const <- ncol(x) * log(2 * pi) / 2 + sum(log(abs(diag(u))))
  # A component with proportion 0 gets log 0 = -Inf, so z = 0 (as mclust).
  lz <- rep(log(fit$pro) - const, each = n) - maha / 2
  top <- lz[cbind(seq_len(n), max.col(lz, ties.method = "first"))]
  shifted <- lz - top
  dens <- exp(shifted)
  dens[shifted < -708] <- 0  # as mclust: no denormals
  total <- rowSums(dens)
  list(z = dens / total, loglik = sum(log(total) + top))
}
