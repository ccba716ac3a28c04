//! Spatial label refinement: each spot takes the label most of its graph
//! neighbours hold (GraphST's refinement, a majority vote).
//!
//! Done here rather than as a sparse product in R because at millions of
//! spots the product's n × labels vote matrix, and the copies R makes of the
//! neighbour graph on the way, cost gigabytes; here a spot's votes are
//! counted in a small buffer and the spots run in parallel.

use crate::error::{Result, SedrError};
use crate::graph::SpatialGraph;
use rayon::prelude::*;

/// `rounds` rounds of the vote over `graph` (symmetric, no self loops).
/// `labels` are 0-based codes. In each round every spot looks at its
/// neighbours' labels from the previous round and takes the most frequent
/// one; on a tie for the most votes, and without neighbours, it keeps its
/// own. Rounds stop early once nothing changes. The result does not depend
/// on the order of the spots or on the number of threads.
pub fn majority_vote(graph: &SpatialGraph, labels: &[u32], rounds: usize) -> Result<Vec<u32>> {
    if labels.len() != graph.n() {
        return Err(SedrError::input(
            "labels",
            format!("has {} entries for a graph of {} spots", labels.len(), graph.n()),
        ));
    }
    let (indptr, indices) = (graph.adj.indptr(), graph.adj.indices());
    let mut current = labels.to_vec();
    for _ in 0..rounds {
        let next: Vec<u32> = (0..graph.n())
            .into_par_iter()
            .map_init(Vec::new, |seen, i| {
                seen.clear();
                seen.extend(indices[indptr.outer_inds_sz(i)].iter().map(|&j| current[j]));
                winner(seen).unwrap_or(current[i])
            })
            .collect();
        if next == current {
            break;
        }
        current = next;
    }
    Ok(current)
}

/// The label that occurs strictly more often than any other in `seen`, or
/// None on a tie for the most (or when `seen` is empty). Sorts `seen`.
fn winner(seen: &mut [u32]) -> Option<u32> {
    seen.sort_unstable();
    let (mut best, mut best_count, mut tied) = (None, 0usize, false);
    let mut t = 0;
    while t < seen.len() {
        let run = seen[t..].iter().take_while(|&&l| l == seen[t]).count();
        if run > best_count {
            (best, best_count, tied) = (Some(seen[t]), run, false);
        } else if run == best_count {
            tied = true;
        }
        t += run;
    }
    if tied {
        None
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> SpatialGraph {
        // A CSR pattern of the directed edges; from_pattern symmetrises it.
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(i, j) in edges {
            rows[i].push(j);
        }
        let mut indptr = vec![0];
        let mut indices = Vec::new();
        for r in &mut rows {
            r.sort_unstable();
            indices.extend_from_slice(r);
            indptr.push(indices.len());
        }
        SpatialGraph::from_pattern(n, &indptr, &indices).expect("valid pattern")
    }

    #[test]
    fn a_tie_keeps_the_own_label_and_a_majority_wins() {
        // Spot 0 has neighbours 1-4; 5 has none.
        let g = graph(6, &[(0, 1), (0, 2), (0, 3), (0, 4)]);
        let out = majority_vote(&g, &[2, 0, 0, 1, 1, 1], 1).expect("vote");
        assert_eq!(out[0], 2, "2 votes each for 0 and 1: a tie");
        assert_eq!(out[5], 1, "no neighbours");
        assert_eq!(&out[1..5], &[2, 2, 2, 2], "each has spot 0 as its only neighbour");
        let out = majority_vote(&g, &[2, 0, 0, 1, 0, 1], 1).expect("vote");
        assert_eq!(out[0], 0, "3 votes for 0, 1 for 1");
    }

    #[test]
    fn rounds_stop_when_nothing_changes_and_zero_rounds_is_the_input() {
        // A path 0-1-2-3-4 with one odd label in the middle.
        let g = graph(5, &[(0, 1), (1, 2), (2, 3), (3, 4)]);
        let labels = [0, 0, 1, 0, 0];
        assert_eq!(majority_vote(&g, &labels, 0).expect("vote"), labels);
        assert_eq!(majority_vote(&g, &labels, 5).expect("vote"), vec![0; 5]);
    }

    #[test]
    fn the_same_result_with_any_number_of_threads() {
        let n = 2000;
        let edges: Vec<(usize, usize)> = (0..n).flat_map(|i| [(i, (i * 7 + 3) % n), (i, (i * 13 + 5) % n)]).collect();
        let g = graph(n, &edges);
        let labels: Vec<u32> = (0..n as u32).map(|i| (i * 2654435761u32) >> 30).collect();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        let a = one.install(|| majority_vote(&g, &labels, 3)).expect("vote");
        let b = two.install(|| majority_vote(&g, &labels, 3)).expect("vote");
        assert_eq!(a, b);
    }

    #[test]
    fn labels_of_the_wrong_length_are_an_error() {
        let g = graph(3, &[(0, 1)]);
        assert!(majority_vote(&g, &[0, 1], 1).is_err());
    }
}
