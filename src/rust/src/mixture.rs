//! EM for mclust's "EEE" Gaussian mixture (G components sharing one full
//! covariance), the iteration of mclust's `me(modelName = "EEE")` (its
//! Fortran `meeee`): an M-step from the given responsibilities z, then an
//! E-step, repeated until the relative change of the log-likelihood
//! |l − l_prev| / (1 + |l|) is at most `tol` (mclust's default 1e-5). Like
//! mclust it gives up (`None`) when a component's total weight is at most
//! √ε, or the Cholesky factor U of the covariance has min|U_jj| /
//! (1 + max|U_jj|) at most √ε.
//!
//! Why not mclust's: it accumulates the covariance by a Givens rotation per
//! spot and component and solves a triangular system per spot and
//! component (~45 ms an iteration on DLPFC's 3,639 × 32 embedding, 35–70
//! iterations). Here an iteration is a few passes over the n × p data in
//! vectorisable loops (~1 ms there): the same fit to rounding.
//!
//! Matrices are column-major as R stores them: x n × p, z n × G, means
//! p × G, U p × p (upper triangle used).

use crate::error::{Result, SedrError};

/// A fitted EEE mixture: Σ = UᵀU.
#[derive(Debug, Clone)]
pub struct EeeFit {
    /// Mixing proportions, G.
    pub pro: Vec<f64>,
    /// Component means, p × G.
    pub mean: Vec<f64>,
    /// Upper Cholesky factor of the shared covariance, p × p.
    pub chol: Vec<f64>,
    /// Responsibilities of the last E-step, n × G.
    pub z: Vec<f64>,
    pub loglik: f64,
    pub iterations: usize,
}

fn rteps() -> f64 {
    f64::EPSILON.sqrt()
}

fn check_matrix(v: &[f64], rows: usize, cols: usize, what: &str) -> Result<()> {
    if rows == 0 || cols == 0 || v.len() != rows * cols {
        return Err(SedrError::input(what, format!("must be a non-empty {rows} x {cols} matrix")));
    }
    if v.iter().any(|a| !a.is_finite()) {
        return Err(SedrError::input(what, "must not contain NA, NaN or Inf values"));
    }
    Ok(())
}

/// The column-major n × p `x` minus `center` (column-major).
fn centred(x: &[f64], n: usize, center: &[f64]) -> Vec<f64> {
    x.chunks_exact(n).zip(center).flat_map(|(col, c)| col.iter().map(move |v| v - c)).collect()
}

