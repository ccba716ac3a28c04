//! The loss terms of SEDR (reference spec §4–§5), written for any float kind
//! so they can be gradient-checked in float64.

use tch::{Device, Kind, Reduction, Tensor};

/// Scaled cosine error: mean over rows of (1 − cos(a_i, b_i))^alpha.
pub fn sce(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    sce_rows(a, b, alpha).mean(None::<Kind>)
}

/// The per-row terms (1 − cos(a_i, b_i))^alpha of [`sce`]. Averaging them
/// with a 0/1 row weight gives the SCE of the selected rows without
/// gathering them (a gather's backward is a slow scatter on the CPU).
pub fn sce_rows(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    let unit = |t: &Tensor| {
        let norm = t.square().sum_dim_intlist(1, true, None::<Kind>).sqrt().clamp_min(1e-12);
        t / norm
    };
    let cos = (unit(a) * unit(b)).sum_dim_intlist(1, false, None::<Kind>);
    (-cos + 1.0).pow_tensor_scalar(alpha)
}

/// Edge reconstruction: BCE-with-logits of inner products z_i·z_j over
/// positive and negative pairs, times Kipf's GAE norm.
pub fn edge_bce(z: &Tensor, pos: (&Tensor, &Tensor), neg: Option<(&Tensor, &Tensor)>, norm: f64) -> Tensor {
    let logit = |src: &Tensor, dst: &Tensor| {
        (z.index_select(0, src) * z.index_select(0, dst)).sum_dim_intlist(1, false, None::<Kind>)
    };
    let lp = logit(pos.0, pos.1);
    let (logits, labels) = match neg {
        Some((s, d)) if s.size()[0] > 0 => {
            let ln = logit(s, d);
            let y = Tensor::cat(&[lp.ones_like(), ln.zeros_like()], 0);
            (Tensor::cat(&[lp, ln], 0), y)
        }
        _ => {
            let y = lp.ones_like();
            (lp, y)
        }
    };
    logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, Reduction::Mean) * norm
}

/// Index pairs (src_e, dst_e) of n spots, sorted by src (CSR-like
/// `src_offsets`), with the permutation that sorts them by dst. Both
/// groupings turn the sums Σ_e c_e z_dst / Σ_e c_e z_src into gather-sums.
pub struct Pairs {
    pub n: i64,
    pub src: Tensor,
    pub dst: Tensor,
    pub src_offsets: Tensor,
    /// src in dst-sorted order, with the permutation and its offsets.
    pub src_by_dst: Tensor,
    pub by_dst: Tensor,
    pub dst_offsets: Tensor,
}

impl Pairs {
    /// From host vectors; `src` must be sorted ascending and all ids < n.
    pub fn from_host(n: usize, src: &[i64], dst: &[i64], device: Device) -> Pairs {
        let counts = |ids: &[i64]| {
            let mut c = vec![0i64; n + 1];
            for &i in ids {
                c[i as usize + 1] += 1;
            }
            for i in 0..n {
                c[i + 1] += c[i];
            }
            c
        };
        let src_offsets = counts(src);
        let dst_offsets = counts(dst);
        // Counting sort by dst (stable).
        let mut next = dst_offsets.clone();
        let mut by_dst = vec![0i64; dst.len()];
        for (e, &j) in dst.iter().enumerate() {
            let slot = &mut next[j as usize];
            by_dst[*slot as usize] = e as i64;
            *slot += 1;
        }
        let src_by_dst: Vec<i64> = by_dst.iter().map(|&e| src[e as usize]).collect();
        let t = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Pairs {
            n: n as i64,
            src: t(src),
            dst: t(dst),
            src_offsets: t(&src_offsets),
            src_by_dst: t(&src_by_dst),
            by_dst: t(&by_dst),
            dst_offsets: t(&dst_offsets),
        }
    }

