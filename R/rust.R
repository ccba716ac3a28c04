# The boundary to the Rust core. Every Rust entry point returns
# list(ok, err, kind, arg); unwrap_rust() returns `ok` or raises a classed
# condition (sedr_error_<kind>). A Rust panic or libtorch exception arrives
# as kind "internal" / "torch", so R always survives.

unwrap_rust <- function(res, call = NULL) {
  if (!is.list(res) || !all(c("ok", "err") %in% names(res))) {
    sedr_abort("the Rust core returned a malformed result", kind = "internal", call = call)
  }
  if (is.null(res$err)) return(res$ok)
  msg <- res$err
  kind <- res$kind %||% "internal"
  hint <- switch(kind,
    torch = "libtorch failed; if this is an out-of-memory error, try fewer spots or genes, mini-batches, or device = \"cpu\".",
    internal = "This is a bug in SEDR; please report it with the code that triggered it.",
    NULL
  )
  if (!is.null(hint)) msg <- paste(msg, hint, sep = "\n")
  cond <- structure(
    class = c(paste0("sedr_error_", kind), "sedr_error", "error", "condition"),
    list(message = msg, call = call, arg = res$arg)
  )
  stop(cond)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

#' Information about the libtorch backend
#'
#' Reports whether CUDA is usable, how many CUDA devices exist, libtorch's
#' thread count and whether it was built with MKL and OpenMP.
#'
#' @return A named list.
#' @export
#' @examples
#' SEDRBackendInfo()$cuda_available
SEDRBackendInfo <- function() {
  unwrap_rust(.Call(wrap__sedr_torch_info))
}