/// Σ aᵢbᵢ in four interleaved partial sums: one dependent chain of
/// additions (a plain fold) runs at a quarter of the speed or less.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Upper Cholesky factor U of the symmetric p × p `a` (UᵀU = a), or None
/// when `a` is not positive definite to working precision.
fn cholesky_upper(a: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut u = vec![0.0; p * p];
    for j in 0..p {
        let mut d = a[j * p + j];
        for k in 0..j {
            d -= u[j * p + k] * u[j * p + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        u[j * p + j] = d;
        for c in j + 1..p {
            let mut s = a[c * p + j];
            for k in 0..j {
                s -= u[j * p + k] * u[c * p + k];
            }
            u[c * p + j] = s / d;
        }
    }
    Some(u)
}

/// Solves Uᵀy = v in place (U upper, column-major): forward substitution.
fn solve_upper_t(u: &[f64], p: usize, v: &mut [f64]) {
    for j in 0..p {
        let col = &u[j * p..j * p + j];
        let s: f64 = col.iter().zip(&v[..j]).map(|(a, b)| a * b).sum();
        v[j] = (v[j] - s) / u[j * p + j];
    }
}

/// The M-step from responsibilities `z` on the centred data `xc` (n × p)
/// with `total` = XᵀX: proportions, means (p × G) and U, or None. As every
/// row of z sums to 1, the pooled within-component scatter is W = XᵀX −
/// Σ_k n_k μ_k μ_kᵀ, so the M-step is one n × p × G pass.
fn mstep(xc: &[f64], n: usize, p: usize, z: &[f64], g: usize, total: &[f64]) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let ones = vec![1.0; n];
    let nk: Vec<f64> = z.chunks_exact(n).map(|zk| dot(zk, &ones)).collect();
    if nk.iter().any(|&v| v <= rteps()) {
        return None;
    }
    let sums: Vec<f64> = (0..p * g).map(|e| dot(&xc[(e % p) * n..(e % p + 1) * n], &z[(e / p) * n..(e / p + 1) * n])).collect();
    let mean: Vec<f64> = (0..p * g).map(|e| sums[e] / nk[e / p]).collect();
    let mut scatter = vec![0.0; p * p];
    for a in 0..p {
        for b in 0..p {
            let between: f64 = (0..g).map(|k| mean[k * p + a] * sums[k * p + b]).sum();
            scatter[b * p + a] = total[b * p + a] - between;
        }
    }
    let cov: Vec<f64> = (0..p * p).map(|e| (scatter[e] + scatter[(e % p) * p + e / p]) / (2.0 * n as f64)).collect();
    let u = cholesky_upper(&cov, p)?;
    let d: Vec<f64> = (0..p).map(|j| u[j * p + j].abs()).collect();
    let (lo, hi) = d.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo / (1.0 + hi) <= rteps() {
        return None;
    }
    let pro = nk.iter().map(|v| v / n as f64).collect();
    Some((pro, mean, u))
}

/// The E-step on `x` (n × p): responsibilities (n × G) and the
/// log-likelihood. With Σ = UᵀU the Mahalanobis distance is |U⁻ᵀ(x − μ)|²:
/// the spots are whitened together, Y = X·U⁻¹ column by column (each
/// column an update of all spots at once), and so are the means.
fn estep(x: &[f64], n: usize, p: usize, pro: &[f64], mean: &[f64], u: &[f64]) -> (Vec<f64>, f64) {
    let g = pro.len();
    let mut wm = mean.to_vec();
    for k in 0..g {
        solve_upper_t(u, p, &mut wm[k * p..(k + 1) * p]);
    }
    let mut y = x.to_vec();
    for j in 0..p {
        let (done, rest) = y.split_at_mut(j * n);
        let yj = &mut rest[..n];
        for m in 0..j {
            let c = u[j * p + m];
            yj.iter_mut().zip(&done[m * n..(m + 1) * n]).for_each(|(a, b)| *a -= c * b);
        }
        let d = u[j * p + j];
        yj.iter_mut().for_each(|a| *a /= d);
    }
    let log_det: f64 = (0..p).map(|j| u[j * p + j].abs().ln()).sum();
    let konst = p as f64 * (2.0 * std::f64::consts::PI).ln() / 2.0 + log_det;
    // log of the weighted densities, n × G; a component with proportion 0
    // gets log 0 = −∞, so z = 0 (as mclust).
    let mut z = vec![0.0; n * g];
    for (k, zk) in z.chunks_exact_mut(n).enumerate() {
        for j in 0..p {
            let mu = wm[k * p + j];
            zk.iter_mut().zip(&y[j * n..(j + 1) * n]).for_each(|(a, v)| *a += (v - mu) * (v - mu));
        }
        let lp = pro[k].ln() - konst;
        zk.iter_mut().for_each(|a| *a = lp - *a / 2.0);
    }
    let mut loglik = 0.0;
    for i in 0..n {
        let top = (0..g).map(|k| z[k * n + i]).fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for k in 0..g {
            let shifted = z[k * n + i] - top;
            // As mclust: no denormals.
            let v = if shifted < -708.0 { 0.0 } else { shifted.exp() };
            z[k * n + i] = v;
            sum += v;
        }
        for k in 0..g {
            z[k * n + i] /= sum;
        }
        loglik += sum.ln() + top;
    }
    (z, loglik)
}

/// EM from responsibilities `z` (n × G) on `x` (n × p), at most `itmax`
/// iterations: the fit, or None where mclust's EM fails (see the module
/// documentation).
pub fn em_eee(x: &[f64], n: usize, p: usize, z: &[f64], g: usize, tol: f64, itmax: usize) -> Result<Option<EeeFit>> {
    check_matrix(x, n, p, "data")?;
    check_matrix(z, n, g, "z")?;
    if tol.is_nan() || tol < 0.0 || itmax == 0 {
        return Err(SedrError::input("tol", "needs tol >= 0 and at least one iteration"));
    }
    // Centred once: the fit is translation-equivariant, and the scatter
    // identity of the M-step loses less precision about the data's mean.
    let center: Vec<f64> = (0..p).map(|j| x[j * n..(j + 1) * n].iter().sum::<f64>() / n as f64).collect();
    let xc = centred(x, n, &center);
    let mut total = vec![0.0; p * p];
    for a in 0..p {
        for b in 0..=a {
            let v = dot(&xc[a * n..(a + 1) * n], &xc[b * n..(b + 1) * n]);
            total[b * p + a] = v;
            total[a * p + b] = v;
        }
    }
    let mut z = z.to_vec();
    let mut hold = f64::MAX / 2.0;
    let mut iterations = 0;
    loop {
        iterations += 1;
        let Some((pro, mut mean, u)) = mstep(&xc, n, p, &z, g, &total) else {
            return Ok(None);
        };
        let (znew, loglik) = estep(&xc, n, p, &pro, &mean, &u);
        z = znew;
        let err = (hold - loglik).abs() / (1.0 + loglik.abs());
        hold = loglik;
        if err <= tol || iterations >= itmax {
            for k in 0..g {
                mean[k * p..(k + 1) * p].iter_mut().zip(&center).for_each(|(m, c)| *m += c);
            }
            return Ok(Some(EeeFit { pro, mean, chol: u, z, loglik, iterations }));
        }
    }
}

/// The E-step of a fitted EEE mixture on `x` (n × p, column-major):
/// responsibilities (n × G) and the log-likelihood.
pub fn estep_eee(x: &[f64], n: usize, p: usize, pro: &[f64], mean: &[f64], chol: &[f64]) -> Result<(Vec<f64>, f64)> {
    check_matrix(x, n, p, "data")?;
    let g = pro.len();
    check_matrix(mean, p, g, "mean")?;
    check_matrix(chol, p, p, "cholSigma")?;
    if pro.iter().any(|v| v.is_nan() || *v < 0.0) {
        return Err(SedrError::input("pro", "must be non-negative proportions"));
    }
    if (0..p).any(|j| chol[j * p + j] == 0.0) {
        return Err(SedrError::input("cholSigma", "must be a non-singular Cholesky factor"));
    }
    Ok(estep(x, n, p, pro, mean, chol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// n spots in p dimensions from g well-separated Gaussian blobs, and
    /// their labels; column-major.
    fn blobs(n: usize, p: usize, g: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut rng = SplitMix64::new(seed);
        let mut normal = || {
            let (u1, u2) = (1.0 - rng.next_f64(), rng.next_f64());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let labels: Vec<usize> = (0..n).map(|i| i % g).collect();
        let mut x = vec![0.0; n * p];
        for (i, &l) in labels.iter().enumerate() {
            for j in 0..p {
                let centre = if j % g == l { 6.0 } else { 0.0 };
                // Correlated noise: the shared covariance is not diagonal.
                x[j * n + i] = centre + normal() + if j > 0 { 0.5 * x[(j - 1) * n + i] } else { 0.0 };
            }
        }
        (x, labels)
    }

    fn one_hot(labels: &[usize], g: usize) -> Vec<f64> {
        let n = labels.len();
        let mut z = vec![0.0; n * g];
        for (i, &l) in labels.iter().enumerate() {
            z[l * n + i] = 1.0;
        }
        z
    }

    #[test]
    fn cholesky_and_solve_by_hand() {
        // a = UᵀU with U = [[2, 1], [0, 3]] (column-major [2, 0, 1, 3]).
        let a = [4.0, 2.0, 2.0, 10.0];
        let u = cholesky_upper(&a, 2).unwrap();
        assert_eq!(u, vec![2.0, 0.0, 1.0, 3.0]);
        let mut v = [4.0, 11.0];
        solve_upper_t(&u, 2, &mut v);
        // Uᵀ = [[2, 0], [1, 3]]: y = (2, 3).
        assert_eq!(v, [2.0, 3.0]);
        assert!(cholesky_upper(&[1.0, 2.0, 2.0, 1.0], 2).is_none(), "indefinite");
    }

    #[test]
    fn recovers_separated_components_and_raises_the_likelihood() {
        let (n, p, g) = (600, 4, 3);
        let (x, labels) = blobs(n, p, g, 3);
        // Start from a blurred assignment: 70 % on the true component.
        let mut z = one_hot(&labels, g);
        for e in z.iter_mut() {
            *e = if *e == 1.0 { 0.7 } else { 0.15 };
        }
        let fit = em_eee(&x, n, p, &z, g, 1e-5, 1000).unwrap().unwrap();
        for (i, &l) in labels.iter().enumerate() {
            let best = (0..g).max_by(|&a, &b| fit.z[a * n + i].total_cmp(&fit.z[b * n + i])).unwrap();
            assert_eq!(best, l, "spot {i}");
        }
        for k in 0..g {
            assert!((fit.pro[k] - 1.0 / 3.0).abs() < 1e-9, "pro {}", fit.pro[k]);
        }
        // One more iteration from the fit changes the log-likelihood by at
        // most the tolerance, and never lowers it (EM's monotonicity).
        let again = em_eee(&x, n, p, &fit.z, g, 0.0, 1).unwrap().unwrap();
        assert!(again.loglik >= fit.loglik - 1e-9 * fit.loglik.abs());
        assert!((again.loglik - fit.loglik).abs() / (1.0 + fit.loglik.abs()) <= 1e-5);
        // The E-step of the fitted model reproduces its responsibilities.
        let (z2, l2) = estep_eee(&x, n, p, &fit.pro, &fit.mean, &fit.chol).unwrap();
        assert!((l2 - fit.loglik).abs() <= 1e-9 * fit.loglik.abs());
        assert!(z2.iter().zip(&fit.z).all(|(a, b)| (a - b).abs() < 1e-9));
        // Rows of z sum to 1.
        for i in 0..n {
            let s: f64 = (0..g).map(|k| fit.z[k * n + i]).sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn matches_the_closed_form_of_one_component() {
        // G = 1: the mean and covariance (divided by n) of the data.
        let (n, p) = (50, 3);
        let (x, _) = blobs(n, p, 2, 8);
        let fit = em_eee(&x, n, p, &vec![1.0; n], 1, 1e-5, 100).unwrap().unwrap();
        for j in 0..p {
            let m = x[j * n..(j + 1) * n].iter().sum::<f64>() / n as f64;
            assert!((fit.mean[j] - m).abs() < 1e-12);
        }
        let u = &fit.chol;
        for a in 0..p {
            for b in 0..p {
                let ma = fit.mean[a];
                let mb = fit.mean[b];
                let cov = (0..n).map(|i| (x[a * n + i] - ma) * (x[b * n + i] - mb)).sum::<f64>() / n as f64;
                let utu: f64 = (0..p).map(|k| u[a * p + k] * u[b * p + k]).sum();
                assert!((utu - cov).abs() < 1e-10, "({a}, {b}) {utu} vs {cov}");
            }
        }
    }

    #[test]
    fn fails_where_mclust_fails_and_rejects_bad_input() {
        let (n, p, g) = (40, 2, 2);
        let (x, labels) = blobs(n, p, g, 1);
        // An empty component.
        let mut z = vec![0.0; n * g];
        z[..n].iter_mut().for_each(|v| *v = 1.0);
        assert!(em_eee(&x, n, p, &z, g, 1e-5, 10).unwrap().is_none());
        // A singular covariance: the second coordinate copies the first.
        let mut flat = x.clone();
        let (first, second) = flat.split_at_mut(n);
        second.copy_from_slice(first);
        assert!(em_eee(&flat, n, p, &one_hot(&labels, g), g, 1e-5, 10).unwrap().is_none());
        // Bad shapes and values are errors, not panics.
        assert!(em_eee(&x[1..], n, p, &one_hot(&labels, g), g, 1e-5, 10).is_err());
        assert!(em_eee(&x, n, p, &z[1..], g, 1e-5, 10).is_err());
        let mut nan = x.clone();
        nan[3] = f64::NAN;
        assert!(em_eee(&nan, n, p, &one_hot(&labels, g), g, 1e-5, 10).is_err());
        assert!(em_eee(&x, n, p, &one_hot(&labels, g), g, f64::NAN, 10).is_err());
        assert!(estep_eee(&x, n, p, &[0.5, 0.5], &[0.0; 4], &[1.0, 0.0, 0.0, 0.0]).is_err());
    }
}
