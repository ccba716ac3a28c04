/* The package's R-facing DLL. It links no libtorch itself:
 * 1. it opens libtorch_cpu with RTLD_DEEPBIND, so libtorch's own BLAS calls
 *    bind to its bundled MKL instead of the reference BLAS R has already put
 *    in the global scope (3-5x slower); SEDR_NO_DEEPBIND=1 skips this;
 * 2. where an NVIDIA driver is present, it opens libtorch_cuda (globally, so
 *    its CUDA backend registers with libtorch_cpu); elsewhere the CUDA
 *    libraries (~235 MB resident) stay unloaded. SEDR_CUDA=1 / 0 forces
 *    loading them / not;
 * 3. it opens the sibling SEDR_core.so (Rust + CPU libtorch) and lets the
 *    extendr module register its routines on this DLL. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

#ifndef TORCH_CUDA_LIB
#define TORCH_CUDA_LIB ""
#endif

/* Whether to load libtorch_cuda: configure found it complete, and SEDR_CUDA
 * says so or the NVIDIA driver's files exist (no driver, no GPU to use). */
static int want_cuda(void) {
  if (TORCH_CUDA_LIB[0] == '\0') return 0;
  const char *force = getenv("SEDR_CUDA");
  if (force && strcmp(force, "0") == 0) return 0;
  if (force && strcmp(force, "1") == 0) return 1;
  return access("/proc/driver/nvidia/version", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0;
}

void R_init_SEDR(DllInfo *dll) {
  const char *skip = getenv("SEDR_NO_DEEPBIND");
  if (!(skip && strcmp(skip, "1") == 0)) {
    if (!dlopen(TORCH_CPU_LIB, RTLD_NOW | RTLD_GLOBAL | RTLD_DEEPBIND))
      REprintf("SEDR: could not preload libtorch (%s); training may be slower\n", dlerror());
  }
  if (want_cuda() && !dlopen(TORCH_CUDA_LIB, RTLD_NOW | RTLD_GLOBAL))
    REprintf("SEDR: could not load libtorch_cuda (%s); CUDA will not be available\n", dlerror());
  Dl_info info;
  if (!dladdr((void *) &R_init_SEDR, &info) || !info.dli_fname)
    Rf_error("SEDR: cannot locate its own shared object");
  char path[PATH_MAX];
  strncpy(path, info.dli_fname, sizeof(path) - 1);
  path[sizeof(path) - 1] = '\0';
  char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t) (slash - path + 1) : 0;
  const char *core = "SEDR_core.so";
  if (dir_len + strlen(core) + 1 > sizeof(path)) Rf_error("SEDR: library path too long");
  strcpy(path + dir_len, core);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) Rf_error("SEDR: cannot load %s: %s", path, dlerror());
  void (*init)(DllInfo *) = (void (*)(DllInfo *)) dlsym(h, "R_init_sedr_extendr");
  if (!init) Rf_error("SEDR: %s has no extendr module", path);
  init(dll);
}
