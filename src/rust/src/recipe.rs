//! The reference preprocessing recipe on sparse counts, without densifying:
//! gene filter (detected spots, total counts), library sizes, the sparse
//! passes of the Seurat v3 VST (moments of the counts, then the clipped
//! standardised variances), the counts per million of the selected genes and
//! their mean and sd (implicit centring and scaling for [`crate::pca`]).
//!
//! The counts arrive as the slots of R's genes × spots dgCMatrix, i.e. a CSR
//! matrix of spots × genes ([`Csr`]). Per-gene sums are accumulated in spot
//! order, the order of `Matrix::rowSums`, so they match the R recipe to the
//! bit; threads split the genes into ranges (each thread scans its range in
//! every spot), so the result does not depend on the thread count either.
//! The one non-sparse step of the VST, the loess fit of log-variance on
//! log-mean over genes, stays in R (`stats::loess`).

use crate::device::with_pool;
use crate::error::{Result, SedrError};
use crate::graph::SpatialGraph;
use crate::moran::{moran, Moran};
use crate::pca::{pca_rows, Csr, Method, Pca, RowBuf, Rows, Scores};
use rayon::prelude::*;
use tch::Device;

/// Checks the slots and that the values are counts-like (finite, >= 0).
pub fn check_counts(x: &Csr) -> Result<()> {
    x.check()?;
    if x.values.iter().any(|&v| v < 0.0) {
        return Err(SedrError::input("object", "contains negative values; raw counts (>= 0) are needed"));
    }
    Ok(())
}

/// What is wrong with the values of a counts matrix, for the R side's
/// messages: any NA/NaN/Inf, any negative, any non-integer value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValueProblems {
    pub non_finite: bool,
    pub negative: bool,
    pub non_integer: bool,
}

/// One pass over the values (in parallel chunks; the flags are order-free).
pub fn value_problems(values: &[f64]) -> ValueProblems {
    values
        .par_chunks(1 << 16)
        .map(|c| {
            let mut p = ValueProblems::default();
            for &v in c {
                if !v.is_finite() {
                    p.non_finite = true;
                } else {
                    p.negative |= v < 0.0;
                    p.non_integer |= v.fract() != 0.0;
                }
            }
            p
        })
        .reduce(ValueProblems::default, |a, b| ValueProblems {
            non_finite: a.non_finite || b.non_finite,
            negative: a.negative || b.negative,
            non_integer: a.non_integer || b.non_integer,
        })
}

/// Spots (0-based) without a nonzero count.
pub fn empty_spots(x: &Csr) -> Vec<usize> {
    (0..x.n).into_par_iter().filter(|&i| x.row(i).1.iter().all(|&v| v == 0.0)).collect()
}

/// Per-gene accumulators of `K` values, from `visit(acc, value)` called for
/// every stored entry of the gene in spot order. The genes are split into
/// one contiguous range per thread; within a spot, the entries of a range are
/// found by binary search (indices are sorted within a spot).
fn gene_pass<const K: usize, R: Rows>(x: &R, threads: usize, visit: impl Fn(&mut [f64; K], usize, f64) + Sync) -> Vec<[f64; K]> {
    let g = x.n_cols();
    let parts = threads.max(1).min(g.max(1));
    let bounds: Vec<(usize, usize)> = (0..parts).map(|p| (p * g / parts, (p + 1) * g / parts)).collect();
    let pieces: Vec<Vec<[f64; K]>> = bounds
        .par_iter()
        .map(|&(a, b)| {
            let mut acc = vec![[0.0; K]; b - a];
            let mut buf = RowBuf::default();
            for i in 0..x.n_rows() {
                let (js, vs) = x.row_into(i, &mut buf);
                let (lo, hi) = if parts == 1 {
                    (0, js.len())
                } else {
                    (js.partition_point(|&j| (j as usize) < a), js.partition_point(|&j| (j as usize) < b))
                };
                for (&j, &v) in js[lo..hi].iter().zip(&vs[lo..hi]) {
                    let j = j as usize;
                    visit(&mut acc[j - a], j, v);
                }
            }
            acc
        })
        .collect();
    pieces.concat()
}

