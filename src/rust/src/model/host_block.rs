//! Elementwise parts of the network written by hand for CPU training,
//! forward and backward: an encoder block's BatchNorm → ELU → dropout, and
//! the graph layer's ReLU with its two heads' dropouts.
//!
//! At a Visium section's size (a few thousand spots × 16 or 64 columns)
//! each libtorch elementwise op costs more in dispatch, autograd bookkeeping
//! and passes over memory than in arithmetic, and the block is about ten of
//! them each way. Here the forward is two passes over the pre-activation
//! (column moments, then normalise + ELU + dropout in one sweep) and the
//! backward two (the BatchNorm reductions, then the input gradient). The
//! backward needs the pre-activation, the output (where the output y is not
//! positive, the ELU's slope times the dropout scale is y + scale: no exp)
//! and the dropout mask, one byte per element; the mask is the one
//! [`super::Noise`] draws for the same key.
//!
//! The graph layer's ReLU and dropouts give the same bits as libtorch's ops
//! and autograd (one multiplication per element each way, no reduction); the
//! encoder block's reductions differ from libtorch's in rounding.
//!
//! Reductions run over fixed blocks of rows, summed in block order, so the
//! result does not depend on the thread count.

use super::hash32;
use crate::host_slice::{host_slice, host_slice_mut};
use std::ops::{Add, Mul, Sub};
use tch::{kind::Element, Device, Kind, Tensor};

/// Rows per reduction block (fixed: the sums must not depend on threads).
const BLOCK_ROWS: usize = 1024;

/// The float types the host path runs on: f32 in training, f64 in the
/// gradient tests (`KIND` and `ZERO` come from tch's [`Element`]).
pub(super) trait Real: Element + Copy + Send + Sync + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + 'static {
    const ONE: Self;
    fn of(v: f64) -> Self;
    fn wide(self) -> f64;
    /// e^x for x ≤ 0 (the ELU's negative branch).
    fn exp_nonpos(self) -> Self;
}

impl Real for f32 {
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn of(v: f64) -> f32 {
        v as f32
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_nonpos(self) -> f32 {
        exp_nonpos_f32(self)
    }
}

impl Real for f64 {
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn of(v: f64) -> f64 {
        v
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_nonpos(self) -> f64 {
        self.exp()
    }
}

/// e^x for x ≤ 0 in a form the compiler vectorises (libm's expf is a call
/// per element): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' degree-6
/// minimax polynomial (relative error ≈ 1e-7), 2^n from the exponent bits.
/// Below −87 the result is held at e^−87 (≈ 1.6e-38, still a normal float;
/// the ELU there is −1 to float precision). NaN stays NaN.
#[inline(always)]
fn exp_nonpos_f32(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to an integer and leaves that integer in
    // the low mantissa bits (no float → int conversion, which would not
    // vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // ln 2 split in two so that n·ln 2 is exact in the first part.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = (((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_6e-1) * r + 0.5) * r * r + r + 1.0;
    let k = t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127);
    p * f32::from_bits(k << 23)
}

/// A dropout mask as [`super::Noise`] draws it for a tensor of fewer than
/// 2^32 elements: element e is kept (and scaled) when the hash of (e, keys)
/// falls below `threshold`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dropout {
    pub k1: u32,
    pub k2: u32,
    pub threshold: u32,
    pub scale: f32,
}

/// Stands in for the mask where there is no dropout (never read).
const NO_DROPOUT: Dropout = Dropout { k1: 0, k2: 0, threshold: 0, scale: 1.0 };

/// Whether element e is kept under the mask.
#[inline(always)]
fn kept(d: &Dropout, e: usize) -> bool {
    hash32(hash32((e as u32) ^ d.k1) ^ d.k2) < d.threshold
}

/// ELU(v), branch-free so that the loops vectorise.
#[inline(always)]
fn elu<T: Real>(v: T) -> T {
    let pos = v > T::ZERO;
    let e = (if pos { T::ZERO } else { v }).exp_nonpos();
    if pos { v } else { e - T::ONE }
}

