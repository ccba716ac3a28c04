//! The trainer: Adam over the SEDR schedule (reference spec §5), on the full
//! graph or, for large tissues, on mini-batches (one step per epoch, see
//! `batches`).
//! Phase 1: rec_w·MSE + gcn_w·(edge BCE + KL) + self_w·SCE.
//! Phase 2 (DEC): k-means centres, then rec_w·MSE + gcn_w·graph + dec_kl_w·KL(P‖Q)
//! with P refreshed every `dec_interval` epochs. One optimiser spans both.
//! Optionally the returned embedding is the mean over the last epochs
//! (`avg_epochs`, tail averaging).
//!
//! The trainer is driven in chunks (`step`) so the caller can show progress
//! and stop between chunks (R's Ctrl-C lands between `.Call`s).
//!
//! One epoch: a training forward that records where the autograd graph is
//! cut ([`crate::model::Tape`]); the edge BCE and the reconstruction losses
//! with their closed-form gradients, the KL terms through autograd; one
//! backward that chains them exactly (`SedrNet::backward`); one Adam step.
//! See `model.rs` for why (CPU speed); the maths is the reference's.

use crate::batches::{induced, Batcher};
use crate::device::ThreadGuard;
use crate::error::{Result, SedrError};
use crate::graph::SpatialGraph;
use crate::kmeans::kmeans;
use crate::loss;
use crate::loss::{HostPairs, Pairs};
use crate::model::{GraphOp, SedrNet};
use crate::negatives::{NegativeSampler, Negatives};
use crate::params::Params;
use crate::rng::SplitMix64;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pretrain,
    Dec,
}

/// The loss terms of one epoch (weighted total and unweighted parts).
#[derive(Clone, Copy, Debug)]
pub struct EpochLoss {
    pub epoch: usize,
    pub phase: Phase,
    pub total: f64,
    pub mse: f64,
    pub graph: f64,
    pub sce: f64,
    pub dec_kl: f64,
}

/// What the trained model gives back, all on the CPU in float64, row-major
/// ([`Trainer::output`]) or column-major ([`Trainer::output_col_major`]).
pub struct Output {
    pub n: usize,
    pub latent: usize,
    pub embedding: Vec<f64>,
    /// DEC soft assignment (n × K) when DEC ran.
    pub q: Option<Vec<f64>>,
    pub k: usize,
    /// Decoder output (n × d_in) when asked for.
    pub recon: Option<Vec<f64>>,
    pub d_in: usize,
}

/// The positive pairs (A+I) of the edge loss: on the host for CPU training
/// (the edge loss runs in plain Rust there), else on the device.
enum Positives {
    Host(HostPairs),
    Device(Pairs),
}

/// The edge-loss targets of one graph: positives (A+I), the negative sampler
/// and the GAE normalisation.
struct EdgeTargets {
    pos: Positives,
    sampler: NegativeSampler,
    /// Negatives drawn once (`resample_negatives = false`), else drawn per step.
    fixed_negatives: Option<Negatives>,
    norm: f64,
}

impl EdgeTargets {
    /// `seed` seeds the host negative sampler (None: libtorch's generator).
    fn new(graph: &SpatialGraph, params: &Params, device: Device, seed: Option<u64>) -> Result<Self> {
        let n = graph.n();
        let (rows, cols) = graph.target_pairs();
        let (src_t, dst_t) = (Tensor::from_slice(&rows).f_to_device(device)?, Tensor::from_slice(&cols).f_to_device(device)?);
        let sampler = match seed {
            Some(s) => NegativeSampler::with_seed(n as i64, &src_t, &dst_t, params.neg_ratio, s),
            None => NegativeSampler::new(n as i64, &src_t, &dst_t, params.neg_ratio),
        };
        let pos = if device == Device::Cpu {
            let to_u32 = |v: &[i64]| v.iter().map(|&i| i as u32).collect::<Vec<u32>>();
            Positives::Host(HostPairs::new(n, to_u32(&rows), to_u32(&cols)))
        } else {
            Positives::Device(Pairs::from_host(n, &rows, &cols, device))
        };
        let fixed_negatives = if params.resample_negatives { None } else { Some(sampler.draw()) };
        Ok(EdgeTargets { pos, sampler, fixed_negatives, norm: graph.gae_norm() })
    }
}