/// Per-gene statistics of the counts, one value per gene.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneStats {
    /// Spots where the gene is nonzero (stored zeros are not counted).
    pub detected: Vec<f64>,
    /// Stored entries (stored zeros included), for the zeros' share.
    pub stored: Vec<f64>,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
}

/// Detection, stored entries, sum and sum of squares of every gene.
pub fn gene_stats(x: &Csr, threads: usize) -> GeneStats {
    let acc = gene_pass::<4, _>(x, threads, |a, _, v| {
        a[0] += (v != 0.0) as u8 as f64;
        a[1] += 1.0;
        a[2] += v;
        a[3] += v * v;
    });
    let col = |k: usize| acc.iter().map(|a| a[k]).collect::<Vec<f64>>();
    GeneStats { detected: col(0), stored: col(1), sum: col(2), sum_sq: col(3) }
}

/// The genes kept by the filter: detected in >= `min_spots` spots and with
/// >= `min_counts` counts.
pub fn filter_genes(stats: &GeneStats, min_spots: f64, min_counts: f64) -> Vec<bool> {
    stats.detected.iter().zip(&stats.sum).map(|(&d, &s)| d >= min_spots && s >= min_counts).collect()
}

/// Library size of every spot over the kept genes.
pub fn spot_totals(x: &Csr, keep: &[bool]) -> Vec<f64> {
    (0..x.n)
        .into_par_iter()
        .map(|i| {
            let (js, vs) = x.row(i);
            js.iter().zip(vs).filter(|(&j, _)| keep[j as usize]).fold(0.0, |s, (_, &v)| s + v)
        })
        .collect()
}

/// The VST's sum over the stored entries of min(z, sqrt(n))², z = (x − μ)/σ̂
/// with σ̂ the fitted sd; 0 for genes with σ̂ = 0 (or NaN).
pub fn clipped_sums(x: &Csr, mu: &[f64], sd: &[f64], threads: usize) -> Vec<f64> {
    let vmax = (x.n as f64).sqrt();
    gene_pass::<1, _>(x, threads, |a, j, v| {
        let s = sd[j];
        let z = if s > 0.0 { ((v - mu[j]) / s).min(vmax) } else { 0.0 };
        a[0] += z * z;
    })
    .into_iter()
    .map(|a| a[0])
    .collect()
}

/// An owned CSR matrix (rows = spots), the layout [`Csr`] borrows (tests).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedCsr {
    pub indptr: Vec<i32>,
    pub indices: Vec<i32>,
    pub values: Vec<f64>,
    pub n: usize,
    pub g: usize,
}

#[cfg(test)]
impl OwnedCsr {
    pub fn view(&self) -> Csr<'_> {
        Csr { indptr: &self.indptr, indices: &self.indices, values: &self.values, n: self.n, g: self.g }
    }
}

/// How the recipe normalises a spot's counts by its library size `t`:
/// `Cpm`, the reference's counts per million x / t * 1e6 (no log); `Log`,
/// Seurat's LogNormalize ln(1 + x / t * 1e4). Both keep zeros at zero, so
/// the result stays sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    Cpm,
    Log,
}

impl Normalize {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cpm" => Ok(Normalize::Cpm),
            "log" => Ok(Normalize::Log),
            _ => Err(SedrError::input("normalize", format!("must be \"cpm\" or \"log\", not \"{s}\""))),
        }
    }

    /// One count `v` of a spot with library size `t > 0`, in the order of
    /// operations of the R recipe's `.normalize_counts` (same bits).
    fn apply(self, v: f64, t: f64) -> f64 {
        match self {
            Normalize::Cpm => v / t * 1e6,
            Normalize::Log => (v / t * 1e4).ln_1p(),
        }
    }
}

