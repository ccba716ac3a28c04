//! Moran's I of genes on the spatial graph, with its z-score under the
//! normality assumption (Cliff & Ord 1981): how much more alike neighbouring
//! spots are in a gene than spots drawn at random. The recipe drops the
//! variable genes whose z-score says they have no spatial pattern, so that
//! the PCA is not spent on genes that are noise at this resolution.
//!
//! With row-normalised weights w_ij = 1 / d_i on the symmetric k-NN graph
//! (d_i the degree of spot i), for one gene x over n spots with mean μ:
//!
//! I = (n / S0) · Σ_ij w_ij (x_i − μ)(x_j − μ) / Σ_i (x_i − μ)²
//!
//! The numerator expands into sums over the stored entries only,
//! A − μ (R + C) + μ² S0 with A = Σ_ij w_ij x_i x_j, R = Σ_i r_i x_i and
//! C = Σ_j c_j x_j (r and c the row and column sums of W), so the counts
//! stay sparse; A is accumulated once per edge, over the genes two
//! neighbouring spots share.

use crate::error::{Result, SedrError};
use crate::graph::SpatialGraph;
use crate::pca::{RowBuf, Rows};
use rayon::prelude::*;

/// Moran's I of every gene (column of the spots × genes rows) and its
/// z-score. A gene without variance has I = 0 and z = 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Moran {
    pub i: Vec<f64>,
    pub z: Vec<f64>,
}

/// Spots per block of the accumulation. The blocks are fixed by the spots,
/// not by the threads, and summed in order, so the result does not depend
/// on the thread count.
const BLOCK: usize = 512;
/// Blocks accumulated at a time: bounds the per-block sums held at once.
const WAVE: usize = 64;

/// Per gene: Σx, Σx², Σ c_j x_j, Σ r_i x_i and A (see the module docs).
type Sums = [f64; 5];

/// Moran's I and its z-score of every column of `x` on `graph` (one node
/// per row of `x`; symmetric, no self loops, as [`SpatialGraph`] makes it).
pub fn moran<R: Rows>(x: &R, graph: &SpatialGraph) -> Result<Moran> {
    let n = x.n_rows();
    let g = x.n_cols();
    if graph.n() != n {
        return Err(SedrError::input("graph", format!("has {} spots, the counts {n}", graph.n())));
    }
    if n < 3 {
        return Err(SedrError::input("object", "needs at least 3 spots for Moran's I"));
    }
    let deg: Vec<f64> = graph.degrees().iter().map(|&d| d as f64).collect();
    let mut col_w = vec![0.0; n];
    let (mut s0, mut s1) = (0.0, 0.0);
    for (i, row) in graph.adj.outer_iterator().enumerate() {
        for (j, _) in row.iter() {
            col_w[j] += 1.0 / deg[i];
            // ½ Σ over ordered pairs = Σ over edges i < j.
            if i < j {
                s1 += (1.0 / deg[i] + 1.0 / deg[j]).powi(2);
            }
        }
        if deg[i] > 0.0 {
            s0 += 1.0;
        }
    }
    if s0 == 0.0 {
        return Err(SedrError::input("graph", "has no edges; Moran's I needs neighbouring spots"));
    }
    let s2: f64 = (0..n).map(|i| ((deg[i] > 0.0) as u8 as f64 + col_w[i]).powi(2)).sum();

    let blocks = n.div_ceil(BLOCK);
    let mut sums: Vec<Sums> = vec![[0.0; 5]; g];
    for wave in (0..blocks).step_by(WAVE) {
        let parts: Vec<Vec<Sums>> = (wave..(wave + WAVE).min(blocks))
            .into_par_iter()
            .map(|b| block_sums(x, graph, &deg, &col_w, b * BLOCK..((b + 1) * BLOCK).min(n)))
            .collect();
        for part in &parts {
            for (s, p) in sums.iter_mut().zip(part) {
                for k in 0..5 {
                    s[k] += p[k];
                }
            }
        }
    }

    let nf = n as f64;
    let expected = -1.0 / (nf - 1.0);
    let var = (nf * nf * s1 - nf * s2 + 3.0 * s0 * s0) / (s0 * s0 * (nf * nf - 1.0)) - expected * expected;
    let (mut i_out, mut z_out) = (Vec::with_capacity(g), Vec::with_capacity(g));
    for s in &sums {
        let mu = s[0] / nf;
        let den = s[1] - nf * mu * mu;
        let num = s[4] - mu * (s[3] + s[2]) + mu * mu * s0;
        // A constant gene (no variance beyond rounding) has no pattern.
        let varies = den > 0.0 && den > 1e-12 * s[1];
        let i = if varies { nf / s0 * num / den } else { 0.0 };
        let z = if varies && var > 0.0 { (i - expected) / var.sqrt() } else { 0.0 };
        i_out.push(i);
        z_out.push(z);
    }
    Ok(Moran { i: i_out, z: z_out })
}