/// How the training steps see the graph.
// One value per trainer: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Batching {
    /// Every epoch trains on the whole graph (the reference).
    Full(EdgeTargets),
    /// Every epoch is one step on the subgraph induced by a batch of
    /// spatially compact parts (cluster-GCN); see `batches`.
    Mini(MiniBatch),
}

struct MiniBatch {
    graph: SpatialGraph,
    batcher: Batcher,
    /// Scratch for renumbering spots into a batch (all `u32::MAX` between uses).
    local: Vec<u32>,
}

/// The data of one training step: the whole graph or one batch of it.
struct Step {
    x: Tensor,
    xx: Tensor,
    adj: Option<GraphOp>,
    targets: Option<EdgeTargets>,
    /// Spot ids of the batch (None: all spots).
    idx: Option<Tensor>,
}

static TORCH_SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Trainer {
    params: Params,
    device: Device,
    vs: nn::VarStore,
    net: SedrNet,
    opt: nn::Optimizer,
    x: Tensor,
    /// Row norms ‖x_i‖² (for the reconstruction losses).
    xx: Tensor,
    /// Â of the whole graph (eval passes; training in full-batch mode).
    adj: GraphOp,
    batching: Batching,
    rng: SplitMix64,
    epoch: usize,
    target: Option<Tensor>,
    history: Vec<EpochLoss>,
    /// Sum of the eval-mode embeddings of the averaged tail epochs and
    /// their number (`Params::avg_epochs`).
    z_sum: Option<(Tensor, usize)>,
}

/// libtorch's CPU allocator has no cache: every tensor is a fresh `malloc`.
/// glibc serves blocks above M_MMAP_THRESHOLD with new mappings and gives
/// the top of the heap back to the OS once more than M_TRIM_THRESHOLD is
/// free; both thresholds adapt, but only up to the largest block freed so
/// far, so each epoch's temporaries (a few MB each) were faulted in afresh:
/// page faults took ~40 % of a CPU epoch. This pins the thresholds at the
/// values glibc's own adaptive rule reaches after one 32 MiB block has been
/// freed (mmap 32 MiB, its maximum; trim 64 MiB). Process-wide, once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_heap_memory() {
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    const M_TRIM_THRESHOLD: std::os::raw::c_int = -1;
    const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes allocator parameters; it is safe to
        // call at any time and returns 0 on failure, which we can ignore.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_heap_memory() {}

/// The model input, n spots × d features: float32, row-major, on the CPU.
pub struct Input {
    x: Tensor,
    n: usize,
}

impl Input {
    /// From n × d float64 values, column-major (as R stores a matrix).
    pub fn new(x_col_major: &[f64], n: usize, d: usize) -> Result<Self> {
        if n == 0 || d == 0 || x_col_major.len() != n * d {
            return Err(SedrError::input("x", format!("expected {n} × {d} values, got {}", x_col_major.len())));
        }
        if x_col_major.iter().any(|v| !v.is_finite()) {
            return Err(SedrError::input("x", "contains NA, NaN or Inf; remove or impute them first"));
        }
        Ok(Input { x: row_major_f32(x_col_major, n, d)?, n })
    }