/// The `selected` genes (0-based, increasing; they become genes 0.. in that
/// order) normalised by `how`, as the R recipe, each row computed when it is
/// read (no copy of the counts' size is held). `totals` (one per spot,
/// finite, >= 0) are the library sizes.
pub struct NormRows<'a> {
    x: &'a Csr<'a>,
    how: Normalize,
    /// New id of each gene of `x`, -1 where not selected.
    newid: Vec<i32>,
    totals: &'a [f64],
    g: usize,
}

impl<'a> NormRows<'a> {
    pub fn new(x: &'a Csr<'a>, selected: &[usize], totals: &'a [f64], how: Normalize) -> Result<Self> {
        if totals.len() != x.n {
            return Err(SedrError::input("totals", "needs one library size per spot"));
        }
        if totals.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(SedrError::input("totals", "library sizes must be finite and >= 0"));
        }
        let mut newid = vec![-1i32; x.g];
        for (k, &j) in selected.iter().enumerate() {
            if j >= x.g || (k > 0 && selected[k - 1] >= j) {
                return Err(SedrError::input("features", "gene indices must be increasing and within the genes"));
            }
            newid[j] = k as i32;
        }
        Ok(NormRows { x, how, newid, totals, g: selected.len() })
    }
}

impl Rows for NormRows<'_> {
    fn n_rows(&self) -> usize {
        self.x.n
    }
    fn n_cols(&self) -> usize {
        self.g
    }
    fn row_into<'s>(&'s self, i: usize, buf: &'s mut RowBuf) -> (&'s [i32], &'s [f64]) {
        buf.cols.clear();
        buf.vals.clear();
        let t = self.totals[i];
        let (js, vs) = self.x.row(i);
        for (&j, &v) in js.iter().zip(vs) {
            let id = self.newid[j as usize];
            if id >= 0 {
                buf.cols.push(id);
                // A spot whose kept genes have no counts keeps zeros.
                buf.vals.push(if t > 0.0 { self.how.apply(v, t) } else { 0.0 });
            }
        }
        (&buf.cols, &buf.vals)
    }
    fn row_len(&self, i: usize, _buf: &mut RowBuf) -> usize {
        self.x.row(i).0.iter().filter(|&&j| self.newid[j as usize] >= 0).count()
    }
}

/// Per-gene mean and unbiased sd from the stored entries (two passes: the
/// squared deviations of the stored entries plus mean² for every zero), and
/// the constant genes (sd ≤ 1e-12 · max(|mean|, 1)), whose scale is 1 — the
/// conventions of the R recipe's `.gene_moments`.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub center: Vec<f64>,
    pub scale: Vec<f64>,
    pub constant: Vec<bool>,
}

pub fn gene_moments<R: Rows>(x: &R, threads: usize) -> Result<Moments> {
    if x.n_rows() < 2 {
        return Err(SedrError::input("x", "needs at least 2 spots (columns) to scale genes"));
    }
    let n = x.n_rows() as f64;
    let first = gene_pass::<2, _>(x, threads, |a, _, v| {
        a[0] += v;
        a[1] += 1.0;
    });
    let center: Vec<f64> = first.iter().map(|a| a[0] / n).collect();
    let dev2 = gene_pass::<1, _>(x, threads, |a, j, v| {
        let d = v - center[j];
        a[0] += d * d;
    });
    let mut scale = Vec::with_capacity(x.n_cols());
    let mut constant = Vec::with_capacity(x.n_cols());
    for ((c, f), d) in center.iter().zip(&first).zip(&dev2) {
        let n_zero = n - f[1];
        let sd = ((d[0] + n_zero * (c * c)) / (n - 1.0)).sqrt();
        let is_const = sd <= 1e-12 * c.abs().max(1.0);
        constant.push(is_const);
        scale.push(if is_const { 1.0 } else { sd });
    }
    Ok(Moments { center, scale, constant })
}

/// The selected genes' moments and their sparse PCA (implicitly centred and
/// scaled; constant genes contribute nothing).
pub struct RecipePca {
    pub moments: Moments,
    pub pca: Pca,
}

