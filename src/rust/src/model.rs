//! The SEDR network (reference spec §3): a masked feature autoencoder, a
//! variational graph autoencoder on the feature code, a decoder and the DEC
//! layer. Built on a tch `VarStore`; the adjacency is a sparse tensor.

use crate::params::{Mode, Params};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

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

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&self.lin.forward(x), train).elu().dropout(self.p, train)
    }
}

/// A bias-free graph convolution act(A · (dropout(x) W)), xavier-uniform init.
#[derive(Debug)]
struct GraphConv {
    w: Tensor,
    p: f64,
}

impl GraphConv {
    fn new(vs: nn::Path, d_in: i64, d_out: i64, p: f64) -> Self {
        let bound = (6.0 / (d_in + d_out) as f64).sqrt();
        let w = vs.var("weight", &[d_in, d_out], nn::Init::Uniform { lo: -bound, up: bound });
        GraphConv { w, p }
    }

    fn forward(&self, x: &Tensor, adj: &Tensor, train: bool) -> Tensor {
        adj.mm(&x.dropout(self.p, train).mm(&self.w))
    }
}

#[derive(Debug)]
enum Decoder {
    Graph(GraphConv),
    Mlp(FullBlock),
}

/// Everything one forward pass produces.
pub struct Forward {
    /// The embedding Z = [feat_x ‖ gnn_z].
    pub z: Tensor,
    pub mu: Tensor,
    pub log_sigma: Tensor,
    pub recon: Tensor,
    /// Masked-node indices and the token-added input (training only).
    pub masked: Option<(Tensor, Tensor)>,
}

#[derive(Debug)]
pub struct SedrNet {
    enc1: FullBlock,
    enc2: FullBlock,
    gc1: GraphConv,
    gc_mu: GraphConv,
    gc_sigma: GraphConv,
    decoder: Decoder,
    /// DEC cluster centres (K × latent), overwritten by k-means before phase 2.
    pub centres: Tensor,
    /// Learnable mask token, added to the rows of masked spots.
    mask_token: Tensor,
    mask_rate: f64,
    dec_alpha: f64,
}

impl SedrNet {
    pub fn new(vs: &nn::Path, d_in: i64, p: &Params) -> Self {
        let latent = p.latent_dim();
        // Registration order follows the reference so the layout is familiar.
        let enc1 = FullBlock::new(vs / "enc1", d_in, p.feat_hidden1, p.dropout);
        let enc2 = FullBlock::new(vs / "enc2", p.feat_hidden1, p.feat_hidden2, p.dropout);
        let decoder = match p.mode {
            Mode::Clustering => Decoder::Graph(GraphConv::new(vs / "decoder", latent, d_in, p.dropout)),
            Mode::Imputation => Decoder::Mlp(FullBlock::new(vs / "decoder", latent, d_in, p.dropout)),
        };
        let gc1 = GraphConv::new(vs / "gc1", p.feat_hidden2, p.gcn_hidden1, p.dropout);
        let gc_mu = GraphConv::new(vs / "gc_mu", p.gcn_hidden1, p.gcn_hidden2, p.dropout);
        let gc_sigma = GraphConv::new(vs / "gc_sigma", p.gcn_hidden1, p.gcn_hidden2, p.dropout);
        let std = (2.0 / (p.dec_clusters + latent) as f64).sqrt();
        let centres = vs.var("centres", &[p.dec_clusters.max(1), latent], nn::Init::Randn { mean: 0.0, stdev: std });
        let mask_token = vs.zeros("mask_token", &[1, d_in]);
        SedrNet { enc1, enc2, gc1, gc_mu, gc_sigma, decoder, centres, mask_token, mask_rate: p.mask_rate, dec_alpha: p.dec_alpha }
    }

    /// One pass. In training, a random `mask_rate` share of spots gets the
    /// mask token added (reference §3). In eval no token is added: the
    /// reference masks at inference too, which makes its embedding random;
    /// that is a bug we fix.
    pub fn forward(&self, x: &Tensor, adj: &Tensor, train: bool) -> Forward {
        let n = x.size()[0];
        let (input, masked) = if train && self.mask_rate > 0.0 {
            let n_mask = ((self.mask_rate * n as f64) as i64).max(1).min(n);
            let perm = Tensor::randperm(n, (Kind::Int64, x.device()));
            let idx = perm.narrow(0, 0, n_mask);
            let ind = Tensor::zeros([n, 1], (x.kind(), x.device())).index_fill(0, &idx, 1.0);
            let xm = x + ind * &self.mask_token;
            (xm.shallow_clone(), Some((idx, xm)))
        } else {
            (x.shallow_clone(), None)
        };
        let feat = self.enc2.forward(&self.enc1.forward(&input, train), train);
        let h = self.gc1.forward(&feat, adj, train).relu();
        let mu = self.gc_mu.forward(&h, adj, train);
        let log_sigma = self.gc_sigma.forward(&h, adj, train);
        // "logvar" in the reference is used as log σ: z = μ + ε·exp(logσ).
        let gnn_z = if train { &mu + Tensor::randn_like(&mu) * log_sigma.exp() } else { mu.shallow_clone() };
        let z = Tensor::cat(&[&feat, &gnn_z], 1);
        let recon = match &self.decoder {
            Decoder::Graph(g) => g.forward(&z, adj, train),
            Decoder::Mlp(b) => b.forward(&z, train),
        };
        Forward { z, mu, log_sigma, recon, masked }
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