    /// From n × d float32 values already row-major on the CPU (the recipe's
    /// PCA scores, [`crate::pca::Scores::Input`]).
    pub fn from_rows(x: Tensor) -> Result<Self> {
        let size = x.size();
        if size.len() != 2 || size[0] < 1 || size[1] < 1 || x.kind() != Kind::Float || x.device() != Device::Cpu || !x.is_contiguous() {
            return Err(SedrError::Internal(format!("the trainer input must be a contiguous n × d float32 CPU tensor, not {size:?}")));
        }
        let len = x.numel();
        // SAFETY: a contiguous CPU float tensor of `len` elements, borrowed
        // (read only) while `x` lives.
        let vals = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, len) };
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(SedrError::input("x", "contains NA, NaN or Inf; remove or impute them first"));
        }
        Ok(Input { n: size[0] as usize, x })
    }

    pub fn n(&self) -> usize {
        self.n
    }
}

/// The n × d float32 CPU tensor, row-major, of column-major float64 values.
/// Row-major: R's column-major layout would make every n × d elementwise op
/// (MSE, SCE, the token add) a strided loop. Written straight into the
/// tensor (the same rounding as libtorch's cast): at a million spots a
/// float64 copy and a strided float32 one cost 2.4 GB more at this peak.
fn row_major_f32(x_col_major: &[f64], n: usize, d: usize) -> Result<Tensor> {
    let x = Tensor::f_empty([n as i64, d as i64], (Kind::Float, Device::Cpu))?;
    if n * d > 0 {
        // SAFETY: a fresh contiguous CPU float tensor of n·d elements,
        // not otherwise accessed while `out` lives.
        let out = unsafe { std::slice::from_raw_parts_mut(x.data_ptr() as *mut f32, n * d) };
        // Blocks of spots, so reads of each column and writes stay in cache.
        const BLOCK: usize = 256;
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            for j in 0..d {
                let col = &x_col_major[j * n..(j + 1) * n];
                for i in start..end {
                    out[i * d + j] = col[i] as f32;
                }
            }
        }
    }
    Ok(x)
}

/// ‖x_i‖² of every row, a block of rows at a time: x.square() whole would be
/// a temporary as large as the input (4 GB at 5 M spots × 200 PCs). Each
/// row is reduced as it would be in one piece.
fn row_norms(x: &Tensor) -> Result<Tensor> {
    const ROWS: i64 = 16384;
    let n = x.size()[0];
    tch::no_grad(|| {
        let parts = (0..n)
            .step_by(ROWS as usize)
            .map(|a| Ok(x.f_narrow(0, a, ROWS.min(n - a))?.f_square()?.f_sum_dim_intlist(1, false, None::<Kind>)?))
            .collect::<Result<Vec<Tensor>>>()?;
        Ok(Tensor::f_cat(&parts, 0)?)
    })
}

impl Trainer {
    /// `x` holds n × d features, column-major (as R stores a matrix).
    pub fn new(x_col_major: &[f64], n: usize, d: usize, graph: &SpatialGraph, params: Params, device: Device) -> Result<Self> {
        Self::from_input(Input::new(x_col_major, n, d)?, graph.clone(), params, device)
    }