/// The `selected` genes normalised by `how` → moments →
/// [`crate::pca::pca_sparse`] to `k` components, the scores as `out` says.
/// The normalised counts are never stored ([`NormRows`]): at a million
/// spots and 2000 genes a copy would hold as much as the counts (1.2 GB).
#[allow(clippy::too_many_arguments)]
pub fn recipe_pca(
    x: &Csr,
    selected: &[usize],
    totals: &[f64],
    how: Normalize,
    k: usize,
    seed: u64,
    threads: usize,
    device: Device,
    method: Method,
    out: Scores,
) -> Result<RecipePca> {
    let threads = threads.max(1);
    let norm = NormRows::new(x, selected, totals, how)?;
    let moments = with_pool(threads, || gene_moments(&norm, threads))??;
    let scale: Vec<f64> = moments.scale.iter().zip(&moments.constant).map(|(&s, &c)| if c { 0.0 } else { s }).collect();
    let pca = pca_rows(&norm, &moments.center, &scale, k, seed, threads, device, device != Device::Cpu, method, out)?;
    Ok(RecipePca { moments, pca })
}

/// Moran's I of the `selected` genes normalised by `how` ([`NormRows`], as
/// the PCA reads them) on the spatial graph, for the recipe's spatial gene
/// filter.
pub fn recipe_moran(x: &Csr, selected: &[usize], totals: &[f64], how: Normalize, graph: &SpatialGraph, threads: usize) -> Result<Moran> {
    let norm = NormRows::new(x, selected, totals, how)?;
    with_pool(threads.max(1), || moran(&norm, graph))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pca::pca_sparse;

    /// The normalised `selected` genes ([`NormRows`]) stored as CSR, to
    /// check the rows the PCA reads against a stored matrix.
    fn select_normalized(x: &Csr, selected: &[usize], totals: &[f64], how: Normalize) -> Result<OwnedCsr> {
        let rows = NormRows::new(x, selected, totals, how)?;
        let (mut indptr, mut indices, mut values) = (Vec::with_capacity(x.n + 1), Vec::new(), Vec::new());
        indptr.push(0i32);
        let mut buf = RowBuf::default();
        for i in 0..x.n {
            let (js, vs) = rows.row_into(i, &mut buf);
            indices.extend_from_slice(js);
            values.extend_from_slice(vs);
            if indices.len() > i32::MAX as usize {
                return Err(SedrError::input("object", "has more than 2^31 - 1 entries in the selected genes"));
            }
            indptr.push(indices.len() as i32);
        }
        Ok(OwnedCsr { indptr, indices, values, n: x.n, g: selected.len() })
    }

    /// 3 spots × 4 genes (rows = spots), hand-made:
    ///   spot 0: g0 = 1, g2 = 4
    ///   spot 1: g0 = 3, g1 = 0 (a stored zero), g3 = 2
    ///   spot 2: g2 = 2, g3 = 6
    fn toy() -> OwnedCsr {
        OwnedCsr {
            indptr: vec![0, 2, 5, 7],
            indices: vec![0, 2, 0, 1, 3, 2, 3],
            values: vec![1.0, 4.0, 3.0, 0.0, 2.0, 2.0, 6.0],
            n: 3,
            g: 4,
        }
    }

    #[test]
    fn gene_stats_by_hand() {
        let t = toy();
        for threads in [1, 2, 3, 8] {
            let s = with_pool(threads, || gene_stats(&t.view(), threads)).unwrap();
            assert_eq!(s.detected, vec![2.0, 0.0, 2.0, 2.0]);
            assert_eq!(s.stored, vec![2.0, 1.0, 2.0, 2.0]);
            assert_eq!(s.sum, vec![4.0, 0.0, 6.0, 8.0]);
            assert_eq!(s.sum_sq, vec![10.0, 0.0, 20.0, 40.0]);
        }
        let s = gene_stats(&t.view(), 1);
        assert_eq!(filter_genes(&s, 2.0, 5.0), vec![false, false, true, true]);
        assert_eq!(filter_genes(&s, 0.0, 0.0), vec![true; 4]);
        assert_eq!(spot_totals(&t.view(), &[true, false, true, true]), vec![5.0, 5.0, 8.0]);
        assert_eq!(spot_totals(&t.view(), &[false, false, true, false]), vec![4.0, 0.0, 2.0]);
    }

    #[test]
    fn clipped_sums_by_hand() {
        let t = toy();
        // gene 3: mean 8/3, sd 1 → z = (2 − 8/3), (6 − 8/3) clipped at √3.
        let mu = [4.0 / 3.0, 0.0, 2.0, 8.0 / 3.0];
        let sd = [0.5, 0.0, 1.0, 1.0];
        let got = clipped_sums(&t.view(), &mu, &sd, 1);
        let v3 = 3f64.sqrt();
        let want = [
            ((1.0 - mu[0]) / 0.5f64).powi(2) + ((3.0 - mu[0]) / 0.5f64).min(v3).powi(2),
            0.0,
            (4.0f64 - 2.0).min(v3).powi(2) + 0.0,
            (2.0 - mu[3]).powi(2) + v3 * v3,
        ];
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        assert_eq!(with_pool(2, || clipped_sums(&t.view(), &mu, &sd, 2)).unwrap(), got);
    }

    #[test]
    fn select_normalized_and_moments_by_hand() {
        let t = toy();
        let totals = vec![5.0, 5.0, 8.0];
        let s = select_normalized(&t.view(), &[0, 3], &totals, Normalize::Cpm).unwrap();
        assert_eq!(s.indptr, vec![0, 1, 3, 4]);
        assert_eq!(s.indices, vec![0, 0, 1, 1]);
        assert_eq!(s.values, vec![1.0 / 5.0 * 1e6, 3.0 / 5.0 * 1e6, 2.0 / 5.0 * 1e6, 6.0 / 8.0 * 1e6]);
        assert_eq!((s.n, s.g), (3, 2));
        // Gene 0 of the selection: CPM (2e5, 6e5, 0).
        let m = gene_moments(&s.view(), 1).unwrap();
        let (a, b) = (2e5f64, 6e5f64);
        let mean = (a + b) / 3.0;
        let sd = (((a - mean).powi(2) + (b - mean).powi(2) + mean * mean) / 2.0).sqrt();
        assert!((m.center[0] - mean).abs() < 1e-9 && (m.scale[0] - sd).abs() < 1e-9);
        assert_eq!(m.constant, vec![false, false]);
        assert_eq!(with_pool(2, || gene_moments(&s.view(), 2)).unwrap().unwrap(), m);
        // A constant gene (the same value in every spot) gets scale 1.
        let c = OwnedCsr { indptr: vec![0, 1, 2], indices: vec![0, 0], values: vec![7.0, 7.0], n: 2, g: 1 };
        let mc = gene_moments(&c.view(), 1).unwrap();
        assert_eq!((mc.center[0], mc.scale[0], mc.constant[0]), (7.0, 1.0, true));
        // Bad selections are input errors.
        assert!(select_normalized(&t.view(), &[3, 0], &totals, Normalize::Cpm).is_err());
        assert!(select_normalized(&t.view(), &[4], &totals, Normalize::Cpm).is_err());
        assert!(select_normalized(&t.view(), &[0], &totals[..2], Normalize::Cpm).is_err());
        // LogNormalize: ln(1 + x / total * 1e4), zeros stay unstored.
        let l = select_normalized(&t.view(), &[0, 3], &totals, Normalize::Log).unwrap();
        assert_eq!((l.indptr.clone(), l.indices.clone()), (s.indptr.clone(), s.indices.clone()));
        let want: Vec<f64> = [(1.0, 5.0), (3.0, 5.0), (2.0, 5.0), (6.0, 8.0)].iter().map(|&(v, t)| (1.0 + v / t * 1e4f64).ln()).collect();
        for (g, w) in l.values.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        assert_eq!(Normalize::parse("log").unwrap(), Normalize::Log);
        assert!(Normalize::parse("LOG").is_err());
        let one = OwnedCsr { indptr: vec![0, 1], indices: vec![0], values: vec![1.0], n: 1, g: 1 };
        assert!(gene_moments(&one.view(), 1).is_err());
    }

    #[test]
    fn finds_value_problems_and_empty_spots() {
        assert_eq!(value_problems(&[0.0, 1.0, 7.0]), ValueProblems::default());
        let p = value_problems(&[1.0, -2.0, 0.5, f64::NAN]);
        assert!(p.non_finite && p.negative && p.non_integer);
        let p = value_problems(&[1.0, f64::INFINITY]);
        assert!(p.non_finite && !p.negative && !p.non_integer);
        assert!(value_problems(&[3.0, -0.5]).negative && value_problems(&[3.0, -0.5]).non_integer);
        // Spot 1 has only a stored zero, spot 3 nothing.
        let x = OwnedCsr { indptr: vec![0, 1, 2, 3, 3], indices: vec![0, 1, 0], values: vec![2.0, 0.0, 1.0], n: 4, g: 2 };
        assert_eq!(empty_spots(&x.view()), vec![1, 3]);
        assert!(empty_spots(&toy().view()).is_empty());
    }

    #[test]
    fn rejects_bad_counts() {
        let mut t = toy();
        assert!(check_counts(&t.view()).is_ok());
        t.values[1] = -1.0;
        assert!(check_counts(&t.view()).is_err());
        t.values[1] = f64::NAN;
        assert!(check_counts(&t.view()).is_err());
        let mut u = toy();
        u.indices[1] = 9;
        assert!(check_counts(&u.view()).is_err());
    }

    #[test]
    fn recipe_pca_matches_pca_sparse_on_the_cpm() {
        // Many spots (more than one fill block), a few genes, 2 components.
        let (n, g) = (5000usize, 12usize);
        let mut rng = crate::rng::SplitMix64::new(4);
        let (mut indptr, mut indices, mut values) = (vec![0i32], vec![], vec![]);
        for _ in 0..n {
            for j in 0..g {
                if rng.next_f64() < 0.3 + 0.05 * j as f64 {
                    indices.push(j as i32);
                    values.push(1.0 + (rng.next_f64() * 10.0).floor());
                }
            }
            // No spot without counts.
            if *indptr.last().unwrap() as usize == indices.len() {
                indices.push(0);
                values.push(1.0);
            }
            indptr.push(indices.len() as i32);
        }
        let x = OwnedCsr { indptr, indices, values, n, g };
        let keep = vec![true; g];
        let totals = spot_totals(&x.view(), &keep);
        let sel = [1usize, 4, 5, 7, 8, 10, 11];
        let r1 = recipe_pca(&x.view(), &sel, &totals, Normalize::Cpm, 2, 9, 1, Device::Cpu, Method::Auto, Scores::R).unwrap();
        let r2 = recipe_pca(&x.view(), &sel, &totals, Normalize::Cpm, 2, 9, 2, Device::Cpu, Method::Auto, Scores::R).unwrap();
        // The same bits for any thread count.
        assert_eq!(r1.moments, r2.moments);
        assert_eq!(r1.pca.scores, r2.pca.scores);
        assert_eq!(r1.pca.loadings, r2.pca.loadings);
        let norm = select_normalized(&x.view(), &sel, &totals, Normalize::Cpm).unwrap();
        let m = gene_moments(&norm.view(), 1).unwrap();
        let scale: Vec<f64> = m.scale.iter().zip(&m.constant).map(|(&s, &c)| if c { 0.0 } else { s }).collect();
        let direct = pca_sparse(&norm.indptr, &norm.indices, &norm.values, n, sel.len(), &m.center, &scale, 2, 9, 1, Device::Cpu, Method::Auto).unwrap();
        assert_eq!(r1.moments, m);
        assert_eq!(r1.pca.scores, direct.scores);
        assert_eq!(r1.pca.sdev, direct.sdev);
    }
}
