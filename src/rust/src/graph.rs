//! Spatial neighbour graphs without any dense n×n object.
//!
//! The reference builds a dense distance matrix and a dense adjacency
//! (80 GB at 100k spots); here each spot queries a k-d tree (kiddo), queries
//! run in parallel (rayon) and the result is a CSR matrix (sprs).

use crate::error::{Result, SedrError};
use kiddo::{ImmutableKdTree, SquaredEuclidean};
use rayon::prelude::*;
use sprs::{CsMat, TriMat};
use std::num::NonZeroUsize;

/// How neighbours are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Neighbours {
    /// The k nearest other spots (ties at the k-th distance go to the lower index).
    Knn(usize),
    /// Every other spot at Euclidean distance strictly below the radius.
    Radius(f64),
}

/// A symmetric adjacency A (no self loops, values 1) over `n` spots.
#[derive(Clone, Debug)]
pub struct SpatialGraph {
    pub adj: CsMat<f64>,
}

/// Coordinates: `n` points of dimension `dim` (2 or 3), row-major.
pub struct Coords<'a> {
    pub data: &'a [f64],
    pub dim: usize,
}

impl Coords<'_> {
    pub fn n(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }
    fn point<const D: usize>(&self, i: usize) -> [f64; D] {
        let mut p = [0.0; D];
        p.copy_from_slice(&self.data[i * D..(i + 1) * D]);
        p
    }
}

fn validate(coords: &Coords, groups: Option<&[i32]>, how: Neighbours) -> Result<()> {
    if coords.dim != 2 && coords.dim != 3 {
        return Err(SedrError::input(
            "coords",
            format!("must have 2 or 3 columns (x, y[, z]); got {}", coords.dim),
        ));
    }
    if !coords.data.len().is_multiple_of(coords.dim) {
        return Err(SedrError::input("coords", "length is not a multiple of its dimension"));
    }
    if coords.n() == 0 {
        return Err(SedrError::input("coords", "has no spots"));
    }
    if let Some(i) = coords.data.iter().position(|v| !v.is_finite()) {
        return Err(SedrError::input(
            "coords",
            format!("contains a non-finite value (NA, NaN or Inf) in spot {}; remove or fix it", i / coords.dim + 1),
        ));
    }
    if let Some(g) = groups {
        if g.len() != coords.n() {
            return Err(SedrError::input(
                "group",
                format!("has length {} but there are {} spots", g.len(), coords.n()),
            ));
        }
    }
    match how {
        Neighbours::Knn(0) => Err(SedrError::input("k", "must be at least 1")),
        Neighbours::Radius(r) if !(r.is_finite() && r > 0.0) => {
            Err(SedrError::input("radius", "must be a positive finite number"))
        }
        _ => Ok(()),
    }
}

/// The indices of each section (in first-appearance order), or one section of all spots.
fn sections(n: usize, groups: Option<&[i32]>) -> Vec<Vec<usize>> {
    match groups {
        None => vec![(0..n).collect()],
        Some(g) => {
            let mut order: Vec<i32> = Vec::new();
            let mut members: std::collections::HashMap<i32, Vec<usize>> = Default::default();
            for (i, &gi) in g.iter().enumerate() {
                members
                    .entry(gi)
                    .or_insert_with(|| {
                        order.push(gi);
                        Vec::new()
                    })
                    .push(i);
            }
            order.into_iter().map(|gi| members.remove(&gi).unwrap_or_default()).collect()
        }
    }
}

