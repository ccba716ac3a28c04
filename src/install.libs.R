# Install both shared objects: SEDR.so (R's) and SEDR_core.so (Rust + libtorch).
files <- c(paste0("SEDR", SHLIB_EXT), "SEDR_core.so")
dest <- file.path(R_PACKAGE_DIR, paste0("libs", R_ARCH))
dir.create(dest, recursive = TRUE, showWarnings = FALSE)
stopifnot(all(file.copy(files, dest, overwrite = TRUE)))
