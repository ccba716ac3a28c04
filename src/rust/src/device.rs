//! Device selection: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available).
//! Asking for CUDA where there is none is an error, never a silent fallback.

use crate::error::{Result, SedrError};
use tch::{Cuda, Device};

pub fn cuda_available() -> bool {
    Cuda::is_available()
}

pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    let cuda = |i: usize| -> Result<Device> {
        let count = if cuda_available() { Cuda::device_count() as usize } else { 0 };
        if count == 0 {
            return Err(SedrError::Device(format!(
                "\"{s}\" was requested but no CUDA device is available here; use device = \"cpu\" (or \"auto\")"
            )));
        }
        if i >= count {
            return Err(SedrError::Device(format!("\"{s}\" was requested but only {count} CUDA device(s) exist")));
        }
        Ok(Device::Cuda(i))
    };
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cuda_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" => cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(SedrError::input(
                "device",
                format!("\"{s}\" is not a device; use \"cpu\", \"cuda\", \"cuda:N\" or \"auto\""),
            )),
        },
    }
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Sets libtorch's intra-op thread count and restores the previous count
/// when dropped, so SEDR never leaves the process-wide setting changed.
pub struct ThreadGuard(i32);

impl ThreadGuard {
    pub fn set(n: usize) -> Self {
        let old = tch::get_num_threads();
        tch::set_num_threads(n.max(1) as i32);
        ThreadGuard(old)
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// Runs `f` on a rayon pool of its own with `threads` threads. Every entry
/// point uses one rather than rayon's global pool: that bounds the work to
/// `n.threads`, and a global pool's threads do not survive fork(), so a
/// forked worker (BiocParallel's MulticoreParam) of a parent that had used
/// it would wait on them forever.
pub fn with_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| SedrError::Internal(format!("thread pool: {e}")))?;
    Ok(pool.install(f))
}
