//! Seeded k-means (k-means++ seeding, Lloyd iterations, best of several
//! restarts) on a libtorch tensor, used to initialise the DEC centres.

use crate::model::sq_dist;
use crate::rng::SplitMix64;
use tch::{Kind, Tensor};

pub struct KMeansFit {
    pub centres: Tensor,
    pub inertia: f64,
}

fn plus_plus(x: &Tensor, k: i64, rng: &mut SplitMix64) -> Tensor {
    let n = x.size()[0] as usize;
    let mut chosen = vec![rng.below(n) as i64];
    let mut best = sq_dist(x, &x.narrow(0, chosen[0], 1)).squeeze_dim(1);
    while (chosen.len() as i64) < k {
        let w: Vec<f64> = Vec::<f64>::try_from(best.to_kind(Kind::Double).to_device(tch::Device::Cpu)).unwrap_or_default();
        let total: f64 = w.iter().sum();
        let next = if total > 0.0 {
            let mut t = rng.next_f64() * total;
            let mut pick = n - 1;
            for (i, wi) in w.iter().enumerate() {
                if t < *wi {
                    pick = i;
                    break;
                }
                t -= wi;
            }
            pick
        } else {
            rng.below(n)
        };
        chosen.push(next as i64);
        let d = sq_dist(x, &x.narrow(0, next as i64, 1)).squeeze_dim(1);
        best = best.minimum(&d);
    }
    x.index_select(0, &Tensor::from_slice(&chosen).to_device(x.device()))
}

fn lloyd(x: &Tensor, mut c: Tensor, max_iter: usize, tol: f64) -> KMeansFit {
    let k = c.size()[0];
    let d = x.size()[1];
    for _ in 0..max_iter {
        let assign = sq_dist(x, &c).argmin(1, false);
        let sums = Tensor::zeros([k, d], (x.kind(), x.device())).index_add(0, &assign, x);
        let counts = Tensor::zeros([k], (x.kind(), x.device())).index_add(0, &assign, &x.ones_like().narrow(1, 0, 1).squeeze_dim(1));
        // Empty clusters keep their previous centre.
        let empty = counts.eq(0.0).unsqueeze(1);
        let newc = (sums / counts.clamp_min(1.0).unsqueeze(1)).where_self(&empty.logical_not(), &c);
        let shift = f64::try_from((&newc - &c).square().sum(Kind::Double)).unwrap_or(0.0);
        c = newc;
        if shift <= tol {
            break;
        }
    }
    let inertia = f64::try_from(sq_dist(x, &c).min_dim(1, false).0.sum(Kind::Double)).unwrap_or(f64::INFINITY);
    KMeansFit { centres: c, inertia }
}

/// Best of `restarts` k-means runs on the rows of `x` (a float tensor on any
/// device). Like scikit-learn, the tolerance is 1e-4 times the mean variance.
pub fn kmeans(x: &Tensor, k: i64, restarts: usize, rng: &mut SplitMix64) -> KMeansFit {
    let _guard = tch::no_grad_guard();
    let var = f64::try_from(x.var_dim(0, false, false).mean(Kind::Double)).unwrap_or(0.0);
    let tol = 1e-4 * var;
    let mut best: Option<KMeansFit> = None;
    for _ in 0..restarts.max(1) {
        let fit = lloyd(x, plus_plus(x, k, rng), 300, tol);
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    best.unwrap_or_else(|| KMeansFit { centres: x.narrow(0, 0, k), inertia: f64::INFINITY })
}
