//! Agreement between two labelings, for tests and the `sedr-bench` check
//! (the R layer scores domains with mclust's own `adjustedRandIndex`).

/// Adjusted Rand index of two labelings (0-based labels) from their
/// contingency table; 1 for identical partitions, about 0 for chance.
/// Empty or mismatched inputs give NaN.
pub fn ari(a: &[usize], b: &[usize]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return f64::NAN;
    }
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut t = vec![vec![0f64; kb]; ka];
    for (&i, &j) in a.iter().zip(b) {
        t[i][j] += 1.0;
    }
    let c2 = |x: f64| x * (x - 1.0) / 2.0;
    let sum_ij: f64 = t.iter().flatten().map(|&v| c2(v)).sum();
    let sa: f64 = t.iter().map(|r| c2(r.iter().sum())).sum();
    let sb: f64 = (0..kb).map(|j| c2(t.iter().map(|r| r[j]).sum())).sum();
    let expected = sa * sb / c2(a.len() as f64);
    (sum_ij - expected) / (0.5 * (sa + sb) - expected)
}

#[cfg(test)]
mod tests {
    use super::ari;

    #[test]
    fn ari_by_hand() {
        assert_eq!(ari(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        // Contingency [[2, 0], [1, 1]]: pairs together in both 1, expected
        // 2 * 3 / 6 = 1, so the index is exactly chance.
        assert_eq!(ari(&[0, 0, 1, 1], &[0, 0, 0, 1]), 0.0);
        assert!((ari(&[0, 0, 1, 1, 2, 2], &[0, 0, 1, 1, 1, 1]) - 4.0 / 9.0).abs() < 1e-12);
        assert!(ari(&[], &[]).is_nan());
        assert!(ari(&[0, 1], &[0]).is_nan());
    }
}