    /// From device tensors; `src` must be sorted ascending.
    pub fn from_device(n: i64, src: Tensor, dst: Tensor) -> Pairs {
        let offsets = |ids: &Tensor| {
            let c = ids.bincount(None::<Tensor>, n).cumsum(0, Kind::Int64);
            Tensor::cat(&[c.zeros_like().narrow(0, 0, 1), c], 0)
        };
        let by_dst = dst.argsort_stable(true, 0, false);
        Pairs {
            n,
            src_offsets: offsets(&src),
            dst_offsets: offsets(&dst),
            src_by_dst: src.index_select(0, &by_dst),
            by_dst,
            src,
            dst,
        }
    }

    pub fn len(&self) -> i64 {
        self.src.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inner products z_src · z_dst.
    fn logits(&self, z: &Tensor) -> Tensor {
        (z.index_select(0, &self.src) * z.index_select(0, &self.dst)).sum_dim_intlist(1, false, None::<Kind>)
    }

    /// Σ_e c_e (e_src z_dstᵀ + e_dst z_srcᵀ): the gradient of Σ_e f(z_src·z_dst)
    /// with c_e = f′.
    fn pair_grad(&self, z: &Tensor, c: &Tensor) -> Tensor {
        let bag = |idx: &Tensor, offsets: &Tensor, w: &Tensor| Tensor::embedding_bag(z, idx, offsets, false, 0, false, Some(w), true).0;
        bag(&self.dst, &self.src_offsets, c) + bag(&self.src_by_dst, &self.dst_offsets, &c.index_select(0, &self.by_dst))
    }
}

/// [`edge_bce`] and its gradient with respect to z, computed without
/// autograd (gathers and gather-sums only; autograd's scatter backward of
/// the gathers is several times slower on the CPU). Returns (loss, dL/dz).
pub fn edge_bce_and_grad(z: &Tensor, pos: &Pairs, neg: Option<&Pairs>, norm: f64) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let z = z.detach().contiguous();
        let neg = neg.filter(|p| !p.is_empty());
        let m = (pos.len() + neg.map_or(0, Pairs::len)) as f64;
        let lp = pos.logits(&z);
        // BCE with logits: y = 1 → softplus(−l), y = 0 → softplus(l).
        let mut value = (-&lp).softplus().sum(Kind::Float);
        // d/dl: sigmoid(l) − y.
        let mut grad = pos.pair_grad(&z, &((lp.sigmoid() - 1.0) * (norm / m)));
        if let Some(neg) = neg {
            let ln = neg.logits(&z);
            value = value + ln.softplus().sum(Kind::Float);
            grad = grad + neg.pair_grad(&z, &(ln.sigmoid() * (norm / m)));
        }
        (value * (norm / m), grad)
    })
}

/// VGAE KL term in Kipf's form, −0.5/n · mean_i Σ_j (1 + 2 logσ − μ² − σ²),
/// with the reference's extra 1/n kept so the weights mean the same.
pub fn vgae_kl(mu: &Tensor, log_sigma: &Tensor) -> Tensor {
    let n = mu.size()[0] as f64;
    let inner = (log_sigma * 2.0 + 1.0) - mu.square() - (log_sigma * 2.0).exp();
    inner.sum_dim_intlist(1, false, None::<Kind>).mean(None::<Kind>) * (-0.5 / n)
}

/// DEC target distribution P = q² / Σ_i q, renormalised per row.
pub fn target_distribution(q: &Tensor) -> Tensor {
    let w = q.square() / q.sum_dim_intlist(0, true, None::<Kind>);
    &w / w.sum_dim_intlist(1, true, None::<Kind>)
}

/// KL(P ‖ Q) averaged over all n·K entries (PyTorch's `kl_div` default
/// reduction, as the reference uses; not batchmean).
pub fn dec_kl(q: &Tensor, p: &Tensor) -> Tensor {
    q.clamp_min(1e-12).log().kl_div(p, Reduction::Mean, false)
}

/// Mean squared error over all entries.
pub fn mse(a: &Tensor, b: &Tensor) -> Tensor {
    a.mse_loss(b, Reduction::Mean)
}

#[cfg(test)]
mod tests;