/// Neighbour lists (global indices, self excluded) of the spots of one section.
fn section_neighbours<const D: usize>(
    coords: &Coords,
    idx: &[usize],
    how: Neighbours,
) -> Result<Vec<Vec<usize>>> {
    let pts: Vec<[f64; D]> = idx.iter().map(|&i| coords.point::<D>(i)).collect();
    if let Neighbours::Knn(k) = how {
        if pts.len() < k + 1 {
            return Err(SedrError::input(
                "k",
                format!(
                    "a section has {} spots, fewer than k + 1 = {}; lower k or merge small sections",
                    pts.len(),
                    k + 1
                ),
            ));
        }
    }
    let tree: ImmutableKdTree<f64, D> = ImmutableKdTree::new_from_slice(&pts)
        .map_err(|e| SedrError::Internal(format!("k-d tree construction failed: {e:?}")))?;
    let lists = (0..pts.len())
        .into_par_iter()
        .map(|local| {
            let q = &pts[local];
            // Candidates with (squared distance, local index); sorted so that
            // ties are broken by index and the result never depends on the tree.
            let mut cand: Vec<(f64, usize)> = match how {
                Neighbours::Knn(k) => {
                    // The (k+1)-th nearest distance (self or a duplicate of it
                    // included) bounds the k-th neighbour; take everything within
                    // it so that ties at the boundary are all seen.
                    let m = NonZeroUsize::new(k + 1).unwrap_or(NonZeroUsize::MIN);
                    let near = tree.query(q).nearest_n::<SquaredEuclidean<f64>>(m).execute();
                    let bound = near.iter().map(|r| r.distance).fold(0.0, f64::max);
                    tree.query(q)
                        .within::<SquaredEuclidean<f64>>(bound)
                        .unsorted()
                        .execute()
                        .into_iter()
                        .map(|r| (r.distance, r.item as usize))
                        .collect()
                }
                Neighbours::Radius(r) => tree
                    .query(q)
                    .within::<SquaredEuclidean<f64>>(r * r)
                    .exclusive_boundaries()
                    .unsorted()
                    .execute()
                    .into_iter()
                    .map(|r| (r.distance, r.item as usize))
                    .collect(),
            };
            cand.retain(|&(_, j)| j != local);
            cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            if let Neighbours::Knn(k) = how {
                cand.truncate(k);
            }
            // A new vector of the exact length: collecting from `cand` would
            // keep its larger buffer for every spot (gigabytes at millions).
            let mut list = Vec::with_capacity(cand.len());
            list.extend(cand.iter().map(|&(_, j)| idx[j]));
            list
        })
        .collect();
    Ok(lists)
}

/// Builds the union-symmetrised neighbour graph. With `groups`, spots of
/// different groups (sections) are never connected: the graph is block diagonal.
pub fn build_graph(coords: &Coords, groups: Option<&[i32]>, how: Neighbours) -> Result<SpatialGraph> {
    validate(coords, groups, how)?;
    let n = coords.n();
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); n];
    for idx in sections(n, groups) {
        let nb = match coords.dim {
            2 => section_neighbours::<2>(coords, &idx, how)?,
            _ => section_neighbours::<3>(coords, &idx, how)?,
        };
        for (local, l) in nb.into_iter().enumerate() {
            lists[idx[local]] = l;
        }
    }
    Ok(SpatialGraph { adj: symmetrise(n, &lists) })
}

/// A ∪ Aᵀ with unit weights, sorted indices, no duplicates.
fn symmetrise(n: usize, lists: &[Vec<usize>]) -> CsMat<f64> {
    symmetrise_rows(n, |i| lists[i].iter().copied())
}

/// [`symmetrise`] of the rows `row(i)` (self loops dropped), in one flat
/// buffer: each row's entries are counted, placed, sorted and deduplicated
/// in place. At millions of spots a vector per row (and a second set of
/// them for the transpose) cost several times the graph itself.
fn symmetrise_rows<I: Iterator<Item = usize>>(n: usize, row: impl Fn(usize) -> I) -> CsMat<f64> {
    let mut start = vec![0usize; n + 1];
    for i in 0..n {
        for j in row(i).filter(|&j| j != i) {
            start[i + 1] += 1;
            start[j + 1] += 1;
        }
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut buf = vec![0usize; start[n]];
    let mut next = start.clone();
    for i in 0..n {
        for j in row(i).filter(|&j| j != i) {
            buf[next[i]] = j;
            next[i] += 1;
            buf[next[j]] = i;
            next[j] += 1;
        }
    }
    drop(next);
    // Sort and deduplicate each row, moving it to the front of the buffer.
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0usize);
    let mut len = 0;
    for i in 0..n {
        let r = &mut buf[start[i]..start[i + 1]];
        r.sort_unstable();
        let mut kept = 0;
        for t in 0..r.len() {
            if t == 0 || r[t] != r[kept - 1] {
                r[kept] = r[t];
                kept += 1;
            }
        }
        buf.copy_within(start[i]..start[i] + kept, len);
        len += kept;
        indptr.push(len);
    }
    buf.truncate(len);
    buf.shrink_to_fit();
    let data = vec![1.0; len];
    CsMat::new((n, n), indptr, buf, data)
}

