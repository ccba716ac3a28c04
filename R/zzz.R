#' @useDynLib SEDR, .registration = TRUE
#' @importFrom methods new is as
#' @importFrom stats setNames
#' @importClassesFrom Matrix dgCMatrix
NULL

.onLoad <- function(libname, pkgname) {
  invisible()
}
