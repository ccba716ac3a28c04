//! The SEDR network (reference spec §3): a masked feature autoencoder, a
//! variational graph autoencoder on the feature code, a decoder and the DEC
//! layer. Built on a tch `VarStore`.
//!
//! Speed notes (the maths is the reference's; only the evaluation order and
//! the autograd plumbing differ):
//!
//! * The GCN operator Â = D^-1/2 (A+I) D^-1/2 is symmetric. It is applied as a
//!   CSR gather-sum ([`GraphOp::apply`], libtorch's `embedding_bag` with
//!   per-sample weights), which is fast on CPU and CUDA. libtorch's own
//!   backward of a sparse product transposes and re-sorts the sparse matrix
//!   on every call (and `embedding_bag`'s backward sorts its indices), which
//!   cost more than the whole rest of an epoch on CPU. Instead, the
//!   autograd graph is *cut* at every Â product ([`Tape`]): the product is
//!   computed outside autograd into a fresh leaf, and the backward pass
//!   (`SedrNet::backward`) walks the cuts in reverse order, maps each leaf's
//!   gradient g to Âᵀg = Âg with the same gather-sum and pushes it into the
//!   producing sub-graph. That is the exact chain rule.
//! * Associativity: Â(XW) is computed as (ÂX)W when X is narrower than XW
//!   (gc1: 16 → 64 columns; the decoder: 32 → d_in columns), so every sparse
//!   product runs on 16 or 32 columns.
//! * The mask token enters the first linear layer as x·Wᵀ + m·(t·Wᵀ) (m the
//!   0/1 mask indicator), which equals (x + m·t)·Wᵀ, or, when the token
//!   replaces the masked rows, as the kept rows' x·Wᵀ with t·Wᵀ in the
//!   masked rows (the product runs on the kept rows only). Either form
//!   spares the n × d_in gradient of the input that autograd would otherwise form.
//! * Dropout masks on the CPU come from a fast seeded generator on the host
//!   (libtorch's CPU Bernoulli sampler is serial and was ~15 % of an epoch);
//!   on CUDA libtorch's dropout is used.
//! * In CPU training the encoder blocks' BatchNorm → ELU → dropout and the
//!   graph layer's ReLU with its heads' dropouts run by hand
//!   ([`host_block`]), outside autograd: the encoder's output is a cut like
//!   the graph products, the heads' cut carries its own backward, and
//!   [`SedrNet::backward`] ends with the encoder's. The same maths as
//!   libtorch's ops in fewer passes; CUDA and eval passes use libtorch's.

mod host_block;

use crate::graph::SpatialGraph;
use crate::loss;
use crate::params::{DecoderKind, Params};
#[cfg(test)]
use crate::params::Mode;
use crate::rng::SplitMix64;
use std::cell::RefCell;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// The symmetric GCN operator Â in CSR form on the device.
#[derive(Debug)]
pub struct GraphOp {
    indptr: Tensor,
    cols: Tensor,
    vals: Tensor,
    n: i64,
}

impl GraphOp {
    /// Â = D^-1/2 (A+I) D^-1/2 of the graph. The backward pass applies Â in
    /// place of Âᵀ, so Â must be symmetric: `SpatialGraph`'s constructors
    /// union-symmetrise, and a hand-made asymmetric one is refused here.
    ///
    /// Written straight into its tensors from A, row by row (the entries of
    /// [`SpatialGraph::gcn_operator`], the same values in the same order):
    /// at millions of spots that operator, its triplets and host copies of
    /// the tensors cost several times the tensors themselves.
    pub fn new(g: &SpatialGraph, device: Device) -> crate::error::Result<Self> {
        let adj = &g.adj;
        let n = g.n();
        let symmetric = adj
            .outer_iterator()
            .enumerate()
            .all(|(i, row)| row.iter().all(|(j, _)| adj.outer_view(j).is_some_and(|r| r.indices().binary_search(&i).is_ok())));
        if !symmetric {
            return Err(crate::error::SedrError::input("graph", "the adjacency is not symmetric; build it with BuildSpatialGraph()"));
        }
        let deg: Vec<f64> = g.degrees().iter().map(|&d| d as f64 + 1.0).collect();
        let nnz = adj.nnz() + n;
        let mut indptr = Tensor::f_empty([n as i64 + 1], (Kind::Int64, Device::Cpu))?;
        let mut cols = Tensor::f_empty([nnz as i64], (Kind::Int64, Device::Cpu))?;
        let mut vals = Tensor::f_empty([nnz as i64], (Kind::Float, Device::Cpu))?;
        {
            // SAFETY: fresh contiguous CPU tensors of these lengths and kinds,
            // not otherwise accessed while the slices live.
            let p = unsafe { std::slice::from_raw_parts_mut(indptr.data_ptr() as *mut i64, n + 1) };
            let c = unsafe { std::slice::from_raw_parts_mut(cols.data_ptr() as *mut i64, nnz) };
            let v = unsafe { std::slice::from_raw_parts_mut(vals.data_ptr() as *mut f32, nnz) };
            let mut e = 0;
            p[0] = 0;
            for (i, row) in adj.outer_iterator().enumerate() {
                let mut put = |j: usize| {
                    c[e] = j as i64;
                    v[e] = (1.0 / (deg[i] * deg[j]).sqrt()) as f32;
                    e += 1;
                };
                // A's row is sorted and holds no self loop: I goes in order.
                let mut self_done = false;
                for (j, _) in row.iter() {
                    if !self_done && j > i {
                        put(i);
                        self_done = true;
                    }
                    put(j);
                }
                if !self_done {
                    put(i);
                }
                p[i + 1] = e as i64;
            }
        }
        if device != Device::Cpu {
            indptr = indptr.f_to_device(device)?;
            cols = cols.f_to_device(device)?;
            vals = vals.f_to_device(device)?;
        }
        Ok(GraphOp { indptr, cols, vals, n: n as i64 })
    }

    pub fn n(&self) -> i64 {
        self.n
    }

    /// Â·x (x: n × k float). Not differentiable by itself; see [`Tape`].
    pub fn apply(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let x = x.detach().contiguous();
            let vals = if self.vals.kind() == x.kind() { self.vals.shallow_clone() } else { self.vals.to_kind(x.kind()) };
            Tensor::embedding_bag(&x, &self.cols, &self.indptr, false, 0, false, Some(&vals), true).0
        })
    }
}

/// One cut of the autograd graph: `post` is a leaf holding op(`pre`).
struct Cut {
    pre: Tensor,
    post: Tensor,
    graph: bool,
    /// The graph layer's heads run by hand (CPU training): `pre` holds no
    /// autograd graph, the backward is [`SedrNet::heads_backward`].
    by_hand: Option<HostHeads>,
}