impl SpatialGraph {

    /// A graph from a CSR (or, being symmetric, CSC) pattern handed in by the
    /// caller. The pattern is checked, self loops are dropped and the result
    /// is union-symmetrised, so any user-supplied adjacency becomes valid A.
    pub fn from_pattern(n: usize, indptr: &[usize], indices: &[usize]) -> Result<SpatialGraph> {
        Self::from_slots(n, indptr, indices)
    }

    /// [`SpatialGraph::from_pattern`] of R's slots as they are (0-based
    /// `i32`; negative ones refused), without a converted copy of them.
    pub fn from_slots<T: Copy + TryInto<usize>>(n: usize, indptr: &[T], indices: &[T]) -> Result<SpatialGraph> {
        let bad = |m: &str| Err(SedrError::input("graph", format!("{m}; pass the output of BuildSpatialGraph()")));
        let ix = |v: T| v.try_into().ok();
        if indptr.len() != n + 1 || ix(indptr[0]) != Some(0) || ix(indptr[n]) != Some(indices.len()) {
            return bad("the sparse pattern does not match the number of spots");
        }
        if indptr.iter().any(|&v| ix(v).is_none()) || indptr.windows(2).any(|w| ix(w[0]) > ix(w[1])) {
            return bad("the column pointers are not monotone");
        }
        if indices.iter().any(|&j| ix(j).is_none_or(|j| j >= n)) {
            return bad("a neighbour index is out of range");
        }
        // Checked above: every value converts.
        let at = |v: T| ix(v).unwrap_or(0);
        Ok(SpatialGraph { adj: symmetrise_rows(n, |i| indices[at(indptr[i])..at(indptr[i + 1])].iter().map(move |&j| at(j))) })
    }

    pub fn n(&self) -> usize {
        self.adj.rows()
    }

    /// Degree of each spot in A (self excluded).
    pub fn degrees(&self) -> Vec<usize> {
        self.adj.outer_iterator().map(|r| r.nnz()).collect()
    }

    /// The edge-reconstruction target A + I as (row, col) pairs in CSR order.
    pub fn target_pairs(&self) -> (Vec<i64>, Vec<i64>) {
        let mut rows = Vec::with_capacity(self.adj.nnz() + self.n());
        let mut cols = Vec::with_capacity(self.adj.nnz() + self.n());
        for (i, r) in self.adj.outer_iterator().enumerate() {
            let mut self_done = false;
            for (j, _) in r.iter() {
                if !self_done && j > i {
                    rows.push(i as i64);
                    cols.push(i as i64);
                    self_done = true;
                }
                rows.push(i as i64);
                cols.push(j as i64);
            }
            if !self_done {
                rows.push(i as i64);
                cols.push(i as i64);
            }
        }
        (rows, cols)
    }

    /// The symmetric GCN operator D^-1/2 (A+I) D^-1/2 (D = row sums of A+I)
    /// as CSR with the same pattern as [`Self::target_pairs`].
    pub fn gcn_operator(&self) -> CsMat<f64> {
        let deg: Vec<f64> = self.degrees().iter().map(|&d| d as f64 + 1.0).collect();
        let (rows, cols) = self.target_pairs();
        let mut tri = TriMat::with_capacity((self.n(), self.n()), rows.len());
        for (&i, &j) in rows.iter().zip(&cols) {
            let (i, j) = (i as usize, j as usize);
            tri.add_triplet(i, j, 1.0 / (deg[i] * deg[j]).sqrt());
        }
        tri.to_csr()
    }

    /// Kipf's GAE normalisation n² / (2 (n² − nnz(A+I))).
    pub fn gae_norm(&self) -> f64 {
        let n = self.n() as f64;
        let nnz = (self.adj.nnz() + self.n()) as f64;
        if n * n <= nnz {
            return 1.0;
        }
        n * n / (2.0 * (n * n - nnz))
    }
}

#[cfg(test)]
mod tests;
