//! Mini-batches for large tissues, cluster-GCN style: the graph is cut once
//! into spatially compact parts; each training step takes a random set of
//! parts (about `batch_size` spots) and trains on the subgraph they induce.
//! Parts are small relative to a batch so a batch mixes regions of the whole
//! tissue (its BatchNorm statistics stay close to the full batch's), yet
//! large enough that most of a spot's neighbours sit in its own part.

use crate::graph::SpatialGraph;
use crate::rng::SplitMix64;
use sprs::CsMat;
use std::collections::VecDeque;

/// Parts per batch: more mixes the tissue better, fewer keeps more edges.
pub const PARTS_PER_BATCH: usize = 8;
/// Smallest part: below this most spots lose neighbours at the part's edge.
pub const MIN_PART: usize = 128;

/// Cuts the graph into connected parts of at most `target` spots by growing
/// breadth-first regions from seeds taken in a random order. On a spatial
/// k-NN graph a BFS ball is a compact patch of tissue. Every spot lands in
/// exactly one part; parts at the edge of the tissue or between earlier
/// parts can be smaller than `target`. O(n + nnz).
pub fn grow_parts(adj: &CsMat<f64>, target: usize, rng: &mut SplitMix64) -> Vec<Vec<u32>> {
    let n = adj.rows();
    let target = target.max(1);
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut assigned = vec![false; n];
    let mut parts = Vec::new();
    let mut queue = VecDeque::new();
    for &seed in &order {
        if assigned[seed as usize] {
            continue;
        }
        let mut part = Vec::with_capacity(target);
        assigned[seed as usize] = true;
        queue.clear();
        queue.push_back(seed);
        while let Some(i) = queue.pop_front() {
            part.push(i);
            if part.len() + queue.len() >= target {
                // Spots already queued are taken too (they are claimed).
                part.extend(queue.drain(..));
                break;
            }
            if let Some(row) = adj.outer_view(i as usize) {
                for (j, _) in row.iter() {
                    if !assigned[j] && part.len() + queue.len() < target {
                        assigned[j] = true;
                        queue.push_back(j as u32);
                    }
                }
            }
        }
        parts.push(part);
    }
    parts
}

/// Hands out batches: the parts in a random order, grouped until a batch
/// holds at least `batch_size` spots; a new order once all were used.
#[derive(Debug)]
pub struct Batcher {
    parts: Vec<Vec<u32>>,
    batch_size: usize,
    order: Vec<usize>,
    next: usize,
    rng: SplitMix64,
}

impl Batcher {
    pub fn new(graph: &SpatialGraph, batch_size: usize, seed: u64) -> Batcher {
        let mut rng = SplitMix64::new(seed);
        let part_size = (batch_size / PARTS_PER_BATCH).max(MIN_PART);
        let parts = grow_parts(&graph.adj, part_size, &mut rng);
        Batcher { order: Vec::new(), next: 0, parts, batch_size: batch_size.max(1), rng }
    }

    pub fn n_parts(&self) -> usize {
        self.parts.len()
    }

    /// The spots of the next batch, sorted ascending.
    pub fn next_batch(&mut self) -> Vec<u32> {
        let mut nodes: Vec<u32> = Vec::with_capacity(self.batch_size + self.batch_size / 4);
        let mut taken: Vec<usize> = Vec::new();
        while nodes.len() < self.batch_size && taken.len() < self.parts.len() {
            if self.next >= self.order.len() {
                self.order = (0..self.parts.len()).collect();
                for i in (1..self.order.len()).rev() {
                    let j = self.rng.below(i + 1);
                    self.order.swap(i, j);
                }
                self.next = 0;
            }
            let p = self.order[self.next];
            self.next += 1;
            // A round that ends inside a batch: the next round's parts
            // already in this batch are skipped (they come again later).
            if !taken.contains(&p) {
                taken.push(p);
                nodes.extend_from_slice(&self.parts[p]);
            }
        }
        nodes.sort_unstable();
        nodes
    }
}

