//! Local inverse Simpson's index (LISI; Korsunsky et al., Nat Methods 2019,
//! the Harmony paper). For each spot: its `3·perplexity` nearest neighbours in
//! the embedding, Gaussian weights whose bandwidth gives the requested
//! perplexity (binary search on the precision, as t-SNE), then
//! 1 / Σ_label (weight of that label)². iLISI on section labels measures
//! mixing (1 = unmixed, up to the number of sections); cLISI on cell-type or
//! layer labels measures separation (1 = pure).

use crate::error::{Result, SedrError};
use kiddo::{ImmutableKdTree, SquaredEuclidean};
use rayon::prelude::*;
use std::num::NonZeroUsize;

/// Nearest neighbours (self excluded) as (squared distances, indices).
type Knn = Vec<(Vec<f64>, Vec<usize>)>;

fn knn_padded<const D: usize>(x: &[f64], n: usize, d: usize, k: usize) -> Result<Knn> {
    // Zero-padding to D dimensions leaves Euclidean distances unchanged.
    let pts: Vec<[f64; D]> = (0..n)
        .map(|i| {
            let mut p = [0.0; D];
            p[..d].copy_from_slice(&x[i * d..(i + 1) * d]);
            p
        })
        .collect();
    let tree: ImmutableKdTree<f64, D> = ImmutableKdTree::new_from_slice(&pts)
        .map_err(|e| SedrError::Internal(format!("k-d tree construction failed: {e:?}")))?;
    let m = NonZeroUsize::new(k + 1).unwrap_or(NonZeroUsize::MIN);
    Ok(pts
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r: Vec<(f64, usize)> = tree
                .query(p)
                .nearest_n::<SquaredEuclidean<f64>>(m)
                .execute()
                .into_iter()
                .map(|q| (q.distance, q.item as usize))
                .filter(|&(_, j)| j != i)
                .collect();
            r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            r.truncate(k);
            r.into_iter().unzip()
        })
        .collect())
}

fn knn(x: &[f64], n: usize, d: usize, k: usize) -> Result<Knn> {
    match d {
        1..=2 => knn_padded::<2>(x, n, d, k),
        3..=4 => knn_padded::<4>(x, n, d, k),
        5..=8 => knn_padded::<8>(x, n, d, k),
        9..=16 => knn_padded::<16>(x, n, d, k),
        17..=32 => knn_padded::<32>(x, n, d, k),
        33..=64 => knn_padded::<64>(x, n, d, k),
        _ => Err(SedrError::input("embedding", format!("has {d} dimensions; LISI supports 1 to 64 (use the first PCs)"))),
    }
}