/// Runs `f(block, item)` over the items, one per block of rows, on up to
/// `threads` threads (each a contiguous run of blocks); results in block
/// order. Threads only for large inputs (`elements`), where they pay.
fn run_blocks<W: Send, R: Send>(work: Vec<W>, elements: usize, threads: usize, f: impl Fn(usize, W) -> R + Sync) -> Vec<R> {
    let workers = threads.clamp(1, (elements >> 18).max(1)).min(work.len().max(1));
    if workers == 1 {
        return work.into_iter().enumerate().map(|(b, w)| f(b, w)).collect();
    }
    let per = work.len().div_ceil(workers);
    let mut groups: Vec<Vec<(usize, W)>> = Vec::with_capacity(workers);
    for (b, w) in work.into_iter().enumerate() {
        if b % per == 0 {
            groups.push(Vec::with_capacity(per));
        }
        if let Some(g) = groups.last_mut() {
            g.push((b, w));
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let f = &f;
                s.spawn(move || g.into_iter().map(|(b, w)| f(b, w)).collect::<Vec<R>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Per-column sums: each block's (in T, so the loops run at full vector
/// width) added up over blocks in order in f64.
fn sum_columns<T: Real>(parts: Vec<(Vec<T>, Vec<T>)>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
    for (pa, pb) in parts {
        a.iter_mut().zip(&pa).for_each(|(s, v)| *s += v.wide());
        b.iter_mut().zip(&pb).for_each(|(s, v)| *s += v.wide());
    }
    (a, b)
}

/// Σ (x − shift) and Σ (x − shift)² per column of row-major `rows`.
#[inline(always)]
fn moments_body<T: Real>(rows: &[T], shift: &[T], s1: &mut [T], s2: &mut [T]) {
    let d = shift.len();
    let (s1, s2) = (&mut s1[..d], &mut s2[..d]);
    for r in rows.chunks_exact(d) {
        for j in 0..d {
            let c = r[j] - shift[j];
            s1[j] = s1[j] + c;
            s2[j] = s2[j] + c * c;
        }
    }
}

/// The affine BatchNorm map v = x·s + t, per column.
struct Affine<T> {
    s: Vec<T>,
    t: Vec<T>,
}

/// y = dropout(ELU(x·s + t)) over rows starting at element `first`, and
/// with dropout the mask (1 kept, 0 dropped).
#[inline(always)]
fn forward_body<T: Real, const DROP: bool>(pre: &[T], y: &mut [T], mask: &mut [u8], bn: &Affine<T>, drop: &Dropout, first: usize) {
    let d = bn.s.len();
    let (s, t) = (&bn.s[..d], &bn.t[..d]);
    let scale = T::of(drop.scale as f64);
    for (i, (r, out)) in pre.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        if DROP {
            let (e0, m) = (first + i * d, &mut mask[i * d..(i + 1) * d]);
            for j in 0..d {
                let k = kept(drop, e0 + j);
                m[j] = k as u8;
                out[j] = elu(r[j] * s[j] + t[j]) * if k { scale } else { T::ZERO };
            }
        } else {
            for j in 0..d {
                out[j] = elu(r[j] * s[j] + t[j]);
            }
        }
    }
}

/// g = dy · mask · ELU′(v), written to `g`: scale·ELU′(v) is `scale` where
/// y > 0 and y + scale elsewhere (there y = scale·(e^v − 1)). Also Σ g and
/// Σ g·x̂ per column.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn reduce_body<T: Real, const DROP: bool>(pre: &[T], y: &[T], dy: &[T], mask: &[u8], g: &mut [T], norm: &Affine<T>, scale: T, sums: (&mut [T], &mut [T])) {
    let d = norm.s.len();
    let (ns, nt) = (&norm.s[..d], &norm.t[..d]);
    let (sg, sgx) = (&mut sums.0[..d], &mut sums.1[..d]);
    for (i, (((r, yr), dr), out)) in pre.chunks_exact(d).zip(y.chunks_exact(d)).zip(dy.chunks_exact(d)).zip(g.chunks_exact_mut(d)).enumerate() {
        for j in 0..d {
            let slope = if yr[j] > T::ZERO { scale } else { yr[j] + scale };
            let m = if !DROP || mask[i * d + j] != 0 { T::ONE } else { T::ZERO };
            let gv = dr[j] * m * slope;
            out[j] = gv;
            sg[j] = sg[j] + gv;
            sgx[j] = sgx[j] + gv * (r[j] * ns[j] + nt[j]);
        }
    }
}

/// dx = g·c1 − (c2 + x̂·c3) in place, x̂ = x·ns + nt.
#[inline(always)]
fn input_grad_body<T: Real>(pre: &[T], g: &mut [T], norm: &Affine<T>, c: &[Vec<T>; 3]) {
    let d = norm.s.len();
    let (ns, nt, c1, c2, c3) = (&norm.s[..d], &norm.t[..d], &c[0][..d], &c[1][..d], &c[2][..d]);
    for (r, out) in pre.chunks_exact(d).zip(g.chunks_exact_mut(d)) {
        for j in 0..d {
            let xhat = r[j] * ns[j] + nt[j];
            out[j] = out[j] * c1[j] - (c2[j] + xhat * c3[j]);
        }
    }
}

// AVX2 builds of the bodies. No FMA, so they round as the plain builds do
// and the results do not depend on the CPU.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn moments_avx2<T: Real>(rows: &[T], shift: &[T], s1: &mut [T], s2: &mut [T]) {
    moments_body(rows, shift, s1, s2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_avx2<T: Real, const DROP: bool>(pre: &[T], y: &mut [T], mask: &mut [u8], bn: &Affine<T>, drop: &Dropout, first: usize) {
    forward_body::<T, DROP>(pre, y, mask, bn, drop, first)
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn reduce_avx2<T: Real, const DROP: bool>(pre: &[T], y: &[T], dy: &[T], mask: &[u8], g: &mut [T], norm: &Affine<T>, scale: T, sums: (&mut [T], &mut [T])) {
    reduce_body::<T, DROP>(pre, y, dy, mask, g, norm, scale, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn input_grad_avx2<T: Real>(pre: &[T], g: &mut [T], norm: &Affine<T>, c: &[Vec<T>; 3]) {
    input_grad_body(pre, g, norm, c)
}

/// Calls the AVX2 build of a body when the CPU has it, else the plain one.
macro_rules! dispatch {
    ($avx:expr, $body:expr, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if crate::loss::has_avx2() {
                // SAFETY: the CPU supports AVX2 (checked at run time).
                unsafe { $avx($($arg),*) }
            } else {
                $body($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($($arg),*)
        }
    }};
}

/// The elements of a contiguous CPU tensor of kind `T::KIND` (the block's
/// own tensors: anything else is a bug here, not bad input).
fn view<T: Real>(t: &Tensor) -> &[T] {
    host_slice::<T>(t).expect("host block: a contiguous CPU tensor of the block's kind")
}

/// The elements of a fresh contiguous CPU tensor of kind `T::KIND`, to write.
fn view_mut<T: Real>(t: &mut Tensor) -> &mut [T] {
    host_slice_mut::<T>(t).expect("host block: a contiguous CPU tensor of the block's kind")
}

fn fresh<T: Real>(n: usize, d: usize) -> Tensor {
    Tensor::empty([n as i64, d as i64], (T::KIND, Device::Cpu))
}

fn host_vec(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).to_device(Device::Cpu).contiguous();
    view::<f64>(&t).to_vec()
}

/// What the backward needs of one block's training forward (besides its
/// output).
pub(super) struct Saved {
    /// The n × d pre-activation (the block's linear output).
    pre: Tensor,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    gamma: Vec<f64>,
    /// The dropout scale and mask (one byte per element), if any.
    drop: Option<(f32, Vec<u8>)>,
}

/// The parameter gradients of a block's normalisation, and the gradient of
/// its pre-activation.
pub(super) struct Grads {
    pub pre: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
}

/// The training forward of BatchNorm(γ, β; batch statistics, ε) → ELU →
/// dropout on `pre` (n × d, n ≥ 2). Updates the running statistics as
/// libtorch does (momentum on the mean and the unbiased variance).
pub(super) fn forward(pre: Tensor, bn: &tch::nn::BatchNorm, eps: f64, momentum: f64, drop: Option<Dropout>, threads: usize) -> (Tensor, Saved) {
    match pre.kind() {
        Kind::Double => forward_as::<f64>(pre, bn, eps, momentum, drop, threads),
        _ => forward_as::<f32>(pre, bn, eps, momentum, drop, threads),
    }
}

fn forward_as<T: Real>(pre: Tensor, bn: &tch::nn::BatchNorm, eps: f64, momentum: f64, drop: Option<Dropout>, threads: usize) -> (Tensor, Saved) {
    let pre = pre.contiguous();
    let (n, d) = (pre.size()[0] as usize, pre.size()[1] as usize);
    let x = view::<T>(&pre);
    // Moments about the first row: one pass, without the cancellation of Σx² − n·x̄².
    let shift = &x[..d];
    let blocks: Vec<usize> = (0..n.div_ceil(BLOCK_ROWS)).collect();
    let parts = run_blocks(blocks, n * d, threads, |_, b| {
        let rows = &x[b * BLOCK_ROWS * d..((b + 1) * BLOCK_ROWS).min(n) * d];
        let (mut s1, mut s2) = (vec![T::ZERO; d], vec![T::ZERO; d]);
        dispatch!(moments_avx2, moments_body, rows, shift, &mut s1, &mut s2);
        (s1, s2)
    });
    let (s1, s2) = sum_columns(parts, d);
    let nf = n as f64;
    let mean: Vec<f64> = shift.iter().zip(&s1).map(|(k, s)| k.wide() + s / nf).collect();
    let var: Vec<f64> = s1.iter().zip(&s2).map(|(a, b)| (b / nf - (a / nf) * (a / nf)).max(0.0)).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let gamma = bn.ws.as_ref().map_or(vec![1.0; d], host_vec);
    let beta = bn.bs.as_ref().map_or(vec![0.0; d], host_vec);
    let affine = Affine {
        s: (0..d).map(|j| T::of(gamma[j] * inv_std[j])).collect(),
        t: (0..d).map(|j| T::of(beta[j] - mean[j] * gamma[j] * inv_std[j])).collect(),
    };
    let mut y = fresh::<T>(n, d);
    let mut mask = vec![0u8; if drop.is_some() { n * d } else { 0 }];
    let rows = BLOCK_ROWS * d;
    let work: Vec<(&mut [T], &mut [u8])> = match drop {
        Some(_) => view_mut::<T>(&mut y).chunks_mut(rows).zip(mask.chunks_mut(rows)).collect(),
        None => view_mut::<T>(&mut y).chunks_mut(rows).map(|c| (c, &mut [][..])).collect(),
    };
    run_blocks(work, n * d, threads, |b, (part, m)| {
        let first = b * rows;
        let x = &x[first..first + part.len()];
        match &drop {
            Some(dr) => dispatch!(forward_avx2::<T, true>, forward_body::<T, true>, x, part, m, &affine, dr, first),
            None => dispatch!(forward_avx2::<T, false>, forward_body::<T, false>, x, part, m, &affine, &NO_DROPOUT, first),
        }
    });
    tch::no_grad(|| {
        let kind = bn.running_mean.kind();
        let m = Tensor::from_slice(&mean).to_kind(kind);
        let unbiased = nf / (nf - 1.0).max(1.0);
        let v = (Tensor::from_slice(&var) * unbiased).to_kind(kind);
        let (mut rm, mut rv) = (bn.running_mean.shallow_clone(), bn.running_var.shallow_clone());
        let _ = rm.g_mul_scalar_(1.0 - momentum).g_add_(&(m * momentum));
        let _ = rv.g_mul_scalar_(1.0 - momentum).g_add_(&(v * momentum));
    });
    (y, Saved { pre, mean, inv_std, gamma, drop: drop.map(|dr| (dr.scale, mask)) })
}

/// The backward of [`forward`] for its output `y` and the output's
/// gradient `dy` (both n × d).
pub(super) fn backward(saved: &Saved, y: &Tensor, dy: &Tensor, threads: usize) -> Grads {
    match saved.pre.kind() {
        Kind::Double => backward_as::<f64>(saved, y, dy, threads),
        _ => backward_as::<f32>(saved, y, dy, threads),
    }
}

fn backward_as<T: Real>(saved: &Saved, y: &Tensor, dy: &Tensor, threads: usize) -> Grads {
    let (n, d) = (saved.pre.size()[0] as usize, saved.pre.size()[1] as usize);
    let x = view::<T>(&saved.pre);
    let y = view::<T>(y);
    let dy = dy.to_kind(T::KIND).contiguous();
    let dyv = view::<T>(&dy);
    let Saved { mean, inv_std, gamma, drop, .. } = saved;
    // x̂ = (x − mean)·inv_std.
    let norm = Affine { s: inv_std.iter().map(|&v| T::of(v)).collect(), t: (0..d).map(|j| T::of(-mean[j] * inv_std[j])).collect() };
    let mut dpre = fresh::<T>(n, d);
    let g = view_mut::<T>(&mut dpre);
    let rows = BLOCK_ROWS * d;
    let parts = run_blocks(g.chunks_mut(rows).collect(), n * d, threads, |b, part| {
        let (first, len) = (b * rows, part.len());
        let (x, y, dy) = (&x[first..first + len], &y[first..first + len], &dyv[first..first + len]);
        let (mut sg, mut sgx) = (vec![T::ZERO; d], vec![T::ZERO; d]);
        let sums = (&mut sg[..], &mut sgx[..]);
        match drop {
            Some((scale, m)) => {
                let (m, scale) = (&m[first..first + len], T::of(*scale as f64));
                dispatch!(reduce_avx2::<T, true>, reduce_body::<T, true>, x, y, dy, m, part, &norm, scale, sums)
            }
            None => dispatch!(reduce_avx2::<T, false>, reduce_body::<T, false>, x, y, dy, &[], part, &norm, T::ONE, sums),
        }
        (sg, sgx)
    });
    let (sg, sgx) = sum_columns(parts, d);
    // dL/dx = γ·inv_std/n · (n·g − Σg − x̂·Σ g·x̂).
    let nf = n as f64;
    let c1: Vec<f64> = (0..d).map(|j| gamma[j] * inv_std[j]).collect();
    let c = [
        c1.iter().map(|&v| T::of(v)).collect(),
        (0..d).map(|j| T::of(c1[j] * sg[j] / nf)).collect(),
        (0..d).map(|j| T::of(c1[j] * sgx[j] / nf)).collect(),
    ];
    run_blocks(g.chunks_mut(rows).collect(), n * d, threads, |b, part| {
        let first = b * rows;
        dispatch!(input_grad_avx2, input_grad_body, &x[first..first + part.len()], part, &norm, &c)
    });
    Grads { pre: dpre, gamma: Tensor::from_slice(&sgx).to_kind(T::KIND), beta: Tensor::from_slice(&sg).to_kind(T::KIND) }
}

/// The graph layer's ReLU and the two dropouts of its heads by hand:
/// hm_k = ReLU(h)·mask_k (k = 1, 2), as `h.relu()` then two
/// [`super::Noise::dropout`] calls compute them, and per element one byte of
/// flags for the backward (bit 0, bit 1: kept by mask 1, 2; bit 2: ReLU(h)
/// not ≤ 0, which passes the gradient).
pub(super) struct TwoDropouts {
    pub hm: [Tensor; 2],
    flags: Vec<u8>,
    scale: [f32; 2],
}

const KEPT: [u8; 2] = [1, 2];
const PASSES: u8 = 4;

// `!(r <= 0)`: NaN passes the gradient, as in libtorch's threshold_backward.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
#[inline(always)]
fn relu_two_body<T: Real, const DROP: bool>(h: &[T], out: (&mut [T], &mut [T]), flags: &mut [u8], drop: [&Dropout; 2], first: usize) {
    let (o1, o2) = out;
    let s = [T::of(drop[0].scale as f64), T::of(drop[1].scale as f64)];
    for (e, (((x, y1), y2), f)) in h.iter().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(flags.iter_mut()).enumerate() {
        // clamp_min(0): NaN stays NaN.
        let r = if *x <= T::ZERO { T::ZERO } else { *x };
        let (k1, k2) = if DROP { (kept(drop[0], first + e), kept(drop[1], first + e)) } else { (true, true) };
        *y1 = r * if k1 { s[0] } else { T::ZERO };
        *y2 = r * if k2 { s[1] } else { T::ZERO };
        *f = (k1 as u8) * KEPT[0] + (k2 as u8) * KEPT[1] + ((!(r <= T::ZERO)) as u8) * PASSES;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn relu_two_avx2<T: Real, const DROP: bool>(h: &[T], out: (&mut [T], &mut [T]), flags: &mut [u8], drop: [&Dropout; 2], first: usize) {
    relu_two_body::<T, DROP>(h, out, flags, drop, first)
}

/// ReLU(h) and its two dropouts (both masks, or neither, present).
pub(super) fn relu_two_dropouts(h: &Tensor, drop: [Option<Dropout>; 2], threads: usize) -> TwoDropouts {
    match h.kind() {
        Kind::Double => relu_two_as::<f64>(h, drop, threads),
        _ => relu_two_as::<f32>(h, drop, threads),
    }
}

fn relu_two_as<T: Real>(h: &Tensor, drop: [Option<Dropout>; 2], threads: usize) -> TwoDropouts {
    let h = h.contiguous();
    let (n, d) = (h.size()[0] as usize, h.size()[1] as usize);
    let x = view::<T>(&h);
    let (mut a, mut b) = (fresh::<T>(n, d), fresh::<T>(n, d));
    let mut flags = vec![0u8; n * d];
    let rows = BLOCK_ROWS * d;
    let work: Vec<_> = view_mut::<T>(&mut a).chunks_mut(rows).zip(view_mut::<T>(&mut b).chunks_mut(rows)).zip(flags.chunks_mut(rows)).collect();
    run_blocks(work, n * d, threads, |blk, ((p1, p2), f)| {
        let first = blk * rows;
        let x = &x[first..first + p1.len()];
        match &drop {
            [Some(d1), Some(d2)] => dispatch!(relu_two_avx2::<T, true>, relu_two_body::<T, true>, x, (p1, p2), f, [d1, d2], first),
            _ => dispatch!(relu_two_avx2::<T, false>, relu_two_body::<T, false>, x, (p1, p2), f, [&NO_DROPOUT, &NO_DROPOUT], first),
        }
    });
    let scale = [drop[0].map_or(1.0, |d| d.scale), drop[1].map_or(1.0, |d| d.scale)];
    TwoDropouts { hm: [a, b], flags, scale }
}

#[inline(always)]
fn relu_two_back_body<T: Real>(g1: &[T], g2: &[T], flags: &[u8], scale: [T; 2], out: &mut [T]) {
    for (((a, b), f), o) in g1.iter().zip(g2).zip(flags).zip(out.iter_mut()) {
        let t1 = *a * if f & KEPT[0] != 0 { scale[0] } else { T::ZERO };
        let t2 = *b * if f & KEPT[1] != 0 { scale[1] } else { T::ZERO };
        *o = if f & PASSES != 0 { t1 + t2 } else { T::ZERO };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn relu_two_back_avx2<T: Real>(g1: &[T], g2: &[T], flags: &[u8], scale: [T; 2], out: &mut [T]) {
    relu_two_back_body(g1, g2, flags, scale, out)
}

/// dL/dh from the gradients of hm_1 and hm_2: (g_1·mask_1 + g_2·mask_2)
/// where ReLU passes, 0 elsewhere, as autograd forms it.
pub(super) fn relu_two_dropouts_backward(saved: &TwoDropouts, g: [&Tensor; 2], threads: usize) -> Tensor {
    match saved.hm[0].kind() {
        Kind::Double => relu_two_back_as::<f64>(saved, g, threads),
        _ => relu_two_back_as::<f32>(saved, g, threads),
    }
}

fn relu_two_back_as<T: Real>(saved: &TwoDropouts, g: [&Tensor; 2], threads: usize) -> Tensor {
    let (n, d) = (saved.hm[0].size()[0] as usize, saved.hm[0].size()[1] as usize);
    let (g1, g2) = (g[0].to_kind(T::KIND).contiguous(), g[1].to_kind(T::KIND).contiguous());
    let (g1, g2) = (view::<T>(&g1), view::<T>(&g2));
    let scale = [T::of(saved.scale[0] as f64), T::of(saved.scale[1] as f64)];
    let flags = &saved.flags[..];
    let mut out = fresh::<T>(n, d);
    let rows = BLOCK_ROWS * d;
    run_blocks(view_mut::<T>(&mut out).chunks_mut(rows).collect(), n * d, threads, |blk, part| {
        let (first, len) = (blk * rows, part.len());
        dispatch!(relu_two_back_avx2, relu_two_back_body, &g1[first..first + len], &g2[first..first + len], &flags[first..first + len], scale, part)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Noise, BN_EPS};
    use super::*;
    use crate::rng::SplitMix64;
    use std::cell::RefCell;
    use tch::nn;

    #[test]
    fn exp_is_accurate_on_the_negative_axis() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f64) * 87.0 / 200_000.0;
            let got = exp_nonpos_f32(x as f32) as f64;
            let want = (x as f32 as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(exp_nonpos_f32(0.0), 1.0);
        assert!(exp_nonpos_f32(-1000.0) < 1e-37 && exp_nonpos_f32(-1000.0) >= 0.0);
        assert!(exp_nonpos_f32(f32::NAN).is_nan());
    }

    /// The block through libtorch (autograd, the host dropout of `Noise`)
    /// against the hand-written pass, in `kind`.
    fn matches_autograd(kind: Kind, n: i64, p: f64, threads: usize, tol: f64) {
        let d = 24;
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm1d(vs.root() / "bn", d, nn::BatchNormConfig { momentum: 0.01, eps: BN_EPS, ..Default::default() });
        tch::no_grad(|| {
            bn.ws.as_ref().unwrap().shallow_clone().copy_(&(Tensor::rand([d], (Kind::Float, Device::Cpu)) + 0.5));
            bn.bs.as_ref().unwrap().shallow_clone().copy_(&(Tensor::randn([d], (Kind::Float, Device::Cpu)) * 0.3));
        });
        // Columns on different scales and offsets, some mostly negative.
        let pre = (Tensor::randn([n, d], (Kind::Double, Device::Cpu)) * Tensor::linspace(0.1, 5.0, d, (Kind::Double, Device::Cpu))
            + Tensor::linspace(-3.0, 40.0, d, (Kind::Double, Device::Cpu)))
        .to_kind(kind);
        let dy = Tensor::randn([n, d], (Kind::Double, Device::Cpu)).to_kind(kind);

        // Reference in double.
        let pre64 = pre.to_kind(Kind::Double).set_requires_grad(true);
        let (w64, b64) = (bn.ws.as_ref().unwrap().to_kind(Kind::Double).detach().set_requires_grad(true), bn.bs.as_ref().unwrap().to_kind(Kind::Double).detach().set_requires_grad(true));
        let normed = pre64.batch_norm(Some(&w64), Some(&b64), None::<&Tensor>, None::<&Tensor>, true, 0.0, BN_EPS, false).elu();
        let key_seed = 77;
        let noise = Noise::Host { rng: RefCell::new(SplitMix64::new(key_seed)), threads: 1 };
        let want_y = noise.dropout(&normed, p, true);
        (&want_y * dy.to_kind(Kind::Double)).sum(Kind::Double).backward();

        let drop = (p > 0.0).then(|| Noise::Host { rng: RefCell::new(SplitMix64::new(key_seed)), threads: 1 }.host_dropout(p)).flatten();
        let (rm0, rv0) = (bn.running_mean.copy(), bn.running_var.copy());
        let (y, saved) = forward(pre.shallow_clone(), &bn, BN_EPS, 0.01, drop, threads);
        let g = backward(&saved, &y, &dy, threads);

        let close = |what: &str, got: &Tensor, want: &Tensor, tol: f64| {
            let got = got.to_kind(Kind::Double);
            let scale = 1.0 + f64::try_from(want.abs().max()).unwrap();
            let diff = f64::try_from((&got - want).abs().max()).unwrap();
            assert!(diff < tol * scale, "{kind:?} n {n} p {p} threads {threads}: {what} off by {diff:e} (scale {scale})");
        };
        close("output", &y, &want_y.detach(), tol);
        close("input gradient", &g.pre, &pre64.grad(), tol);
        close("gamma gradient", &g.gamma, &w64.grad(), tol);
        close("beta gradient", &g.beta, &b64.grad(), tol);
        // The running statistics move as libtorch's would.
        let mean = pre.to_kind(Kind::Double).mean_dim(0, false, Kind::Double);
        let var = pre.to_kind(Kind::Double).var_dim(0, true, false);
        // (The running statistics are float tensors.)
        close("running mean", &bn.running_mean, &(rm0.to_kind(Kind::Double) * 0.99 + mean * 0.01), 1e-6);
        close("running var", &bn.running_var, &(rv0.to_kind(Kind::Double) * 0.99 + var * 0.01), 1e-6);
        // The comparisons are not vacuous.
        assert!(f64::try_from(pre64.grad().abs().max()).unwrap() > 1e-3);
        if p > 0.0 {
            let dropped = f64::try_from(y.eq(0.0).to_kind(Kind::Double).mean(Kind::Double)).unwrap();
            assert!((dropped - p).abs() < 0.05, "dropped share {dropped}");
        }
    }

    #[test]
    fn block_matches_autograd_in_double() {
        for (n, p) in [(2, 0.0), (37, 0.2), (3000, 0.2), (3000, 0.0)] {
            matches_autograd(Kind::Double, n, p, 1, 1e-10);
        }
    }

    #[test]
    fn block_matches_autograd_in_float() {
        matches_autograd(Kind::Float, 3000, 0.2, 1, 1e-4);
    }

    /// ReLU and two dropouts against libtorch's ops and autograd with the
    /// same host masks: the same bits, forward and backward.
    #[test]
    fn relu_two_dropouts_matches_autograd_exactly() {
        for (kind, p) in [(Kind::Double, 0.2), (Kind::Float, 0.2), (Kind::Float, 0.0)] {
            tch::manual_seed(3);
            let h = Tensor::randn([1500, 40], (kind, Device::Cpu));
            let (g1, g2) = (Tensor::randn([1500, 40], (kind, Device::Cpu)), Tensor::randn([1500, 40], (kind, Device::Cpu)));
            let noise = Noise::Host { rng: RefCell::new(SplitMix64::new(21)), threads: 1 };
            let leaf = h.detach().set_requires_grad(true);
            let r = leaf.relu();
            let (w1, w2) = (noise.dropout(&r, p, true), noise.dropout(&r, p, true));
            (&w1 * &g1 + &w2 * &g2).sum(kind).backward();

            let noise = Noise::Host { rng: RefCell::new(SplitMix64::new(21)), threads: 1 };
            let two = relu_two_dropouts(&h, [noise.host_dropout(p), noise.host_dropout(p)], 2);
            let dh = relu_two_dropouts_backward(&two, [&g1, &g2], 2);
            assert!(two.hm[0].equal(&w1.detach()) && two.hm[1].equal(&w2.detach()), "{kind:?} p {p}: outputs");
            assert!(dh.equal(&leaf.grad()), "{kind:?} p {p}: gradient");
            // Not vacuous: some entries are dropped by one mask and kept by the other.
            if p > 0.0 {
                let one = two.hm[0].eq(0.0).logical_xor(&two.hm[1].eq(0.0)).to_kind(Kind::Int64).sum(Kind::Int64);
                assert!(i64::try_from(one).unwrap() > 100);
            }
        }
    }

    #[test]
    fn threads_change_nothing() {
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm1d(vs.root() / "bn", 64, Default::default());
        let pre = Tensor::randn([70_000, 64], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        let dy = Tensor::randn([70_000, 64], (Kind::Float, Device::Cpu));
        let drop = Some(Dropout { k1: 12345, k2: 678, threshold: 3_000_000_000, scale: 1.25 });
        let run = |threads| {
            let (y, s) = forward(pre.shallow_clone(), &bn, BN_EPS, 0.01, drop, threads);
            let g = backward(&s, &y, &dy, threads);
            (y, g.pre, g.gamma, g.beta)
        };
        let (a, b) = (run(1), run(3));
        assert!(a.0.equal(&b.0) && a.1.equal(&b.1) && a.2.equal(&b.2) && a.3.equal(&b.3));
    }
}
