//! Rust core of the SEDR R package.
//!
//! * [`graph`]: spatial neighbour graphs (kiddo k-d tree, sprs CSR, rayon).
//! * [`model`], [`loss`], [`negatives`], [`kmeans`], [`train`]: the SEDR model
//!   and its trainer on libtorch (tch), CPU or CUDA.
//! * [`pca`]: seeded randomized PCA on libtorch.
//! * [`metrics`]: the adjusted Rand index, for tests and `sedr-bench`.
//! * [`mixture`]: EM for mclust's EEE Gaussian mixture (the domains).
//! * [`recipe`]: the preprocessing recipe's sparse passes (filter, VST, CPM, moments).
//! * [`moran`]: Moran's I of genes on the spatial graph (the recipe's spatial gene filter).
//! * [`refine`]: spatial label refinement (a majority vote of neighbours).
//! * `ffi` (feature `r`): the extendr glue, the only code that knows about R.

pub mod batches;
pub mod device;
pub mod error;
pub mod graph;
mod host_slice;
pub mod kmeans;
pub mod lisi;
pub mod loss;
pub mod metrics;
pub mod mixture;
pub mod model;
pub mod moran;
pub mod negatives;
pub mod params;
pub mod pca;
pub mod recipe;
pub mod refine;
pub mod rng;
pub mod synth;
pub mod train;

#[cfg(feature = "r")]
mod ffi;
