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
//!   0/1 mask indicator), which equals (x + m·t)·Wᵀ but spares the n × d_in
//!   gradient of the input that autograd would otherwise form.
//! * Dropout masks on the CPU come from a fast seeded generator on the host
//!   (libtorch's CPU Bernoulli sampler is serial and was ~15 % of an epoch);
//!   on CUDA libtorch's dropout is used.

use crate::graph::SpatialGraph;
use crate::params::{Mode, Params};
use crate::rng::SplitMix64;
use std::cell::RefCell;
use tch::nn::{self, Module, ModuleT};
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
    /// Â = D^-1/2 (A+I) D^-1/2 of the graph (symmetric by construction:
    /// `SpatialGraph` is always union-symmetrised).
    pub fn new(g: &SpatialGraph, device: Device) -> tch::Result<Self> {
        let op = g.gcn_operator();
        let indptr: Vec<i64> = op.indptr().raw_storage().iter().map(|&v| v as i64).collect();
        let cols: Vec<i64> = op.indices().iter().map(|&v| v as i64).collect();
        let vals: Vec<f32> = op.data().iter().map(|&v| v as f32).collect();
        Ok(GraphOp {
            indptr: Tensor::from_slice(&indptr).f_to_device(device)?,
            cols: Tensor::from_slice(&cols).f_to_device(device)?,
            vals: Tensor::from_slice(&vals).f_to_device(device)?,
            n: g.n() as i64,
        })
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
}

/// The cuts of one training forward, in creation order.
#[derive(Default)]
pub struct Tape {
    cuts: Vec<Cut>,
}

impl Tape {
    /// A leaf holding Â·pre (`graph`) or pre itself, recorded for the backward.
    fn cut(&mut self, pre: Tensor, adj: Option<&GraphOp>) -> Tensor {
        let value = match adj {
            Some(a) => a.apply(&pre),
            None => pre.detach(),
        };
        let post = value.set_requires_grad(true);
        self.cuts.push(Cut { pre, post: post.shallow_clone(), graph: adj.is_some() });
        post
    }
}

/// Seeded dropout-mask source. Host masks are drawn in fixed 64k-element
/// chunks, each from its own SplitMix64 stream, so the result does not
/// depend on the number of threads that fill them.
#[derive(Debug)]
enum Noise {
    Torch,
    Host { rng: RefCell<SplitMix64>, threads: usize },
}

const MASK_CHUNK: usize = 1 << 16;
const CHUNK_MIX: u64 = 0xD1B5_4A32_D192_ED03;

/// Fills `out` (chunks `first_chunk`, `first_chunk + 1`, … of the mask) with
/// `scale` where a 32-bit uniform draw falls below `keep_threshold`, else 0.
fn fill_mask(out: &mut [f32], seed: u64, first_chunk: u64, keep_threshold: u64, scale: f32) {
    for (c, chunk) in out.chunks_mut(MASK_CHUNK).enumerate() {
        let mut r = SplitMix64::new(seed ^ (first_chunk + c as u64).wrapping_mul(CHUNK_MIX));
        let mut pairs = chunk.chunks_exact_mut(2);
        for p in &mut pairs {
            let u = r.next_u64();
            p[0] = if (u & 0xFFFF_FFFF) < keep_threshold { scale } else { 0.0 };
            p[1] = if (u >> 32) < keep_threshold { scale } else { 0.0 };
        }
        for v in pairs.into_remainder() {
            *v = if (r.next_u64() >> 32) < keep_threshold { scale } else { 0.0 };
        }
    }
}

impl Noise {
    fn dropout(&self, x: &Tensor, p: f64, train: bool) -> Tensor {
        if !train || p <= 0.0 {
            return x.shallow_clone();
        }
        match self {
            Noise::Torch => x.dropout(p, true),
            Noise::Host { rng, threads } => {
                let numel = x.numel();
                let seed = rng.borrow_mut().next_u64();
                let keep_threshold = ((1.0 - p) * 4_294_967_296.0).round() as u64;
                let scale = (1.0 / (1.0 - p)) as f32;
                let mut mask = vec![0f32; numel];
                let n_chunks = numel.div_ceil(MASK_CHUNK);
                // Threads only pay off for big masks (several chunks each).
                let workers = (*threads).clamp(1, n_chunks.div_ceil(4).max(1));
                if workers == 1 {
                    fill_mask(&mut mask, seed, 0, keep_threshold, scale);
                } else {
                    // Whole chunks per worker keep the chunk numbering (and so the values) fixed.
                    let per = n_chunks.div_ceil(workers) * MASK_CHUNK;
                    std::thread::scope(|s| {
                        for (w, part) in mask.chunks_mut(per).enumerate() {
                            let first = (w * per / MASK_CHUNK) as u64;
                            s.spawn(move || fill_mask(part, seed, first, keep_threshold, scale));
                        }
                    });
                }
                let mut m = Tensor::from_slice(&mask).view(x.size().as_slice());
                if x.kind() != Kind::Float {
                    m = m.to_kind(x.kind());
                }
                x * m
            }
        }
    }
}

/// Linear → BatchNorm1d(momentum 0.01, eps 1e-3) → ELU → Dropout.
#[derive(Debug)]
struct FullBlock {
    lin: nn::Linear,
    bn: nn::BatchNorm,
    p: f64,
}

