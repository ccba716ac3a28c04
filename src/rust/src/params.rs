//! Every tunable number of the SEDR model and its schedule, with the
//! reference's defaults (reference spec §3–§5), validated in one place.

use crate::error::{Result, SedrError};

/// What the decoder reconstructs and how the input is meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Input: PCA of the scaled HVGs; decoder: one GCN layer.
    Clustering,
    /// Input: the scaled HVG matrix; decoder: Linear+BN (no graph)
    /// by default.
    Imputation,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "clustering" => Ok(Mode::Clustering),
            "imputation" => Ok(Mode::Imputation),
            _ => Err(SedrError::input("mode", format!("must be \"clustering\" or \"imputation\", not \"{s}\""))),
        }
    }
}

/// The smallest mini-batch: below this BatchNorm statistics and the edge
/// loss of one step are too noisy to train on.
pub const MIN_BATCH: usize = 100;

/// The decoder that reconstructs the input from Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderKind {
    /// One graph convolution Z → d_in (the reference's clustering decoder).
    Gcn,
    /// Linear+BN Z → d_in (the reference's imputation decoder, less its ELU
    /// and dropout: see `model::FullBlock::output_head`).
    Mlp,
}

impl DecoderKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "gcn" => Ok(DecoderKind::Gcn),
            "mlp" => Ok(DecoderKind::Mlp),
            _ => Err(SedrError::input("decoder", format!("must be \"gcn\" or \"mlp\", not \"{s}\""))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub mode: Mode,
    /// The mode's decoder unless overridden.
    pub decoder: DecoderKind,
    pub feat_hidden1: i64,
    pub feat_hidden2: i64,
    pub gcn_hidden1: i64,
    pub gcn_hidden2: i64,
    pub dropout: f64,
    pub mask_rate: f64,
    /// Exponent of the scaled cosine error.
    pub sce_alpha: f64,
    pub dec: bool,
    pub dec_clusters: i64,
    pub dec_alpha: f64,
    /// Epochs between refreshes of the DEC target distribution.
    pub dec_interval: usize,
    pub rec_w: f64,
    pub gcn_w: f64,
    pub self_w: f64,
    pub dec_kl_w: f64,
    /// Pre-training epochs (phase 1).
    pub epochs: usize,
    /// DEC epochs (phase 2), used when `dec` is true.
    pub dec_epochs: usize,
    pub lr: f64,
    /// Coupled L2 weight decay (Adam, not AdamW, as the reference; default 0, the reference 0.01).
    pub weight_decay: f64,
    /// Negatives per positive edge (the reference: 1 for clustering, 0 for imputation).
    pub neg_ratio: usize,
    /// Masked spots' input rows are replaced by the mask token and the SCE
    /// target is their original row (true), or the token is added to the row
    /// and the target carries it (false, the reference; spec §12.2, where the
    /// masked spot still sees its own expression). Default: true for
    /// clustering (higher ARI, bench/README.md), false for imputation (its
    /// held-out correlation was lower with replacement).
    pub mask_replace: bool,
    /// Draw new negatives every epoch (true) or once, like the reference (false).
    pub resample_negatives: bool,
    /// Eval-mode BatchNorm uses the full batch's statistics (true) or the
    /// running averages, like the reference (false).
    pub bn_full_batch: bool,
    /// Spots per training step: 0 trains on the full graph every epoch;
    /// otherwise each epoch is one step on a mini-batch of about this many
    /// spots (see `batches`).
    pub batch_size: usize,
    pub kmeans_restarts: usize,
    /// k-means for the DEC centres is fitted on at most this many spots.
    pub kmeans_max_spots: usize,
    /// The embedding (and the DEC soft assignment computed from it) is the
    /// mean of the eval-mode embeddings after each of the last this many
    /// epochs (0: the last epoch's alone). Averages out the epoch-to-epoch
    /// jitter of stochastic training (Polyak-Ruppert tail averaging).
    pub avg_epochs: usize,
    pub seed: u64,
    pub threads: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: Mode::Clustering,
            decoder: DecoderKind::Gcn,
            feat_hidden1: 64,
            feat_hidden2: 16,
            gcn_hidden1: 64,
            gcn_hidden2: 16,
            dropout: 0.2,
            mask_rate: 0.8,
            sce_alpha: 3.0,
            dec: true,
            dec_clusters: 10,
            dec_alpha: 1.0,
            dec_interval: 20,
            rec_w: 10.0,
            gcn_w: 0.1,
            self_w: 1.0,
            // The reference uses 1; 3 gave a higher median ARI on DLPFC 151673
            // (two sets of 20 seeds) and STARmap (bench/README.md, "Spatial domains").
            dec_kl_w: 3.0,
            epochs: 200,
            dec_epochs: 200,
            lr: 0.01,
            // The reference uses 0.01; 0 gave higher ARI on DLPFC and STARmap and
            // better denoising (bench/README.md, "Spatial domains" and "Denoising").
            weight_decay: 0.0,
            neg_ratio: 1,
            mask_replace: true,
            resample_negatives: true,
            bn_full_batch: true,
            batch_size: 0,
            kmeans_restarts: 20,
            kmeans_max_spots: 50_000,
            avg_epochs: 0,
            seed: 42,
            threads: 1,
        }
    }
}