/// Gaussian weights over squared distances with perplexity `perp` (t-SNE's
/// calibration: entropy H = ln(perp), binary search on the precision beta).
fn perplexity_weights(d2: &[f64], perp: f64) -> Vec<f64> {
    let target = perp.ln();
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    let d0 = d2.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut w = vec![0.0; d2.len()];
    for _ in 0..100 {
        // Shift by the smallest distance for numerical safety (cancels out).
        let mut sum = 0.0;
        for (wi, &di) in w.iter_mut().zip(d2) {
            *wi = (-(di - d0) * beta).exp();
            sum += *wi;
        }
        let mut h = 0.0;
        for (wi, &di) in w.iter_mut().zip(d2) {
            *wi /= sum;
            if *wi > 0.0 {
                h += *wi * beta * (di - d0);
            }
        }
        h += sum.ln();
        if (h - target).abs() < 1e-5 {
            break;
        }
        if h > target {
            lo = beta;
            beta = if hi.is_finite() { (beta + hi) / 2.0 } else { beta * 2.0 };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    w
}

/// LISI of every spot for each label set. `x` is n × d row-major; `labels`
/// holds one vector of integer codes (0-based) per label set.
pub fn lisi(x: &[f64], n: usize, d: usize, labels: &[Vec<i32>], perplexity: f64) -> Result<Vec<Vec<f64>>> {
    if d == 0 || x.len() != n * d {
        return Err(SedrError::input("embedding", "has the wrong size"));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(SedrError::input("embedding", "contains NA, NaN or Inf"));
    }
    if !(perplexity.is_finite() && perplexity >= 1.0) {
        return Err(SedrError::input("perplexity", "must be a number >= 1"));
    }
    for l in labels {
        if l.len() != n {
            return Err(SedrError::input("labels", format!("has length {} but there are {n} spots", l.len())));
        }
        if l.iter().any(|&v| v < 0) {
            return Err(SedrError::input("labels", "contains NA"));
        }
    }
    let k = ((3.0 * perplexity) as usize).min(n.saturating_sub(1));
    if k < 1 {
        return Err(SedrError::input("embedding", "needs at least 2 spots"));
    }
    let nn = knn(x, n, d, k)?;
    let weights: Vec<Vec<f64>> = nn.par_iter().map(|(d2, _)| perplexity_weights(d2, perplexity.min(k as f64))).collect();
    Ok(labels
        .iter()
        .map(|lab| {
            nn.par_iter()
                .zip(&weights)
                .map(|((_, idx), w)| {
                    let mut acc: std::collections::HashMap<i32, f64> = Default::default();
                    for (&j, &wj) in idx.iter().zip(w) {
                        *acc.entry(lab[j]).or_default() += wj;
                    }
                    1.0 / acc.values().map(|p| p * p).sum::<f64>()
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_have_the_requested_perplexity() {
        let d2: Vec<f64> = (0..90).map(|i| (i as f64) * 0.1).collect();
        let w = perplexity_weights(&d2, 30.0);
        let h: f64 = -w.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
        assert!((h.exp() - 30.0).abs() < 0.01, "perplexity {}", h.exp());
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_case_with_equal_distances() {
        // Five points: 0 at the centre, 1..4 at distance 1 on the axes.
        // Spot 0's neighbours are equidistant: equal weights 1/4; labels of
        // 1..4 are a, a, b, b -> Simpson 0.5 -> LISI 2; all one label -> 1.
        let x = [0.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
        let lab = vec![0, 0, 0, 1, 1];
        let out = lisi(&x, 5, 2, &[lab, vec![0; 5]], 1.34).unwrap(); // k = 4 neighbours
        assert!((out[0][0] - 2.0).abs() < 1e-9, "{}", out[0][0]);
        assert!(out[1].iter().all(|&v| (v - 1.0).abs() < 1e-12));
    }

    #[test]
    fn mixed_and_separated_extremes() {
        // Perfectly mixed: every grid location holds one spot of each label.
        // A spot's twin (distance 0, other label) has weight w0 and the rest
        // is balanced, so LISI = 2 / (1 + w0²), just under 2.
        let mut x = Vec::new();
        let mut mixed = Vec::new();
        for i in 0..400 {
            for lab in 0..2 {
                x.push((i % 20) as f64);
                x.push((i / 20) as f64);
                mixed.push(lab);
            }
        }
        // Perplexity 11: k = 33 neighbours = the twin + 16 whole pairs.
        let m = lisi(&x, 800, 2, &[mixed], 11.0).unwrap();
        let nn = knn(&x, 800, 2, 33).unwrap();
        for i in [0usize, 1, 37, 420, 799] {
            let (d2, idx) = &nn[i];
            assert_eq!(idx[0], i ^ 1, "the twin is the nearest neighbour");
            let w0 = perplexity_weights(d2, 11.0)[0];
            let want = 2.0 / (1.0 + w0 * w0);
            assert!((m[0][i] - want).abs() < 1e-9, "spot {i}: {} vs {want}", m[0][i]);
        }
        assert!(m[0].iter().all(|&v| v > 1.5 && v <= 2.0 + 1e-9));
        // Perfectly separated: two far-apart blobs, LISI exactly 1.
        let n = 400;
        let mut far = Vec::new();
        let mut sep = Vec::new();
        for i in 0..n {
            let lab = (i % 20 >= 10) as i32;
            far.push((i % 20) as f64 + 1000.0 * lab as f64);
            far.push((i / 20) as f64);
            sep.push(lab);
        }
        let s = lisi(&far, n, 2, &[sep], 10.0).unwrap();
        assert!(s[0].iter().all(|&v| (v - 1.0).abs() < 1e-9));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(lisi(&[0.0, 1.0], 2, 1, &[vec![0]], 30.0).is_err());
        assert!(lisi(&[0.0, f64::NAN], 2, 1, &[vec![0, 1]], 30.0).is_err());
        assert!(lisi(&[0.0, 1.0], 2, 1, &[vec![0, 1]], 0.5).is_err());
        assert!(lisi(&vec![0.0; 130], 2, 65, &[vec![0, 1]], 30.0).is_err());
    }
}