    /// A trainer on an input made beforehand ([`Input::new`]), so that the
    /// caller can free its float64 copy before the graph structures are built.
    /// The graph is taken: mini-batch training keeps it (no copy).
    pub fn from_input(input: Input, graph: SpatialGraph, params: Params, device: Device) -> Result<Self> {
        params.check()?;
        let n = input.n;
        if graph.n() != n {
            return Err(SedrError::input("graph", format!("has {} spots but the features have {n}", graph.n())));
        }
        if n < 2 {
            return Err(SedrError::input("object", "needs at least 2 spots"));
        }
        if params.dec && params.dec_clusters as usize > n {
            return Err(SedrError::input("dec.clusters", format!("({}) exceeds the number of spots ({n})", params.dec_clusters)));
        }
        let _threads = ThreadGuard::set(params.threads);
        if device == Device::Cpu {
            keep_freed_heap_memory();
        }
        // libtorch's generator is process-global: hold it from the seeding to
        // the last draw from it (the initial weights, the noise and sampler
        // seeds), so trainers built at the same time on other threads cannot
        // interleave their draws. After this, CPU training draws only from
        // the trainer's own generators.
        let _seeding = TORCH_SEEDING.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(params.seed as i64);
        let d = input.x.size()[1] as usize;
        let x = input.x.f_to_device(device)?;
        let adj = GraphOp::new(&graph, device)?;
        let batching = if params.batch_size == 0 || params.batch_size >= n {
            Batching::Full(EdgeTargets::new(&graph, &params, device, None)?)
        } else {
            Batching::Mini(MiniBatch {
                batcher: Batcher::new(&graph, params.batch_size, params.seed ^ 0xBA7C_BA7C),
                graph,
                local: vec![u32::MAX; n],
            })
        };
        let vs = nn::VarStore::new(device);
        let net = SedrNet::new(&vs.root(), d as i64, &params);
        // Coupled L2 (libtorch's Adam weight_decay), as the reference; not AdamW.
        let opt = nn::Adam { wd: params.weight_decay, ..Default::default() }.build(&vs, params.lr)?;
        Ok(Trainer {
            rng: SplitMix64::new(params.seed ^ 0x5EED_5EED),
            params,
            device,
            vs,
            net,
            opt,
            xx: row_norms(&x)?,
            x,
            adj,
            batching,
            epoch: 0,
            target: None,
            history: Vec::new(),
            z_sum: None,
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    pub fn is_done(&self) -> bool {
        self.epoch >= self.params.total_epochs()
    }

    pub fn history(&self) -> &[EpochLoss] {
        &self.history
    }

    fn phase(&self) -> Phase {
        if self.epoch < self.params.epochs { Phase::Pretrain } else { Phase::Dec }
    }

    /// The eval-mode embedding (no mask, no dropout, BN running stats, μ).
    fn eval_z(&self) -> Tensor {
        self.net.embed(&self.x, &self.adj)
    }

    /// Starts phase 2: k-means on the current embedding gives the centres.
    fn start_dec(&mut self) -> Result<()> {
        let z = self.eval_z();
        let n = z.size()[0] as usize;
        let fit_on = if n > self.params.kmeans_max_spots {
            let idx: Vec<i64> = self.rng.sample_indices(n, self.params.kmeans_max_spots).into_iter().map(|i| i as i64).collect();
            z.index_select(0, &Tensor::from_slice(&idx).to_device(self.device))
        } else {
            z
        };
        let fit = kmeans(&fit_on, self.params.dec_clusters, self.params.kmeans_restarts, &mut self.rng);
        self.net.set_centres(&fit.centres);
        Ok(())
    }

    /// The whole graph (full batch) or the next mini-batch with its subgraph.
    fn next_step(&mut self) -> Result<Step> {
        match &mut self.batching {
            Batching::Full(_) => Ok(Step { x: self.x.shallow_clone(), xx: self.xx.shallow_clone(), adj: None, targets: None, idx: None }),
            Batching::Mini(mb) => {
                let nodes = mb.batcher.next_batch();
                let sub = induced(&mb.graph, &nodes, &mut mb.local);
                let idx = Tensor::from_slice(&nodes.iter().map(|&i| i as i64).collect::<Vec<i64>>()).f_to_device(self.device)?;
                let seed = self.rng.next_u64();
                Ok(Step {
                    x: self.x.index_select(0, &idx),
                    xx: self.xx.index_select(0, &idx),
                    adj: Some(GraphOp::new(&sub, self.device)?),
                    targets: Some(EdgeTargets::new(&sub, &self.params, self.device, Some(seed))?),
                    idx: Some(idx),
                })
            }
        }
    }

    fn one_epoch(&mut self) -> Result<EpochLoss> {
        let p = &self.params;
        let phase = self.phase();
        if phase == Phase::Dec && (self.epoch - p.epochs).is_multiple_of(p.dec_interval) {
            if self.epoch == p.epochs {
                self.start_dec()?;
            }
            // P from the soft assignment of *all* spots (a mini-batch takes its rows).
            let q = tch::no_grad(|| self.net.soft_assign(&self.eval_z()));
            self.target = Some(loss::target_distribution(&q));
        }
        let step = self.next_step()?;
        let adj = step.adj.as_ref().unwrap_or(&self.adj);
        let targets = match (&step.targets, &self.batching) {
            (Some(t), _) => t,
            (None, Batching::Full(t)) => t,
            (None, Batching::Mini(_)) => return Err(SedrError::Internal("mini-batch step without edge targets".into())),
        };
        let p = &self.params;
        let mut fw = self.net.forward(&step.x, adj, true);
        let tape = fw.tape.take().ok_or_else(|| SedrError::Internal("training forward without a tape".into()))?;
        // The edge BCE and the reconstruction losses come with their
        // gradients (no autograd); the VGAE KL and DEC KL go through autograd.
        let drawn;
        let neg = match &targets.fixed_negatives {
            Some(neg) => neg,
            None => {
                drawn = targets.sampler.draw();
                &drawn
            }
        };
        let (bce, bce_grad) = match (&targets.pos, neg) {
            (Positives::Host(pos), Negatives::Host(neg)) => {
                let (v, g) = loss::edge_bce_and_grad_host(&fw.z, pos, Some(neg), targets.norm, p.threads)?;
                (Tensor::from(v).to_kind(Kind::Float), g)
            }
            (Positives::Device(pos), Negatives::Device(neg)) => loss::edge_bce_and_grad(&fw.z, pos, Some(neg), targets.norm),
            _ => return Err(SedrError::Internal("positive and negative pairs live on different devices".into())),
        };
        let head = self.net.recon_head(&fw, &step.x, &step.xx, phase == Phase::Pretrain, p.rec_w, p.self_w, p.sce_alpha);
        let (mse, sce) = (head.mse.shallow_clone(), head.sce.shallow_clone());
        let kl_vgae = loss::vgae_kl(&fw.mu, &fw.log_sigma);
        let mut autograd_part = &kl_vgae * p.gcn_w;
        let mut kl = Tensor::zeros([], (Kind::Float, self.device));
        if phase == Phase::Dec {
            let target = self.target.as_ref().ok_or_else(|| SedrError::Internal("DEC target missing".into()))?;
            let target = match &step.idx {
                Some(idx) => target.index_select(0, idx),
                None => target.shallow_clone(),
            };
            kl = loss::dec_kl(&self.net.soft_assign(&fw.z), &target);
            autograd_part += &kl * p.dec_kl_w;
        }
        let graph = (&bce + &kl_vgae).detach();
        let total = autograd_part.detach() + &bce * p.gcn_w + &mse * p.rec_w + &sce * p.self_w;
        // Backward: autograd for the KL terms; the exact gradients of the edge
        // BCE and of the reconstruction losses enter through surrogate inner
        // products (their values are irrelevant).
        let surrogate = &autograd_part
            + crate::model::inner(&fw.z, &(bce_grad * p.gcn_w))
            + &head.surrogate;
        self.opt.zero_grad();
        self.net.backward(&surrogate, tape, adj);
        self.opt.step();
        // One device→host transfer for all the reported numbers.
        let vals = Vec::<f64>::try_from(
            Tensor::stack(&[total, mse, graph, sce, kl.detach()], 0).to_kind(Kind::Double).to_device(Device::Cpu),
        )?;
        let rec = EpochLoss {
            epoch: self.epoch + 1,
            phase,
            total: vals[0],
            mse: vals[1],
            graph: vals[2],
            sce: vals[3],
            dec_kl: vals[4],
        };
        if !rec.total.is_finite() {
            return Err(SedrError::Torch(format!(
                "the loss became non-finite at epoch {}; lower `lr` or check the input for extreme values",
                rec.epoch
            )));
        }
        self.epoch += 1;
        self.history.push(rec);
        if self.epoch + self.params.avg_epochs > self.params.total_epochs() {
            let z = self.eval_z();
            self.z_sum = Some(match self.z_sum.take() {
                Some((sum, count)) => (sum + z, count + 1),
                None => (z, 1),
            });
        }
        Ok(rec)
    }

    /// Runs up to `n_epochs` more epochs (fewer at the end of the schedule)
    /// and returns their losses.
    pub fn step(&mut self, n_epochs: usize) -> Result<Vec<EpochLoss>> {
        let _threads = ThreadGuard::set(self.params.threads);
        let mut out = Vec::with_capacity(n_epochs);
        while out.len() < n_epochs && !self.is_done() {
            out.push(self.one_epoch()?);
        }
        Ok(out)
    }

    /// Trains to the end of the schedule.
    pub fn fit(&mut self) -> Result<()> {
        let left = self.params.total_epochs() - self.epoch;
        self.step(left).map(|_| ())
    }

    /// The eval-mode outputs. Deterministic: no mask, no sampling.
    pub fn output(&self, with_recon: bool) -> Result<Output> {
        self.output_as(with_recon, false)
    }

    /// [`Trainer::output`] with the matrices column-major (R's layout), so
    /// that R takes them as they are: at millions of spots each R copy of
    /// the embedding is GBs.
    pub fn output_col_major(&self, with_recon: bool) -> Result<Output> {
        self.output_as(with_recon, true)
    }

    fn output_as(&self, with_recon: bool, col_major: bool) -> Result<Output> {
        let _threads = ThreadGuard::set(self.params.threads);
        let (z, recon) = if with_recon {
            let fw = tch::no_grad(|| self.net.forward(&self.x, &self.adj, false));
            let recon = self.net.recon(&fw, false);
            (fw.z, Some(recon))
        } else {
            (self.eval_z(), None)
        };
        // With tail averaging, the mean of the last epochs' embeddings.
        let z = match &self.z_sum {
            Some((sum, count)) => sum / *count as f64,
            None => z,
        };
        // Straight from the float32 values into the vector: a double copy and
        // its transpose would be two more n × latent temporaries.
        let to_vec = |t: &Tensor| -> Result<Vec<f64>> {
            let t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
            let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
            if rows * cols == 0 {
                return Ok(Vec::new());
            }
            // SAFETY: a contiguous CPU float tensor of rows·cols elements,
            // read only while `t` lives.
            let v = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, rows * cols) };
            Ok(if col_major {
                (0..cols).flat_map(|c| (0..rows).map(move |r| v[r * cols + c] as f64)).collect()
            } else {
                v.iter().map(|&x| x as f64).collect()
            })
        };
        let n = z.size()[0] as usize;
        let latent = z.size()[1] as usize;
        let dec_ran = self.params.dec && self.epoch > self.params.epochs;
        let q = if dec_ran { Some(to_vec(&tch::no_grad(|| self.net.soft_assign(&z)))?) } else { None };
        let recon = match recon {
            Some(r) => Some(to_vec(&r)?),
            None => None,
        };
        Ok(Output {
            n,
            latent,
            embedding: to_vec(&z)?,
            q,
            k: self.params.dec_clusters as usize,
            recon,
            d_in: self.x.size()[1] as usize,
        })
    }

    /// Spots per step and number of graph parts when training in
    /// mini-batches; None for full-batch training.
    pub fn minibatch(&self) -> Option<(usize, usize)> {
        match &self.batching {
            Batching::Full(_) => None,
            Batching::Mini(mb) => Some((self.params.batch_size, mb.batcher.n_parts())),
        }
    }

    /// Number of trainable values (for reporting).
    pub fn n_parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }
}

#[cfg(test)]
mod tests;
