//! The loss terms of SEDR (reference spec §4–§5), written for any float kind
//! so they can be gradient-checked in float64.

use tch::{Kind, Reduction, Tensor};

/// Scaled cosine error: mean over rows of (1 − cos(a_i, b_i))^alpha.
pub fn sce(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    let unit = |t: &Tensor| {
        let norm = t.square().sum_dim_intlist(1, true, None::<Kind>).sqrt().clamp_min(1e-12);
        t / norm
    };
    let cos = (unit(a) * unit(b)).sum_dim_intlist(1, false, None::<Kind>);
    (-cos + 1.0).pow_tensor_scalar(alpha).mean(None::<Kind>)
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