/// The graph layer from its input leaf `a` = Â·dropout(feat) to the heads'
/// pre-activation: ReLU(a·W₁) and the two heads' dropouts by hand
/// ([`host_block::relu_two_dropouts`]), the products through libtorch.
struct HostHeads {
    a: Tensor,
    two: host_block::TwoDropouts,
}

/// The encoder's hand-run training forward (CPU), kept for its backward.
struct HostEncoder {
    enc1: host_block::Saved,
    enc2: host_block::Saved,
    /// enc1's product input: x, or x's kept rows with their indices when the
    /// token replaces the masked rows.
    x: Tensor,
    keep: Option<Tensor>,
    /// The n × 1 mask indicator (None without masking).
    ind: Option<Tensor>,
    h1: Tensor,
    /// The tape leaf that holds the encoder's output.
    feat: Tensor,
}

/// The cuts of one training forward, in creation order.
#[derive(Default)]
pub struct Tape {
    cuts: Vec<Cut>,
    encoder: Option<HostEncoder>,
}

impl Tape {
    /// A leaf holding Â·pre (`graph`) or pre itself, recorded for the backward.
    fn cut(&mut self, pre: Tensor, adj: Option<&GraphOp>) -> Tensor {
        let value = match adj {
            Some(a) => a.apply(&pre),
            None => pre.detach(),
        };
        let post = value.set_requires_grad(true);
        self.cuts.push(Cut { pre, post: post.shallow_clone(), graph: adj.is_some(), by_hand: None });
        post
    }

    /// A graph cut of the hand-run heads: holds Â·pre.
    fn cut_heads(&mut self, pre: Tensor, adj: &GraphOp, heads: HostHeads) -> Tensor {
        let post = adj.apply(&pre).set_requires_grad(true);
        self.cuts.push(Cut { pre, post: post.shallow_clone(), graph: true, by_hand: Some(heads) });
        post
    }
}

/// Seeded dropout-mask source. Host masks are a counter-based hash of
/// (element index, per-call key), so they can be filled in any order, in
/// parallel or vectorised, with identical results.
#[derive(Debug)]
enum Noise {
    Torch,
    Host { rng: RefCell<SplitMix64>, threads: usize },
}