/// The [`Sums`] of the spots in `spots`. A is taken once per edge, from its
/// lower-numbered end: x_i x_j (w_ij + w_ji), over the genes both spots store.
fn block_sums<R: Rows>(x: &R, graph: &SpatialGraph, deg: &[f64], col_w: &[f64], spots: std::ops::Range<usize>) -> Vec<Sums> {
    let mut acc: Vec<Sums> = vec![[0.0; 5]; x.n_cols()];
    let (mut buf_i, mut buf_j) = (RowBuf::default(), RowBuf::default());
    for i in spots {
        let (ci, vi) = x.row_into(i, &mut buf_i);
        let r_i = (deg[i] > 0.0) as u8 as f64;
        for (&c, &v) in ci.iter().zip(vi) {
            let a = &mut acc[c as usize];
            a[0] += v;
            a[1] += v * v;
            a[2] += col_w[i] * v;
            a[3] += r_i * v;
        }
        let Some(row) = graph.adj.outer_view(i) else { continue };
        for (j, _) in row.iter().filter(|&(j, _)| j > i) {
            let w = 1.0 / deg[i] + 1.0 / deg[j];
            let (cj, vj) = x.row_into(j, &mut buf_j);
            // Both column lists are strictly increasing: merge them.
            let (mut p, mut q) = (0, 0);
            while p < ci.len() && q < cj.len() {
                match ci[p].cmp(&cj[q]) {
                    std::cmp::Ordering::Less => p += 1,
                    std::cmp::Ordering::Greater => q += 1,
                    std::cmp::Ordering::Equal => {
                        acc[ci[p] as usize][4] += w * vi[p] * vj[q];
                        p += 1;
                        q += 1;
                    }
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::with_pool;
    use crate::pca::Csr;

    /// A symmetric random graph on `n` nodes (about `k` edges per node, no
    /// self loops) as CSR slots, and a spots × genes matrix with `density`
    /// stored entries, both from a fixed LCG.
    fn fixture(n: usize, g: usize, k: usize, density: f64, seed: u64) -> (SpatialGraph, Vec<i32>, Vec<i32>, Vec<f64>) {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut nb: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..n {
            for _ in 0..k / 2 {
                let j = (next() * n as f64) as usize % n;
                if j != i {
                    nb[i].push(j);
                }
            }
        }
        let mut p = vec![0usize];
        let mut idx = Vec::new();
        for l in &nb {
            idx.extend(l);
            p.push(idx.len());
        }
        let graph = SpatialGraph::from_pattern(n, &p, &idx).unwrap();
        let (mut xp, mut xi, mut xv) = (vec![0i32], Vec::new(), Vec::new());
        for _ in 0..n {
            for j in 0..g {
                if next() < density {
                    xi.push(j as i32);
                    xv.push((next() * 10.0).floor() + 1.0);
                }
            }
            xp.push(xi.len() as i32);
        }
        (graph, xp, xi, xv)
    }

    /// Moran's I and its normality z-score from their textbook definitions,
    /// on dense vectors and the dense weight matrix.
    fn brute(x: &Csr, graph: &SpatialGraph) -> Moran {
        let (n, g) = (x.n, x.g);
        let deg = graph.degrees();
        let mut w = vec![vec![0.0; n]; n];
        for (i, row) in graph.adj.outer_iterator().enumerate() {
            for (j, _) in row.iter() {
                w[i][j] = 1.0 / deg[i] as f64;
            }
        }
        let s0: f64 = w.iter().flatten().sum();
        let s1: f64 = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| (w[i][j] + w[j][i]).powi(2)).sum::<f64>() / 2.0;
        let s2: f64 = (0..n).map(|i| (w[i].iter().sum::<f64>() + (0..n).map(|k| w[k][i]).sum::<f64>()).powi(2)).sum();
        let nf = n as f64;
        let e = -1.0 / (nf - 1.0);
        let var = (nf * nf * s1 - nf * s2 + 3.0 * s0 * s0) / (s0 * s0 * (nf * nf - 1.0)) - e * e;
        let mut dense = vec![vec![0.0; g]; n];
        for i in 0..n {
            let (c, v) = x.row(i);
            for (&j, &val) in c.iter().zip(v) {
                dense[i][j as usize] = val;
            }
        }
        let (mut is, mut zs) = (Vec::new(), Vec::new());
        for gene in 0..g {
            let mu = (0..n).map(|i| dense[i][gene]).sum::<f64>() / nf;
            let d: Vec<f64> = (0..n).map(|i| dense[i][gene] - mu).collect();
            let num: f64 = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| w[i][j] * d[i] * d[j]).sum();
            let den: f64 = d.iter().map(|v| v * v).sum();
            let i = nf / s0 * num / den;
            is.push(i);
            zs.push((i - e) / var.sqrt());
        }
        Moran { i: is, z: zs }
    }

    #[test]
    fn matches_the_definition_on_a_random_graph() {
        // More spots than one block, so the blocks' sums are combined.
        let (graph, p, i, x) = fixture(1100, 7, 6, 0.3, 3);
        let csr = Csr { indptr: &p, indices: &i, values: &x, n: 1100, g: 7 };
        let fast = moran(&csr, &graph).unwrap();
        let slow = brute(&csr, &graph);
        for k in 0..7 {
            assert!((fast.i[k] - slow.i[k]).abs() < 1e-10, "I of gene {k}: {} vs {}", fast.i[k], slow.i[k]);
            assert!((fast.z[k] - slow.z[k]).abs() < 1e-7, "z of gene {k}: {} vs {}", fast.z[k], slow.z[k]);
        }
    }

    #[test]
    fn a_smooth_gene_scores_high_and_noise_does_not() {
        // A 30 x 30 lattice, 4-neighbour graph; gene 0 follows x, gene 1 is
        // a fixed pseudo-random pattern, gene 2 is constant.
        let side = 30;
        let n = side * side;
        let mut p = vec![0usize];
        let mut idx = Vec::new();
        for r in 0..side {
            for c in 0..side {
                if r > 0 { idx.push((r - 1) * side + c); }
                if c > 0 { idx.push(r * side + c - 1); }
                if c + 1 < side { idx.push(r * side + c + 1); }
                if r + 1 < side { idx.push((r + 1) * side + c); }
                p.push(idx.len());
            }
        }
        let graph = SpatialGraph::from_pattern(n, &p, &idx).unwrap();
        let (mut xp, mut xi, mut xv) = (vec![0i32], Vec::new(), Vec::new());
        let mut s = 11u64;
        for spot in 0..n {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            xi.extend([0, 1, 2]);
            xv.extend([(spot % side) as f64 + 1.0, ((s >> 40) % 7) as f64, 5.0]);
            xp.push(xi.len() as i32);
        }
        let csr = Csr { indptr: &xp, indices: &xi, values: &xv, n, g: 3 };
        let m = moran(&csr, &graph).unwrap();
        assert!(m.i[0] > 0.9 && m.z[0] > 20.0, "smooth gene: I {}, z {}", m.i[0], m.z[0]);
        assert!(m.z[1].abs() < 3.0, "noise gene: z {}", m.z[1]);
        assert_eq!((m.i[2], m.z[2]), (0.0, 0.0));
    }

    #[test]
    fn the_thread_count_does_not_change_a_bit() {
        let (graph, p, i, x) = fixture(3000, 20, 8, 0.2, 9);
        let csr = Csr { indptr: &p, indices: &i, values: &x, n: 3000, g: 20 };
        let one = with_pool(1, || moran(&csr, &graph)).unwrap().unwrap();
        let two = with_pool(2, || moran(&csr, &graph)).unwrap().unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn refuses_a_graph_of_other_spots_or_without_edges() {
        let (graph, p, i, x) = fixture(50, 4, 4, 0.5, 1);
        let csr = Csr { indptr: &p[..41], indices: &i, values: &x, n: 40, g: 4 };
        assert!(moran(&csr, &graph).is_err());
        let empty = SpatialGraph::from_pattern(50, &vec![0usize; 51], &[]).unwrap();
        let full = Csr { indptr: &p, indices: &i, values: &x, n: 50, g: 4 };
        let err = moran(&full, &empty).unwrap_err().to_string();
        assert!(err.contains("no edges"), "{err}");
    }
}
