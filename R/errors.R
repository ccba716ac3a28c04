# One place for conditions raised by SEDR. Every user-facing error carries the
# classes c("sedr_error_<kind>", "sedr_error", "error", "condition") and, when
# it is about an argument, that argument's name in the message and in `arg`.

sedr_abort <- function(message, kind = "input", arg = NULL, call = NULL, ...) {
  if (!is.null(arg)) message <- paste0("`", arg, "`: ", message)
  cond <- structure(
    class = c(paste0("sedr_error_", kind), "sedr_error", "error", "condition"),
    list(message = message, call = call, arg = arg, ...)
  )
  stop(cond)
}

sedr_warn <- function(message, kind = "warning") {
  cond <- structure(
    class = c(paste0("sedr_warning_", kind), "sedr_warning", "warning", "condition"),
    list(message = message, call = NULL)
  )
  warning(cond)
}

# A message users may silence by class (`sedr_message_<kind>`), e.g. with
# suppressMessages(..., classes = "sedr_message_shared_genes").
sedr_inform <- function(message, kind) {
  cond <- structure(
    class = c(paste0("sedr_message_", kind), "sedr_message", "message", "condition"),
    list(message = paste0(message, "\n"), call = NULL)
  )
  message(cond)
}