/// A 32-bit integer hash with good avalanche ("lowbias32", C. Wellons); a
/// bijection, so distinct counters never collide before mixing the key.
#[inline(always)]
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The two 32-bit hash keys of a dropout mask's elements from `start` on
/// (the counter is 32-bit: each 2^32-element block of a tensor gets its own).
fn mask_keys(key: u64, start: u64) -> (u32, u32) {
    let k = key ^ (start >> 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (k as u32, (k >> 32) as u32)
}

/// The kept share 1 − p as a 32-bit hash threshold, and the scale 1/(1 − p).
fn dropout_law(p: f64) -> (u32, f32) {
    (((1.0 - p) * 4_294_967_296.0).round().min(u32::MAX as f64) as u32, (1.0 / (1.0 - p)) as f32)
}

/// out[i] = scale if hash(first + i, key) < threshold else 0 (branch-free).
#[inline(always)]
fn fill_mask_body(out: &mut [f32], first: u32, k1: u32, k2: u32, threshold: u32, scale: f32) {
    for (i, v) in out.iter_mut().enumerate() {
        let h = hash32(hash32(first.wrapping_add(i as u32) ^ k1) ^ k2);
        *v = if h < threshold { scale } else { 0.0 };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_mask_avx2(out: &mut [f32], first: u32, k1: u32, k2: u32, threshold: u32, scale: f32) {
    fill_mask_body(out, first, k1, k2, threshold, scale)
}

fn fill_mask(out: &mut [f32], first: u32, k1: u32, k2: u32, threshold: u32, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { fill_mask_avx2(out, first, k1, k2, threshold, scale) };
            return;
        }
    }
    fill_mask_body(out, first, k1, k2, threshold, scale)
}

/// SplitMix64's output function: a 64-bit hash of a counter.
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniforms for Box–Muller, two per counter q: (u1, u2) with u1 in (0, 1],
/// u2 in [0, 1), from a 64-bit hash of (key, q), so any part can be filled
/// independently.
fn fill_uniform_pairs(out: &mut [f32], first_pair: u64, key: u64) {
    for (q, pair) in out.chunks_exact_mut(2).enumerate() {
        let h = mix64(key.wrapping_add((first_pair + q as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        pair[0] = (((h >> 40) + 1) as f32) * (1.0 / 16_777_216.0);
        pair[1] = ((h & 0xFF_FFFF) as f32) * (1.0 / 16_777_216.0);
    }
}

/// A fresh contiguous CPU float tensor filled by `fill(part, first_index)`,
/// split over up to `threads` threads for large sizes.
fn host_tensor(shape: &[i64], threads: usize, align: usize, fill: impl Fn(&mut [f32], usize) + Sync) -> Tensor {
    let t = Tensor::empty(shape, (Kind::Float, Device::Cpu));
    let numel = t.numel();
    if numel == 0 {
        return t;
    }
    // SAFETY: `t` is a freshly allocated, contiguous CPU float tensor of
    // `numel` (> 0) elements that nothing else references yet.
    let buf: &mut [f32] = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, numel) };
    let workers = threads.clamp(1, (numel / (1 << 18)).max(1));
    if workers == 1 {
        fill(buf, 0);
    } else {
        let per = numel.div_ceil(workers).div_ceil(align) * align;
        std::thread::scope(|s| {
            for (w, part) in buf.chunks_mut(per).enumerate() {
                let fill = &fill;
                s.spawn(move || fill(part, w * per));
            }
        });
    }
    t
}

impl Noise {
    /// The n × 1 0/1 indicator of `n_mask` spots drawn without replacement.
    fn mask_indicator(&self, n: i64, n_mask: i64, like: &Tensor) -> Tensor {
        match self {
            Noise::Torch => {
                let idx = Tensor::randperm(n, (Kind::Int64, like.device())).narrow(0, 0, n_mask);
                Tensor::zeros([n, 1], (like.kind(), like.device())).index_fill(0, &idx, 1.0)
            }
            Noise::Host { rng, .. } => {
                // Partial Fisher–Yates: the first n_mask entries of a random permutation.
                let mut rng = rng.borrow_mut();
                let (n, m) = (n as usize, n_mask as usize);
                let mut perm: Vec<u32> = (0..n as u32).collect();
                let mut ind = vec![0f32; n];
                for i in 0..m.min(n) {
                    let j = i + rng.below(n - i);
                    perm.swap(i, j);
                    ind[perm[i] as usize] = 1.0;
                }
                let t = Tensor::from_slice(&ind).view([n as i64, 1]);
                if like.kind() == Kind::Float { t } else { t.to_kind(like.kind()) }
            }
        }
    }

    /// N(0, 1) noise shaped like `t`.
    fn randn_like(&self, t: &Tensor) -> Tensor {
        match self {
            Noise::Torch => t.randn_like(),
            Noise::Host { rng, threads } => {
                // Box–Muller on hashed uniforms, the transcendental part in
                // libtorch's vectorised kernels.
                let key = rng.borrow_mut().next_u64();
                let numel = t.numel() as i64;
                let pairs = (numel + 1) / 2;
                let u = host_tensor(&[pairs, 2], *threads, 2, |part, first| fill_uniform_pairs(part, (first / 2) as u64, key));
                let r = (u.select(1, 0).log() * -2.0).sqrt();
                let theta = u.select(1, 1) * std::f64::consts::TAU;
                let z = Tensor::cat(&[&r * theta.cos(), r * theta.sin()], 0).narrow(0, 0, numel).view(t.size().as_slice());
                if t.kind() == Kind::Float { z } else { z.to_kind(t.kind()) }
            }
        }
    }

    fn dropout(&self, x: &Tensor, p: f64, train: bool) -> Tensor {
        if !train || p <= 0.0 {
            return x.shallow_clone();
        }
        match self {
            Noise::Torch => x.dropout(p, true),
            Noise::Host { rng, threads } => {
                let key = rng.borrow_mut().next_u64();
                let (threshold, scale) = dropout_law(p);
                // Parts are 2^20-aligned so no 2^20 block straddles a 2^32 one.
                let mask_t = host_tensor(x.size().as_slice(), *threads, 1 << 20, |part, first| {
                    for (o, block) in part.chunks_mut(1 << 20).enumerate() {
                        let start = (first + (o << 20)) as u64;
                        let (k1, k2) = mask_keys(key, start);
                        fill_mask(block, start as u32, k1, k2, threshold, scale);
                    }
                });
                if x.kind() == Kind::Float { x * mask_t } else { x * mask_t.to_kind(x.kind()) }
            }
        }
    }

    /// The host dropout mask [`Noise::dropout`] would draw next, for the
    /// hand-written block (tensors of fewer than 2^32 elements); None for
    /// p = 0 (no draw, as there) or libtorch noise.
    fn host_dropout(&self, p: f64) -> Option<host_block::Dropout> {
        match self {
            Noise::Host { rng, .. } if p > 0.0 => {
                let (k1, k2) = mask_keys(rng.borrow_mut().next_u64(), 0);
                let (threshold, scale) = dropout_law(p);
                Some(host_block::Dropout { k1, k2, threshold, scale })
            }
            _ => None,
        }
    }

    fn threads(&self) -> usize {
        match self {
            Noise::Host { threads, .. } => *threads,
            Noise::Torch => 1,
        }
    }
}

const BN_EPS: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.01;

/// Linear → BatchNorm1d(momentum 0.01, eps 1e-3) → ELU → Dropout, or, as an
/// output head, Linear → BatchNorm1d alone.
#[derive(Debug)]
struct FullBlock {
    lin: nn::Linear,
    bn: nn::BatchNorm,
    p: f64,
    /// ELU and dropout follow the normalisation (false for an output head).
    hidden: bool,
    /// In eval, normalise with the statistics of the full batch (see Params).
    full_batch_eval: bool,
}

impl FullBlock {
    fn new(vs: nn::Path, d_in: i64, d_out: i64, p: f64, full_batch_eval: bool) -> Self {
        let lin = nn::linear(&vs / "lin", d_in, d_out, Default::default());
        let bn_cfg = nn::BatchNormConfig { momentum: BN_MOMENTUM, eps: BN_EPS, ..Default::default() };
        let bn = nn::batch_norm1d(&vs / "bn", d_out, bn_cfg);
        FullBlock { lin, bn, p, hidden: true, full_batch_eval }
    }

    /// The MLP decoder's block without ELU and dropout. The reference ends
    /// its imputation decoder with both, which (a) bounds the reconstruction
    /// of z-scored genes below at −1 and (b) under an MSE loss shrinks the
    /// eval-mode output towards 0 by the keep rate (the expected loss
    /// E[(dropout(r) − x)²] = r²/(1 − p) − 2rx + x² is least at
    /// r = (1 − p)·x). Without them the held-out
    /// correlation on DLPFC rose from 0.878 to 0.886 (bench/README.md).
    fn output_head(vs: nn::Path, d_in: i64, d_out: i64, full_batch_eval: bool) -> Self {
        FullBlock { hidden: false, ..FullBlock::new(vs, d_in, d_out, 0.0, full_batch_eval) }
    }

    /// BN, then ELU and dropout for a hidden block. `pre` is taken so that
    /// an eval pass (no grad) frees it after the BN and applies the ELU in
    /// place: two n × width tensors at its peak instead of three (the same
    /// values; at millions of spots these are the eval pass's largest).
    fn finish(&self, pre: Tensor, train: bool, noise: &Noise) -> Tensor {
        let normed = if !train && self.full_batch_eval {
            // Training is full batch, so these are the exact statistics the
            // model was trained with; the running averages (momentum 0.01)
            // still lag far behind after 200-400 steps (reference spec §12.7)
            // and squash the decoder's output. Running stats are not touched.
            pre.batch_norm(self.bn.ws.as_ref(), self.bn.bs.as_ref(), None::<&Tensor>, None::<&Tensor>, true, 0.0, BN_EPS, false)
        } else {
            self.bn.forward_t(&pre, train)
        };
        drop(pre);
        if !self.hidden {
            normed
        } else if train {
            noise.dropout(&normed.elu(), self.p, train)
        } else {
            let mut normed = normed;
            let _ = normed.elu_();
            normed
        }
    }

    /// x·Wᵀ + b as one fused product.
    fn linear(&self, x: &Tensor) -> Tensor {
        match &self.lin.bs {
            Some(b) => b.addmm(x, &self.lin.ws.tr()),
            None => x.mm(&self.lin.ws.tr()),
        }
    }

    fn forward(&self, x: &Tensor, train: bool, noise: &Noise) -> Tensor {
        self.finish(self.linear(x), train, noise)
    }

    /// The block applied to x + m·t (m: n × 1 indicator, t: 1 × d_in token),
    /// written as x·Wᵀ + b + m·(t·Wᵀ); with `replace`, to the rows of x with
    /// the masked ones replaced by t: (1 − m)·x·Wᵀ + b + m·(t·Wᵀ).
    fn forward_masked(&self, x: &Tensor, ind: &Tensor, token: &Tensor, replace: bool, train: bool, noise: &Noise) -> Tensor {
        self.finish(self.masked_linear(x, ind, token, replace).0, train, noise)
    }

    /// The linear part of [`FullBlock::forward_masked`], and with `replace`
    /// the kept rows of x that went through the product (for the weight
    /// gradient) with their indices.
    fn masked_linear(&self, x: &Tensor, ind: &Tensor, token: &Tensor, replace: bool) -> (Tensor, Option<(Tensor, Tensor)>) {
        let tw = token.mm(&self.lin.ws.tr());
        if replace {
            // The masked rows are the token alone (b + t·Wᵀ); only the kept
            // rows (1 − mask_rate of them) go through the n × d_in product,
            // in the forward and in the weight gradient.
            let n = x.size()[0];
            let keep = ind.reshape([n]).eq(0.0).nonzero().squeeze_dim(1);
            let x_kept = x.index_select(0, &keep);
            let xw = x_kept.mm(&self.lin.ws.tr());
            let (xw, tw) = match &self.lin.bs {
                Some(b) => (xw + b, b + tw),
                None => (xw, tw),
            };
            (tw.repeat([n, 1]).index_copy(0, &keep, &xw), Some((x_kept, keep)))
        } else {
            (self.linear(x).addcmul(ind, &tw), None)
        }
    }

    /// A hidden block's training BN → ELU → dropout by hand (see [`host_block`]).
    fn finish_host(&self, pre: Tensor, noise: &Noise) -> (Tensor, host_block::Saved) {
        host_block::forward(pre, &self.bn, BN_EPS, BN_MOMENTUM, noise.host_dropout(self.p), noise.threads())
    }

    /// A surrogate whose gradient is the block's hand-computed one: `dw`
    /// for the weight, and from the normalisation's backward `g` the bias
    /// (the pre-activation gradient summed over rows), γ and β.
    fn host_surrogate(&self, dw: &Tensor, g: &host_block::Grads) -> Tensor {
        let mut s = inner(&self.lin.ws, dw);
        if let Some(b) = &self.lin.bs {
            s += inner(b, &g.pre.sum_dim_intlist(0, false, None::<Kind>));
        }
        if let (Some(w), Some(b)) = (&self.bn.ws, &self.bn.bs) {
            s += inner(w, &g.gamma) + inner(b, &g.beta);
        }
        s
    }
}

#[derive(Debug)]
enum Decoder {
    /// The GCN decoder Â·(dropout(z)·W) = (Â·dropout(z))·W, no bias.
    Graph(Tensor),
    Mlp(FullBlock),
}

/// xavier-uniform weight of a bias-free graph convolution.
fn gcn_weight(vs: nn::Path, d_in: i64, d_out: i64) -> Tensor {
    let bound = (6.0 / (d_in + d_out) as f64).sqrt();
    vs.var("weight", &[d_in, d_out], nn::Init::Uniform { lo: -bound, up: bound })
}

/// Values of the reconstruction losses and the surrogate that carries their
/// gradient (see [`SedrNet::recon_head`]).
pub struct ReconHead {
    pub mse: Tensor,
    pub sce: Tensor,
    pub surrogate: Tensor,
}

/// Everything one forward pass produces.
pub struct Forward {
    /// The embedding Z = [feat_x ‖ gnn_z] (in training, a leaf of the tape).
    pub z: Tensor,
    pub mu: Tensor,
    pub log_sigma: Tensor,
    /// The decoder input: Â·dropout(z) for the GCN decoder, z for the MLP
    /// decoder (the reconstruction is [`SedrNet::recon`]).
    pub dec_in: Tensor,
    /// Training only: the n × 1 0/1 mask indicator m and the number of
    /// masked spots (the token-added input is x + m·t).
    pub masked: Option<(Tensor, i64)>,
    /// Training only: the autograd cuts, consumed by [`SedrNet::backward`].
    pub tape: Option<Tape>,
}

#[derive(Debug)]
pub struct SedrNet {
    enc1: FullBlock,
    enc2: FullBlock,
    gc1: Tensor,
    gc_mu: Tensor,
    gc_sigma: Tensor,
    decoder: Decoder,
    /// DEC cluster centres (K × latent), overwritten by k-means before phase 2.
    pub centres: Tensor,
    /// Learnable mask token, added to (or replacing) the rows of masked spots.
    mask_token: Tensor,
    /// Masked rows are replaced by the token (true) or get it added (the reference).
    mask_replace: bool,
    mask_rate: f64,
    dec_alpha: f64,
    p_drop: f64,
    noise: Noise,
}

impl SedrNet {
    pub fn new(vs: &nn::Path, d_in: i64, p: &Params) -> Self {
        let latent = p.latent_dim();
        // Registration order follows the reference so the layout is familiar.
        let enc1 = FullBlock::new(vs / "enc1", d_in, p.feat_hidden1, p.dropout, p.bn_full_batch);
        let enc2 = FullBlock::new(vs / "enc2", p.feat_hidden1, p.feat_hidden2, p.dropout, p.bn_full_batch);
        let decoder = match p.decoder {
            DecoderKind::Gcn => Decoder::Graph(gcn_weight(vs / "decoder", latent, d_in)),
            DecoderKind::Mlp => Decoder::Mlp(FullBlock::output_head(vs / "decoder", latent, d_in, p.bn_full_batch)),
        };
        let gc1 = gcn_weight(vs / "gc1", p.feat_hidden2, p.gcn_hidden1);
        let gc_mu = gcn_weight(vs / "gc_mu", p.gcn_hidden1, p.gcn_hidden2);
        let gc_sigma = gcn_weight(vs / "gc_sigma", p.gcn_hidden1, p.gcn_hidden2);
        let std = (2.0 / (p.dec_clusters + latent) as f64).sqrt();
        let centres = vs.var("centres", &[p.dec_clusters.max(1), latent], nn::Init::Randn { mean: 0.0, stdev: std });
        let mask_token = vs.zeros("mask_token", &[1, d_in]);
        let noise = match vs.device() {
            Device::Cpu => {
                // Seeded from libtorch's generator, so `tch::manual_seed` controls it.
                let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
                Noise::Host { rng: RefCell::new(SplitMix64::new(seed)), threads: p.threads }
            }
            _ => Noise::Torch,
        };
        SedrNet {
            enc1,
            enc2,
            gc1,
            gc_mu,
            gc_sigma,
            decoder,
            centres,
            mask_token,
            mask_replace: p.mask_replace,
            mask_rate: p.mask_rate,
            dec_alpha: p.dec_alpha,
            p_drop: p.dropout,
            noise,
        }
    }

    /// One pass. In training, a random `mask_rate` share of spots gets the
    /// mask token added (reference §3) and the autograd graph is cut at every
    /// graph product (see the module notes): call [`SedrNet::backward`] with
    /// the returned tape instead of `loss.backward()`. In eval no token is
    /// added: the reference masks at inference too, which makes its
    /// embedding random; that is a bug we fix.
    pub fn forward(&self, x: &Tensor, adj: &GraphOp, train: bool) -> Forward {
        if !train {
            return tch::no_grad(|| self.pass(x, adj, false, None, true));
        }
        let mut tape = Tape::default();
        let mut fw = self.pass(x, adj, true, Some(&mut tape), true);
        fw.tape = Some(tape);
        fw
    }

    /// The eval-mode embedding alone ([`Forward::z`] of an eval pass), without
    /// the decoder input the pass would also make.
    pub fn embed(&self, x: &Tensor, adj: &GraphOp) -> Tensor {
        tch::no_grad(|| self.pass(x, adj, false, None, false).z)
    }

    /// A forward pass; without `decoder` (eval only), `dec_in` is left empty.
    fn pass(&self, x: &Tensor, adj: &GraphOp, train: bool, mut tape: Option<&mut Tape>, decoder: bool) -> Forward {
        let n = x.size()[0];
        let noise = &self.noise;
        let drop = |t: &Tensor| noise.dropout(t, self.p_drop, train);
        // A product with Â (cut when recording) or an identity cut.
        let graph = |t: Tensor, tape: &mut Option<&mut Tape>| match tape {
            Some(tp) => tp.cut(t, Some(adj)),
            None => adj.apply(&t),
        };
        let ident = |t: Tensor, tape: &mut Option<&mut Tape>| match tape {
            Some(tp) => tp.cut(t, None),
            None => t,
        };
        let masked = (train && self.mask_rate > 0.0).then(|| {
            let n_mask = ((self.mask_rate * n as f64) as i64).clamp(1, n);
            (noise.mask_indicator(n, n_mask, x), n_mask)
        });
        // By hand on the host: CPU training in float or double, at least two
        // rows (BatchNorm's batch statistics) and a 32-bit mask counter.
        let host = tape.is_some()
            && matches!(noise, Noise::Host { .. })
            && matches!(x.kind(), Kind::Float | Kind::Double)
            && n >= 2
            && (n as u64) * (self.enc1.lin.ws.size()[0].max(self.enc2.lin.ws.size()[0]).max(self.gc1.size()[1]) as u64) < 1 << 32;
        let (feat, h1) = if host {
            // Outside autograd: the backward is [`SedrNet::encoder_backward`].
            let (pre, kept) = tch::no_grad(|| match &masked {
                Some((ind, _)) => self.enc1.masked_linear(x, ind, &self.mask_token, self.mask_replace),
                None => (self.enc1.linear(x), None),
            });
            let (h1, enc1) = self.enc1.finish_host(pre, noise);
            let (feat, enc2) = self.enc2.finish_host(tch::no_grad(|| self.enc2.linear(&h1)), noise);
            let feat = ident(feat, &mut tape);
            let (x, keep) = match kept {
                Some((rows, keep)) => (rows, Some(keep)),
                None => (x.shallow_clone(), None),
            };
            let ind = masked.as_ref().map(|(ind, _)| ind.shallow_clone());
            if let Some(tp) = tape.as_deref_mut() {
                tp.encoder = Some(HostEncoder { enc1, enc2, x, keep, ind, h1, feat: feat.shallow_clone() });
            }
            (feat, None)
        } else {
            let h1 = match &masked {
                Some((ind, _)) => self.enc1.forward_masked(x, ind, &self.mask_token, self.mask_replace, train, noise),
                None => self.enc1.forward(x, train, noise),
            };
            (ident(self.enc2.forward(&h1, train, noise), &mut tape), Some(h1))
        };
        // Not needed past here (the tape, when recording, holds its own
        // reference): n × 64 less at the graph layers' peak.
        std::mem::drop(h1);
        // gc1: Â·(dropout(feat)·W) = (Â·dropout(feat))·W.
        let a = graph(drop(&feat), &mut tape);
        // gc_mu and gc_sigma share one product with Â on their 2 × 16 columns.
        let heads = match tape.as_deref_mut() {
            Some(tp) if host => {
                // The same values as below (the masks drawn in the same
                // order), the elementwise part in one pass each way.
                let h = tch::no_grad(|| a.mm(&self.gc1));
                let two = host_block::relu_two_dropouts(&h, [noise.host_dropout(self.p_drop), noise.host_dropout(self.p_drop)], noise.threads());
                let pre = tch::no_grad(|| Tensor::cat(&[two.hm[0].mm(&self.gc_mu), two.hm[1].mm(&self.gc_sigma)], 1));
                tp.cut_heads(pre, adj, HostHeads { a, two })
            }
            _ => {
                let mut h = a.mm(&self.gc1);
                // In place in an eval pass (no grad; at millions of spots h
                // is its largest tensor after the encoder's).
                let h = if train {
                    h.relu()
                } else {
                    let _ = h.relu_();
                    h
                };
                let heads = Tensor::cat(&[drop(&h).mm(&self.gc_mu), drop(&h).mm(&self.gc_sigma)], 1);
                graph(heads, &mut tape)
            }
        };
        let k = self.gc_mu.size()[1];
        let mu = heads.narrow(1, 0, k);
        let log_sigma = heads.narrow(1, k, self.gc_sigma.size()[1]);
        // "logvar" in the reference is used as log σ: z = μ + ε·exp(logσ).
        let gnn_z = if train { &mu + noise.randn_like(&mu) * log_sigma.exp() } else { mu.shallow_clone() };
        let z = ident(Tensor::cat(&[&feat, &gnn_z], 1), &mut tape);
        let dec_in = match &self.decoder {
            _ if !decoder => Tensor::new(),
            // Â·(dropout(z)·W) = (Â·dropout(z))·W: the product runs on 32 columns.
            Decoder::Graph(_) => graph(drop(&z), &mut tape),
            Decoder::Mlp(_) => z.shallow_clone(),
        };
        Forward { z, mu, log_sigma, dec_in, masked, tape: None }
    }

    /// The reconstruction of a forward pass. For the GCN decoder it is
    /// computed outside autograd (its gradient enters through
    /// [`SedrNet::recon_surrogate`]); the MLP decoder runs under autograd
    /// when `train`.
    pub fn recon(&self, fw: &Forward, train: bool) -> Tensor {
        match &self.decoder {
            Decoder::Graph(w) => tch::no_grad(|| fw.dec_in.mm(w)),
            Decoder::Mlp(b) => {
                if train {
                    b.forward(&fw.dec_in, true, &self.noise)
                } else {
                    tch::no_grad(|| b.forward(&fw.dec_in, false, &self.noise))
                }
            }
        }
    }

    /// The reconstruction losses of a training forward: rec_w·MSE(R, X) and,
    /// with `use_mask`, self_w·SCE over the masked rows of (R, X + m·t), or of
    /// (R, X) when the token replaces the masked rows.
    /// Returns their values and a surrogate scalar whose gradient with
    /// respect to the parameters and the tape leaves is the exact gradient of
    /// rec_w·MSE + self_w·SCE (its value is meaningless). The GCN decoder's
    /// R = (Â·dropout(z))·W is never formed (see
    /// [`loss::factored_recon_loss_and_grad`]); `xx` are the row norms ‖X_i‖².
    #[allow(clippy::too_many_arguments)]
    pub fn recon_head(&self, fw: &Forward, x: &Tensor, xx: &Tensor, use_mask: bool, rec_w: f64, self_w: f64, alpha: f64) -> ReconHead {
        // With replacement the SCE target is the original row X_i (no token
        // in the loss), so the token gets no gradient from the target.
        let target_token = if self.mask_replace { None } else { Some(&self.mask_token) };
        let masked = match (&fw.masked, use_mask) {
            (Some((ind, n_mask)), true) => Some(loss::MaskedRows { ind, n_mask: *n_mask, token: target_token }),
            _ => None,
        };
        let (mse, sce, mut surrogate, d_token) = match &self.decoder {
            Decoder::Graph(w) => {
                let r = loss::factored_recon_loss_and_grad(&fw.dec_in, w, x, xx, masked, rec_w, self_w, alpha);
                let sur = inner(&fw.dec_in, &r.d_s) + inner(w, &r.d_w);
                (r.mse, r.sce, sur, r.d_token)
            }
            Decoder::Mlp(_) => {
                let recon = self.recon(fw, true);
                let r = loss::recon_loss_and_grad(&recon, x, masked, rec_w, self_w, alpha);
                (r.mse, r.sce, inner(&recon, &r.d_recon), r.d_token)
            }
        };
        if let (Some(dt), false) = (d_token, self.mask_replace) {
            surrogate += inner(&self.mask_token, &dt);
        }
        ReconHead { mse, sce, surrogate }
    }

    pub fn mask_token(&self) -> &Tensor {
        &self.mask_token
    }

    /// Backpropagates `loss` (built from a training [`Forward`]) through the
    /// cut graph, accumulating into the parameters' gradients.
    pub fn backward(&self, loss: &Tensor, tape: Tape, adj: &GraphOp) {
        loss.backward();
        for c in tape.cuts.into_iter().rev() {
            if c.by_hand.is_none() && !c.pre.requires_grad() {
                continue;
            }
            let g = c.post.grad();
            if !g.defined() {
                continue;
            }
            let g = if c.graph { adj.apply(&g) } else { g };
            match c.by_hand {
                Some(heads) => self.heads_backward(heads, &g),
                None => inner(&c.pre, &g).backward(),
            }
        }
        if let Some(e) = tape.encoder {
            self.encoder_backward(e);
        }
    }

    /// The backward of the hand-run heads for the gradient `g` of their
    /// pre-activation: the products' gradients as libtorch's mm backward
    /// forms them, the elementwise part by hand; the weights' and the input
    /// leaf's gradients enter autograd through one surrogate.
    fn heads_backward(&self, heads: HostHeads, g: &Tensor) {
        let k = self.gc_mu.size()[1];
        let (g_mu, g_sigma) = (g.narrow(1, 0, k), g.narrow(1, k, self.gc_sigma.size()[1]));
        let [hm_mu, hm_sigma] = &heads.two.hm;
        let d_h = host_block::relu_two_dropouts_backward(
            &heads.two,
            [&g_mu.mm(&self.gc_mu.detach().tr()), &g_sigma.mm(&self.gc_sigma.detach().tr())],
            self.noise.threads(),
        );
        let a = heads.a.detach();
        (inner(&self.gc_mu, &hm_mu.tr().mm(&g_mu))
            + inner(&self.gc_sigma, &hm_sigma.tr().mm(&g_sigma))
            + inner(&self.gc1, &a.tr().mm(&d_h))
            + inner(&heads.a, &d_h.mm(&self.gc1.detach().tr())))
        .backward();
    }

    /// The hand-written backward of the encoder from the gradient of its
    /// output leaf; the parameter gradients enter autograd through one
    /// surrogate of inner products.
    fn encoder_backward(&self, e: HostEncoder) {
        let g_feat = e.feat.grad();
        if !g_feat.defined() {
            return;
        }
        let threads = self.noise.threads();
        let (w1, w2) = (self.enc1.lin.ws.detach(), self.enc2.lin.ws.detach());
        let g2 = host_block::backward(&e.enc2, &e.feat, &g_feat, threads);
        let g1 = host_block::backward(&e.enc1, &e.h1, &g2.pre.mm(&w2), threads);
        let dw2 = g2.pre.tr().mm(&e.h1);
        let mut dw1 = match &e.keep {
            Some(keep) => g1.pre.index_select(0, keep).tr().mm(&e.x),
            None => g1.pre.tr().mm(&e.x),
        };
        let mut surrogate = self.enc2.host_surrogate(&dw2, &g2);
        if let Some(ind) = &e.ind {
            // The masked rows' m·(t·Wᵀ): dW += sᵀ·t and dt = s·W, s = mᵀ·dpre.
            let s = ind.tr().mm(&g1.pre);
            dw1 += s.tr().mm(&self.mask_token.detach());
            surrogate += inner(&self.mask_token, &s.mm(&w1));
        }
        surrogate += self.enc1.host_surrogate(&dw1, &g1);
        surrogate.backward();
    }

    /// DEC soft assignment: Student-t kernel between Z and the centres,
    /// rows normalised. Uses ‖z‖² + ‖μ‖² − 2zμᵀ so no n×K×d temporary exists.
    pub fn soft_assign(&self, z: &Tensor) -> Tensor {
        student_t(z, &self.centres, self.dec_alpha)
    }

    pub fn set_centres(&mut self, c: &Tensor) {
        tch::no_grad(|| self.centres.copy_(c));
    }
}

pub fn sq_dist(a: &Tensor, b: &Tensor) -> Tensor {
    let aa = a.square().sum_dim_intlist(1, true, None::<Kind>);
    let bb = b.square().sum_dim_intlist(1, true, None::<Kind>).transpose(0, 1);
    (aa + bb - a.mm(&b.transpose(0, 1)) * 2.0).clamp_min(0.0)
}

pub fn student_t(z: &Tensor, centres: &Tensor, alpha: f64) -> Tensor {
    let d = sq_dist(z, centres);
    let q = (d / alpha + 1.0).pow_tensor_scalar(-(alpha + 1.0) / 2.0);
    let s = q.sum_dim_intlist(1, true, None::<Kind>);
    q / s
}

/// ⟨t, g⟩, a scalar whose gradient with respect to `t` is exactly `g` (its
/// value is not used): how a gradient computed outside autograd enters it.
/// One fused product, without the n × w temporary of `(t * g).sum()`; the
/// backward pass gives the same bits (g times the unit output gradient).
pub fn inner(t: &Tensor, g: &Tensor) -> Tensor {
    t.reshape(-1).dot(&g.reshape(-1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::Module;
    use crate::graph::{build_graph, Coords, Neighbours};
    use crate::loss::{self, Pairs};
    use crate::negatives::{NegativeSampler, Negatives};

    #[test]
    fn graph_op_holds_the_gcn_operator() {
        let mut rng = SplitMix64::new(3);
        let coords: Vec<f64> = (0..2 * 500).map(|_| rng.next_f64() * 10.0).collect();
        // k-NN graphs are irregular (degrees differ), and sections leave spots apart.
        let groups: Vec<i32> = (0..500).map(|i| i % 3).collect();
        for g in [
            build_graph(&Coords { data: &coords, dim: 2 }, None, Neighbours::Knn(7)).unwrap(),
            build_graph(&Coords { data: &coords, dim: 2 }, Some(&groups), Neighbours::Knn(4)).unwrap(),
            SpatialGraph::from_pattern(4, &[0, 1, 2, 2, 3], &[1, 0, 3]).unwrap(),
        ] {
            let op = GraphOp::new(&g, Device::Cpu).unwrap();
            let want = g.gcn_operator();
            let p: Vec<i64> = want.indptr().raw_storage().iter().map(|&v| v as i64).collect();
            let c: Vec<i64> = want.indices().iter().map(|&v| v as i64).collect();
            let v: Vec<u32> = want.data().iter().map(|&v| (v as f32).to_bits()).collect();
            assert_eq!(Vec::<i64>::try_from(&op.indptr).unwrap(), p);
            assert_eq!(Vec::<i64>::try_from(&op.cols).unwrap(), c);
            assert_eq!(Vec::<f32>::try_from(&op.vals).unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>(), v);
        }
    }

    /// The cut-graph backward (graph products outside autograd, edge and
    /// reconstruction gradients by hand, reordered products) gives the same
    /// parameter gradients as plain autograd through the reference
    /// formulation with a dense Â, in float64.
    /// `torch_noise`: libtorch's noise, so the encoder runs through libtorch's
    /// ops and autograd as on CUDA, instead of by hand.
    fn gradients_match(mode: Mode, mask_replace: bool, torch_noise: bool) {
        let (rows, cols) = (6usize, 9usize);
        let coords: Vec<f64> = (0..rows * cols).flat_map(|i| [(i % cols) as f64 + 0.5 * ((i / cols) % 2) as f64, (i / cols) as f64 * 0.866]).collect();
        let g = build_graph(&Coords { data: &coords, dim: 2 }, None, Neighbours::Knn(6)).unwrap();
        let (n, d) = (g.n() as i64, 12i64);
        let p = Params { dropout: 0.0, dec_clusters: 4, threads: 1, mask_replace, ..Params::for_mode(mode) };
        tch::manual_seed(11);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut net = SedrNet::new(&vs.root(), d, &p);
        if torch_noise {
            net.noise = Noise::Torch;
        }
        vs.double();
        let x = Tensor::randn([n, d], (Kind::Double, Device::Cpu));
        // A non-zero token so both of its paths matter.
        tch::no_grad(|| net.mask_token.copy_(&(Tensor::randn([1, d], (Kind::Double, Device::Cpu)) * 0.5)));
        let op = GraphOp::new(&g, Device::Cpu).unwrap();
        let (r, c) = g.target_pairs();
        let pos = Pairs::from_host(n as usize, &r, &c, Device::Cpu);
        let neg = match NegativeSampler::new(n, &pos.src, &pos.dst, 1).draw() {
            Negatives::Host(h) => h.to_pairs(Device::Cpu),
            Negatives::Device(p) => p,
        };
        let norm = g.gae_norm();
        let target = Tensor::rand([n, 4], (Kind::Double, Device::Cpu)) + 0.1;
        let target = &target / target.sum_dim_intlist(1, true, None::<Kind>);
        let grads = |vs: &nn::VarStore| -> Vec<Tensor> {
            vs.trainable_variables().iter().map(|v| if v.grad().defined() { v.grad().copy() } else { v.zeros_like() }).collect()
        };
        let zero = |vs: &nn::VarStore| {
            for mut v in vs.trainable_variables() {
                v.zero_grad();
            }
        };

        // Ours.
        let mut fw = net.forward(&x, &op, true);
        let tape = fw.tape.take().unwrap();
        // The encoder and the graph layer's heads ran by hand exactly when
        // the noise is the host's.
        assert_eq!(tape.encoder.is_some(), !torch_noise);
        assert_eq!(tape.cuts.iter().any(|c| c.by_hand.is_some()), !torch_noise);
        let ind = fw.masked.as_ref().map(|(i, _)| i.shallow_clone()).unwrap();
        let xx = x.square().sum_dim_intlist(1, false, None::<Kind>);
        let head = net.recon_head(&fw, &x, &xx, true, p.rec_w, p.self_w, p.sce_alpha);
        let (bce, bce_grad) = loss::edge_bce_and_grad(&fw.z, &pos, Some(&neg), norm);
        let kl_vgae = loss::vgae_kl(&fw.mu, &fw.log_sigma);
        let dec = loss::dec_kl(&net.soft_assign(&fw.z), &target);
        let surrogate = &kl_vgae * p.gcn_w + &dec * p.dec_kl_w + inner(&fw.z, &(&bce_grad * p.gcn_w)) + &head.surrogate;
        let ours_total = f64::try_from(&head.mse * p.rec_w + &head.sce * p.self_w + (&bce + &kl_vgae) * p.gcn_w + &dec * p.dec_kl_w).unwrap();
        net.backward(&surrogate, tape, &op);
        let ours = grads(&vs);
        zero(&vs);

        // Reference: plain autograd, dense Â, original product order.
        let k = net.gc_mu.size()[1];
        let eps = tch::no_grad(|| (fw.z.narrow(1, k, k) - &fw.mu) / fw.log_sigma.exp());
        let a = {
            let op = g.gcn_operator();
            let mut dense = vec![0f64; (n * n) as usize];
            for (i, row) in op.outer_iterator().enumerate() {
                for (j, v) in row.iter() {
                    // GraphOp stores Â in float32.
                    dense[i * n as usize + j] = *v as f32 as f64;
                }
            }
            Tensor::from_slice(&dense).view([n, n])
        };
        // The encoder's input and the SCE target: replaced rows and the
        // original X, or the token added to both (the reference).
        let (xm, sce_target) = if mask_replace {
            (&x * (-&ind + 1.0) + &ind * &net.mask_token, x.shallow_clone())
        } else {
            let xm = &x + &ind * &net.mask_token;
            (xm.shallow_clone(), xm)
        };
        let block = |b: &FullBlock, t: &Tensor| b.bn.forward_t(&b.lin.forward(t), true).elu();
        let feat = block(&net.enc2, &block(&net.enc1, &xm));
        let h = a.mm(&feat.mm(&net.gc1)).relu();
        let mu = a.mm(&h.mm(&net.gc_mu));
        let ls = a.mm(&h.mm(&net.gc_sigma));
        let z = Tensor::cat(&[&feat, &(&mu + &eps * ls.exp())], 1);
        let recon_ref = match &net.decoder {
            Decoder::Graph(w) => a.mm(&z.mm(w)),
            Decoder::Mlp(b) => b.bn.forward_t(&b.lin.forward(&z), true),
        };
        let idx = ind.squeeze_dim(1).nonzero().squeeze_dim(1);
        let sce = loss::sce(&recon_ref.index_select(0, &idx), &sce_target.index_select(0, &idx), p.sce_alpha);
        let total = loss::mse(&recon_ref, &x) * p.rec_w
            + sce * p.self_w
            + (loss::edge_bce(&z, (&pos.src, &pos.dst), Some((&neg.src, &neg.dst)), norm) + loss::vgae_kl(&mu, &ls)) * p.gcn_w
            + loss::dec_kl(&student_t(&z, &net.centres, 1.0), &target) * p.dec_kl_w;
        let ref_total = f64::try_from(&total).unwrap();
        total.backward();
        let reference = grads(&vs);

        assert!((ours_total - ref_total).abs() < 1e-10 * (1.0 + ref_total.abs()), "loss {ours_total} vs {ref_total}");
        for (i, (o, r)) in ours.iter().zip(&reference).enumerate() {
            let scale = 1.0 + f64::try_from(r.abs().max()).unwrap();
            let diff = f64::try_from((o - r).abs().max()).unwrap();
            assert!(diff < 1e-9 * scale, "{mode:?}: variable {i} {:?}: max |diff| {diff:e} (scale {scale})", r.size());
        }
        // The comparison is not vacuous: every parameter got a gradient.
        assert!(reference.iter().all(|r| f64::try_from(r.abs().max()).unwrap() > 0.0));
    }

    /// Host noise: dropout keeps ≈ 1 − p of the entries scaled by 1/(1 − p)
    /// and gives the same mask whatever the thread count; the mask
    /// indicator has exactly n_mask ones; the normals have mean 0, sd 1.
    #[test]
    fn host_noise_has_the_right_law_and_ignores_thread_count() {
        let x = Tensor::ones([700, 1000], (Kind::Float, Device::Cpu));
        let one = Noise::Host { rng: RefCell::new(SplitMix64::new(5)), threads: 1 };
        let four = Noise::Host { rng: RefCell::new(SplitMix64::new(5)), threads: 4 };
        let (a, b) = (one.dropout(&x, 0.2, true), four.dropout(&x, 0.2, true));
        assert!(a.equal(&b));
        let kept = f64::try_from(a.ne(0.0).to_kind(Kind::Double).mean(Kind::Double)).unwrap();
        assert!((kept - 0.8).abs() < 0.005, "{kept}");
        let vals = f64::try_from(a.max()).unwrap();
        assert!((vals - 1.25).abs() < 1e-6 && f64::try_from(a.min()).unwrap() == 0.0);
        // A second draw differs; eval mode is the identity.
        assert!(!one.dropout(&x, 0.2, true).equal(&a));
        assert!(one.dropout(&x, 0.2, false).equal(&x));
        let ind = one.mask_indicator(1000, 800, &x);
        assert_eq!(f64::try_from(ind.sum(Kind::Double)).unwrap(), 800.0);
        assert_eq!(ind.size(), vec![1000, 1]);
        let z = one.randn_like(&Tensor::zeros([300, 333], (Kind::Float, Device::Cpu)));
        assert_eq!(z.size(), vec![300, 333]);
        let (m, sd) = (f64::try_from(z.mean(Kind::Double)).unwrap(), f64::try_from(z.std(true)).unwrap());
        assert!(m.abs() < 0.01 && (sd - 1.0).abs() < 0.01, "{m} {sd}");
    }

    /// With `mask_replace` a masked row is the token alone: changing the
    /// masked rows' input changes nothing, the other rows are the plain
    /// block. The reference's additive token leaves the input visible.
    #[test]
    fn replaced_rows_do_not_see_their_input() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        // Running-stat BatchNorm in eval: rows are transformed independently.
        let b = FullBlock::new(vs.root() / "b", 5, 4, 0.0, false);
        let noise = Noise::Torch;
        let x = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
        let ind = Tensor::from_slice(&[1f32, 0., 1., 0., 0., 1.]).view([6, 1]);
        let t = Tensor::randn([1, 5], (Kind::Float, Device::Cpu));
        let x2 = &x + &ind * 7.0;
        let y = b.forward_masked(&x, &ind, &t, true, false, &noise);
        assert!(y.allclose(&b.forward_masked(&x2, &ind, &t, true, false, &noise), 1e-6, 1e-6, false));
        let expected = b.forward(&x, false, &noise) * (-&ind + 1.0) + &ind * b.forward(&t, false, &noise);
        assert!(y.allclose(&expected, 1e-5, 1e-6, false));
        let added = b.forward_masked(&x, &ind, &t, false, false, &noise);
        assert!(!added.allclose(&b.forward_masked(&x2, &ind, &t, false, false, &noise), 1e-3, 1e-3, false));
    }

    /// The MLP decoder's head is Linear → BatchNorm alone: no dropout (train
    /// and full-batch eval give the same output) and no ELU floor at −1.
    #[test]
    fn output_head_is_linear_and_not_dropped_out() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let head = FullBlock::output_head(vs.root() / "h", 5, 4, true);
        let noise = Noise::Torch;
        let x = Tensor::randn([50, 5], (Kind::Float, Device::Cpu));
        let train = head.forward(&x, true, &noise);
        assert!(train.allclose(&head.forward(&x, false, &noise), 1e-5, 1e-6, false));
        assert!(f64::try_from(train.min()).unwrap() < -1.5);
        let hidden = FullBlock::new(vs.root() / "b", 5, 4, 0.2, true);
        assert!(f64::try_from(hidden.forward(&x, false, &noise).min()).unwrap() >= -1.0);
        assert!(!hidden.forward(&x, true, &noise).allclose(&hidden.forward(&x, false, &noise), 1e-3, 1e-3, false));
    }

    #[test]
    fn cut_backward_matches_plain_autograd_clustering() {
        gradients_match(Mode::Clustering, true, false);
        gradients_match(Mode::Clustering, true, true);
        gradients_match(Mode::Clustering, false, false);
        gradients_match(Mode::Clustering, false, true);
    }

    #[test]
    fn cut_backward_matches_plain_autograd_imputation() {
        gradients_match(Mode::Imputation, false, false);
        gradients_match(Mode::Imputation, false, true);
        gradients_match(Mode::Imputation, true, false);
        gradients_match(Mode::Imputation, true, true);
    }
}