impl FullBlock {
    fn new(vs: nn::Path, d_in: i64, d_out: i64, p: f64) -> Self {
        let lin = nn::linear(&vs / "lin", d_in, d_out, Default::default());
        let bn_cfg = nn::BatchNormConfig { momentum: 0.01, eps: 1e-3, ..Default::default() };
        let bn = nn::batch_norm1d(&vs / "bn", d_out, bn_cfg);
        FullBlock { lin, bn, p }
    }

    fn finish(&self, pre: &Tensor, train: bool, noise: &Noise) -> Tensor {
        noise.dropout(&self.bn.forward_t(pre, train).elu(), self.p, train)
    }

    fn forward(&self, x: &Tensor, train: bool, noise: &Noise) -> Tensor {
        self.finish(&self.lin.forward(x), train, noise)
    }

    /// The block applied to x + m·t (m: n × 1 indicator, t: 1 × d_in token),
    /// written as x·Wᵀ + m·(t·Wᵀ) + b.
    fn forward_masked(&self, x: &Tensor, ind: &Tensor, token: &Tensor, train: bool, noise: &Noise) -> Tensor {
        let wt = self.lin.ws.tr();
        let mut pre = x.matmul(&wt) + ind * token.matmul(&wt);
        if let Some(b) = &self.lin.bs {
            pre += b;
        }
        self.finish(&pre, train, noise)
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

/// Everything one forward pass produces.
pub struct Forward {
    /// The embedding Z = [feat_x ‖ gnn_z] (in training, a leaf of the tape).
    pub z: Tensor,
    pub mu: Tensor,
    pub log_sigma: Tensor,
    pub recon: Tensor,
    /// Training only: the n × 1 0/1 mask indicator, the number of masked
    /// spots and the token-added input x + m·t.
    pub masked: Option<(Tensor, i64, Tensor)>,
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
    /// Learnable mask token, added to the rows of masked spots.
    mask_token: Tensor,
    mask_rate: f64,
    dec_alpha: f64,
    p_drop: f64,
    noise: Noise,
}

impl SedrNet {
    pub fn new(vs: &nn::Path, d_in: i64, p: &Params) -> Self {
        let latent = p.latent_dim();
        // Registration order follows the reference so the layout is familiar.
        let enc1 = FullBlock::new(vs / "enc1", d_in, p.feat_hidden1, p.dropout);
        let enc2 = FullBlock::new(vs / "enc2", p.feat_hidden1, p.feat_hidden2, p.dropout);
        let decoder = match p.mode {
            Mode::Clustering => Decoder::Graph(gcn_weight(vs / "decoder", latent, d_in)),
            Mode::Imputation => Decoder::Mlp(FullBlock::new(vs / "decoder", latent, d_in, p.dropout)),
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
            return tch::no_grad(|| self.pass(x, adj, false, None));
        }
        let mut tape = Tape::default();
        let mut fw = self.pass(x, adj, true, Some(&mut tape));
        fw.tape = Some(tape);
        fw
    }

    fn pass(&self, x: &Tensor, adj: &GraphOp, train: bool, mut tape: Option<&mut Tape>) -> Forward {
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
        let (h1, masked) = if train && self.mask_rate > 0.0 {
            let n_mask = ((self.mask_rate * n as f64) as i64).clamp(1, n);
            let perm = Tensor::randperm(n, (Kind::Int64, x.device()));
            let idx = perm.narrow(0, 0, n_mask);
            let ind = Tensor::zeros([n, 1], (x.kind(), x.device())).index_fill(0, &idx, 1.0);
            let h1 = self.enc1.forward_masked(x, &ind, &self.mask_token, train, noise);
            let xm = x + &ind * &self.mask_token;
            (h1, Some((ind, n_mask, xm)))
        } else {
            (self.enc1.forward(x, train, noise), None)
        };
        let feat = ident(self.enc2.forward(&h1, train, noise), &mut tape);
        // gc1: Â·(dropout(feat)·W) = (Â·dropout(feat))·W.
        let h = graph(drop(&feat), &mut tape).mm(&self.gc1).relu();
        // gc_mu and gc_sigma share one product with Â on their 2 × 16 columns.
        let heads = Tensor::cat(&[drop(&h).mm(&self.gc_mu), drop(&h).mm(&self.gc_sigma)], 1);
        let heads = graph(heads, &mut tape);
        let k = self.gc_mu.size()[1];
        let mu = heads.narrow(1, 0, k);
        let log_sigma = heads.narrow(1, k, self.gc_sigma.size()[1]);
        // "logvar" in the reference is used as log σ: z = μ + ε·exp(logσ).
        let gnn_z = if train { &mu + Tensor::randn_like(&mu) * log_sigma.exp() } else { mu.shallow_clone() };
        let z = ident(Tensor::cat(&[&feat, &gnn_z], 1), &mut tape);
        let recon = match &self.decoder {
            Decoder::Graph(w) => graph(drop(&z), &mut tape).mm(w),
            Decoder::Mlp(b) => b.forward(&z, train, noise),
        };
        Forward { z, mu, log_sigma, recon, masked, tape: None }
    }

    /// Backpropagates `loss` (built from a training [`Forward`]) through the
    /// cut graph, accumulating into the parameters' gradients.
    pub fn backward(&self, loss: &Tensor, tape: Tape, adj: &GraphOp) {
        loss.backward();
        for c in tape.cuts.into_iter().rev() {
            if !c.pre.requires_grad() {
                continue;
            }
            let g = c.post.grad();
            if !g.defined() {
                continue;
            }
            let g = if c.graph { adj.apply(&g) } else { g };
            (c.pre * g).sum(Kind::Float).backward();
        }
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