impl Params {
    /// The defaults of a mode (imputation trains on positive edges only, as
    /// the reference, keeps the reference's additive mask token and weights
    /// the reconstruction more).
    pub fn for_mode(mode: Mode) -> Self {
        // Imputation weights the reconstruction 10x the reference's: the
        // held-out correlation of the denoised values rose from 0.854 to
        // 0.878 on DLPFC (bench/README.md, "Denoising").
        let (neg_ratio, decoder, mask_replace, rec_w) = match mode {
            Mode::Clustering => (1, DecoderKind::Gcn, true, 10.0),
            Mode::Imputation => (0, DecoderKind::Mlp, false, 100.0),
        };
        Params { mode, neg_ratio, decoder, mask_replace, rec_w, ..Params::default() }
    }

    /// The width of the embedding Z = [feature code ‖ graph code].
    pub fn latent_dim(&self) -> i64 {
        self.feat_hidden2 + self.gcn_hidden2
    }

    pub fn total_epochs(&self) -> usize {
        self.epochs + if self.dec { self.dec_epochs } else { 0 }
    }

    pub fn check(&self) -> Result<()> {
        let positive_int = |v: i64, arg: &str| {
            if v < 1 {
                Err(SedrError::input(arg, format!("must be a positive integer, not {v}")))
            } else {
                Ok(())
            }
        };
        positive_int(self.feat_hidden1, "feat.hidden1")?;
        positive_int(self.feat_hidden2, "feat.hidden2")?;
        positive_int(self.gcn_hidden1, "gcn.hidden1")?;
        positive_int(self.gcn_hidden2, "gcn.hidden2")?;
        let unit = |v: f64, arg: &str, hi_open: bool| {
            let ok = v.is_finite() && v >= 0.0 && if hi_open { v < 1.0 } else { v <= 1.0 };
            if ok {
                Ok(())
            } else {
                Err(SedrError::input(arg, format!("must lie in [0, 1{}, not {v}", if hi_open { ")" } else { "]" })))
            }
        };
        unit(self.dropout, "dropout", true)?;
        unit(self.mask_rate, "mask.rate", false)?;
        let nonneg = |v: f64, arg: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(SedrError::input(arg, format!("must be a finite number >= 0, not {v}")))
            }
        };
        nonneg(self.rec_w, "rec.weight")?;
        nonneg(self.gcn_w, "gcn.weight")?;
        nonneg(self.self_w, "self.weight")?;
        nonneg(self.dec_kl_w, "dec.kl.weight")?;
        nonneg(self.weight_decay, "weight.decay")?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(SedrError::input("lr", format!("must be a positive number, not {}", self.lr)));
        }
        if !(self.sce_alpha.is_finite() && self.sce_alpha >= 1.0) {
            return Err(SedrError::input("sce.alpha", "must be a number >= 1"));
        }
        if !(self.dec_alpha.is_finite() && self.dec_alpha > 0.0) {
            return Err(SedrError::input("dec.alpha", "must be a positive number"));
        }
        if self.epochs == 0 {
            return Err(SedrError::input("epochs", "must be at least 1; use 200 (the default) for a full run"));
        }
        if self.dec {
            if self.dec_clusters < 2 {
                return Err(SedrError::input("dec.clusters", "must be at least 2"));
            }
            if self.dec_interval == 0 {
                return Err(SedrError::input("dec.interval", "must be at least 1"));
            }
            if self.dec_epochs == 0 {
                return Err(SedrError::input("dec.epochs", "must be at least 1, or set dec = FALSE"));
            }
            if self.kmeans_restarts == 0 {
                return Err(SedrError::input("kmeans.restarts", "must be at least 1"));
            }
        }
        if self.batch_size != 0 && self.batch_size < MIN_BATCH {
            return Err(SedrError::input("batch.size", format!("must be 0 (full batch) or at least {MIN_BATCH}, not {}", self.batch_size)));
        }
        if self.avg_epochs > self.total_epochs() {
            return Err(SedrError::input(
                "average.epochs",
                format!("({}) exceeds the number of training epochs ({})", self.avg_epochs, self.total_epochs()),
            ));
        }
        if self.threads == 0 {
            return Err(SedrError::input("n.threads", "must be at least 1"));
        }
        Ok(())
    }
}