/// The subgraph induced by `nodes` (sorted ascending, distinct), with spots
/// renumbered 0..nodes.len() in that order. `local` is scratch of length n
/// filled with `u32::MAX`, and is left that way.
pub fn induced(graph: &SpatialGraph, nodes: &[u32], local: &mut [u32]) -> SpatialGraph {
    for (k, &i) in nodes.iter().enumerate() {
        local[i as usize] = k as u32;
    }
    let mut indptr = Vec::with_capacity(nodes.len() + 1);
    indptr.push(0usize);
    let mut indices = Vec::new();
    for &i in nodes {
        if let Some(row) = graph.adj.outer_view(i as usize) {
            // Renumbering is monotone, so each row stays sorted.
            indices.extend(row.iter().filter_map(|(j, _)| (local[j] != u32::MAX).then_some(local[j] as usize)));
        }
        indptr.push(indices.len());
    }
    for &i in nodes {
        local[i as usize] = u32::MAX;
    }
    let data = vec![1.0; indices.len()];
    let m = nodes.len();
    SpatialGraph { adj: CsMat::new((m, m), indptr, indices, data) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{build_graph, Coords, Neighbours};

    fn grid(rows: usize, cols: usize, k: usize) -> SpatialGraph {
        let coords: Vec<f64> = (0..rows * cols).flat_map(|i| [(i % cols) as f64, (i / cols) as f64]).collect();
        build_graph(&Coords { data: &coords, dim: 2 }, None, Neighbours::Knn(k)).unwrap()
    }

    #[test]
    fn parts_cover_every_spot_once_and_respect_the_size() {
        let g = grid(60, 50, 6);
        let parts = grow_parts(&g.adj, 200, &mut SplitMix64::new(3));
        let mut seen = vec![0u8; g.n()];
        for p in &parts {
            assert!(!p.is_empty() && p.len() <= 200);
            for &i in p {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        // Compact patches: most edges stay inside a part.
        let mut part_of = vec![0usize; g.n()];
        for (k, p) in parts.iter().enumerate() {
            for &i in p {
                part_of[i as usize] = k;
            }
        }
        let inside = g.adj.iter().filter(|(_, (i, j))| part_of[*i] == part_of[*j]).count();
        let share = inside as f64 / g.adj.nnz() as f64;
        assert!(share > 0.75, "only {share:.2} of edges inside parts");
        // Mostly full-size parts (not a dust of fragments).
        let big = parts.iter().filter(|p| p.len() >= 100).map(Vec::len).sum::<usize>();
        assert!(big as f64 > 0.8 * g.n() as f64, "{big}");
    }

    #[test]
    fn batches_have_the_requested_size_and_cycle_through_all_spots() {
        let g = grid(40, 40, 6);
        let mut b = Batcher::new(&g, 400, 9);
        let mut count = vec![0usize; g.n()];
        let mut total = 0;
        for _ in 0..8 {
            let nodes = b.next_batch();
            assert!(nodes.len() >= 400 && nodes.windows(2).all(|w| w[0] < w[1]));
            total += nodes.len();
            for &i in &nodes {
                count[i as usize] += 1;
            }
        }
        // After ≥ 2 rounds' worth of spots every spot was visited.
        assert!(total >= 2 * g.n());
        assert!(count.iter().all(|&c| c >= 1));
        // Same seed, same batches.
        let (mut a, mut c) = (Batcher::new(&g, 400, 9), Batcher::new(&g, 400, 9));
        assert_eq!(a.next_batch(), c.next_batch());
    }

    #[test]
    fn induced_subgraph_keeps_exactly_the_inner_edges() {
        let g = grid(20, 20, 6);
        let nodes: Vec<u32> = (0..g.n() as u32).filter(|i| i % 3 != 0).collect();
        let mut local = vec![u32::MAX; g.n()];
        let s = induced(&g, &nodes, &mut local);
        assert!(local.iter().all(|&v| v == u32::MAX));
        assert_eq!(s.n(), nodes.len());
        let expected = g.adj.iter().filter(|(_, (i, j))| i % 3 != 0 && j % 3 != 0).count();
        assert_eq!(s.adj.nnz(), expected);
        for (_, (a, b)) in s.adj.iter() {
            let (ga, gb) = (nodes[a] as usize, nodes[b] as usize);
            assert!(g.adj.get(ga, gb).is_some());
            assert!(s.adj.get(b, a).is_some(), "not symmetric");
        }
    }
}
