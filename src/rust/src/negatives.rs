//! Negative edges for the edge-reconstruction loss, drawn correctly: for each
//! positive (i, j) of A+I, `ratio` pairs (i, u) with u uniform over the spots
//! that are *not* in row i of A+I. (The reference used positions in the
//! non-neighbour list as node ids, so its "negatives" included neighbours and
//! never the highest ids, and it drew them once.)
//!
//! On the CPU the draw runs on the host (a binary search in the sorted row of
//! A+I per candidate; about 10× faster than the same work as tensor ops). On
//! other devices it stays on the device: membership is a binary search in the
//! sorted keys i·n + j. Both are seeded from libtorch's generator, so
//! `tch::manual_seed` fixes them. The draw comes grouped for the loss's
//! gather-sums ([`Pairs`]).

use crate::loss::{HostPairs, Pairs};
use crate::rng::SplitMix64;
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};

/// Rounds of redraws for a candidate that hits a positive before it is dropped
/// (only on tiny, dense graphs can a row run out of non-neighbours).
const MAX_ROUNDS: usize = 16;

enum Backend {
    Host {
        /// Row pointers and sorted columns of A+I.
        indptr: Vec<usize>,
        cols: Vec<i64>,
        rng: RefCell<SplitMix64>,
    },
    Device {
        /// Sorted keys i·n + j of the positive pairs.
        pos_keys: Tensor,
        pos_src: Tensor,
    },
}

/// A draw of negatives, on the host (CPU training) or on the device.
pub enum Negatives {
    Host(HostPairs),
    Device(Pairs),
}

impl Negatives {
    /// (src, dst) as host vectors (for checks and tests).
    pub fn to_vecs(&self) -> crate::error::Result<(Vec<i64>, Vec<i64>)> {
        Ok(match self {
            Negatives::Host(p) => (p.src.iter().map(|&v| v as i64).collect(), p.dst.iter().map(|&v| v as i64).collect()),
            Negatives::Device(p) => (Vec::<i64>::try_from(p.src.to_device(Device::Cpu))?, Vec::<i64>::try_from(p.dst.to_device(Device::Cpu))?),
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Negatives::Host(p) => p.len(),
            Negatives::Device(p) => p.len() as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct NegativeSampler {
    n: i64,
    ratio: i64,
    device: Device,
    backend: Backend,
}

impl NegativeSampler {
    /// `src`/`dst` are the positive pairs in CSR order (sorted by src, then
    /// dst). The host sampler is used for CPU tensors.
    pub fn new(n: i64, src: &Tensor, dst: &Tensor, ratio: usize) -> Self {
        Self::with_backend(n, src, dst, ratio, src.device() == Device::Cpu)
    }

    /// As [`NegativeSampler::new`], choosing the host or the tensor sampler
    /// (the tensor one works on any device; tests run it on the CPU).
    pub(crate) fn with_backend(n: i64, src: &Tensor, dst: &Tensor, ratio: usize, host: bool) -> Self {
        Self::build(n, src, dst, ratio, host, None)
    }

    /// As [`NegativeSampler::new`], the host sampler seeded by `seed` rather
    /// than by libtorch's global generator (mini-batch steps make one per step).
    pub fn with_seed(n: i64, src: &Tensor, dst: &Tensor, ratio: usize, seed: u64) -> Self {
        Self::build(n, src, dst, ratio, src.device() == Device::Cpu, Some(seed))
    }

    fn build(n: i64, src: &Tensor, dst: &Tensor, ratio: usize, host: bool, seed: Option<u64>) -> Self {
        let device = src.device();
        let backend = if host && device == Device::Cpu {
            let s = Vec::<i64>::try_from(src).unwrap_or_default();
            let cols = Vec::<i64>::try_from(dst).unwrap_or_default();
            let mut indptr = vec![0usize; n.max(0) as usize + 1];
            for &i in &s {
                if (0..n).contains(&i) {
                    indptr[i as usize + 1] += 1;
                }
            }
            for i in 0..n.max(0) as usize {
                indptr[i + 1] += indptr[i];
            }
            let seed = seed.unwrap_or_else(|| Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64);
            Backend::Host { indptr, cols, rng: RefCell::new(SplitMix64::new(seed)) }
        } else {
            Backend::Device { pos_keys: src * n + dst, pos_src: src.shallow_clone() }
        };
        NegativeSampler { n, ratio: ratio as i64, device, backend }
    }

    /// Draws `ratio` negatives per positive, grouped by source spot.
    pub fn draw(&self) -> Negatives {
        let n = self.n.max(0);
        match &self.backend {
            Backend::Host { indptr, cols, rng } => {
                let mut rng = rng.borrow_mut();
                let ratio = self.ratio.max(0) as usize;
                let total = cols.len() * ratio;
                let (mut src, mut dst) = (Vec::with_capacity(total), Vec::with_capacity(total));
                for i in 0..n as usize {
                    let row = &cols[indptr[i]..indptr[i + 1]];
                    for _ in 0..row.len() * ratio {
                        for _ in 0..MAX_ROUNDS {
                            let u = rng.below(n as usize) as i64;
                            if row.binary_search(&u).is_err() {
                                src.push(i as u32);
                                dst.push(u as u32);
                                break;
                            }
                        }
                    }
                }
                Negatives::Host(HostPairs::new(n as usize, src, dst))
            }
            Backend::Device { .. } if self.ratio == 0 || n == 0 => Negatives::Device(Pairs::from_host(n as usize, &[], &[], self.device)),
            Backend::Device { pos_keys, pos_src } => {
                let is_positive = |src: &Tensor, dst: &Tensor| {
                    let keys = src * n + dst;
                    let m = pos_keys.size()[0];
                    let at = keys.searchsorted(pos_keys, false, false, "left", None::<Tensor>).clamp_max(m - 1);
                    pos_keys.gather(0, &at, false).eq_tensor(&keys)
                };
                // Interleaved repeats keep the sources sorted.
                let src = pos_src.repeat_interleave_self_int(self.ratio, 0, None::<i64>);
                let m = src.size()[0];
                let opts = (Kind::Int64, src.device());
                let mut dst = Tensor::randint_low(0, n, [m], opts);
                let mut hit = is_positive(&src, &dst);
                for _ in 0..MAX_ROUNDS {
                    if !bool::try_from(hit.any()).unwrap_or(false) {
                        break;
                    }
                    let redraw = Tensor::randint_low(0, n, [m], opts);
                    dst = dst.where_self(&hit.logical_not(), &redraw);
                    hit = is_positive(&src, &dst);
                }
                let keep = hit.logical_not().nonzero().squeeze_dim(1);
                Negatives::Device(Pairs::from_device(n, src.index_select(0, &keep), dst.index_select(0, &keep)))
            }
        }
    }
}
