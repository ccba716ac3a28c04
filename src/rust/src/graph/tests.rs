use super::*;
use crate::rng::SplitMix64;

/// A Visium-like hexagonal lattice: odd rows shifted by half a spacing.
fn hex(rows: usize, cols: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            v.push(c as f64 + 0.5 * (r % 2) as f64);
            v.push(r as f64 * 3f64.sqrt() / 2.0);
        }
    }
    v
}

fn knn(data: &[f64], dim: usize, k: usize, groups: Option<&[i32]>) -> SpatialGraph {
    build_graph(&Coords { data, dim }, groups, Neighbours::Knn(k)).expect("valid input")
}

#[test]
fn hex_interior_spots_have_six_neighbours_at_k6() {
    let (rows, cols) = (12, 14);
    let g = knn(&hex(rows, cols), 2, 6, None);
    let deg = g.degrees();
    // Spots three or more rows/columns from the border: no boundary spot's
    // longer edges (added by the union symmetrisation) reach them.
    for r in 3..rows - 3 {
        for c in 3..cols - 3 {
            assert_eq!(deg[r * cols + c], 6, "spot ({r},{c})");
        }
    }
    assert!(deg.iter().all(|&d| d >= 6));
}

#[test]
fn graph_is_symmetric_without_self_loops() {
    let g = knn(&hex(7, 8), 2, 4, None);
    let dense = g.adj.to_dense();
    for i in 0..g.n() {
        assert_eq!(dense[[i, i]], 0.0);
        for j in 0..g.n() {
            assert_eq!(dense[[i, j]], dense[[j, i]]);
        }
    }
}

#[test]
fn operator_rows_sum_to_one_on_a_regular_graph() {
    // A ring is 2-regular: D^-1/2 (A+I) D^-1/2 = (A+I)/3, rows sum to 1.
    let n = 12;
    let data: Vec<f64> = (0..n)
        .flat_map(|i| {
            let t = i as f64 / n as f64 * std::f64::consts::TAU;
            [t.cos(), t.sin()]
        })
        .collect();
    let g = knn(&data, 2, 2, None);
    let op = g.gcn_operator();
    for r in op.outer_iterator() {
        assert_eq!(r.nnz(), 3);
        let s: f64 = r.iter().map(|(_, v)| v).sum();
        assert!((s - 1.0).abs() < 1e-12);
    }
    let (rows, cols) = g.target_pairs();
    assert_eq!(rows.len(), 3 * n);
    assert!(rows.iter().zip(&cols).filter(|(a, b)| a == b).count() == n);
    assert!((g.gae_norm() - (144.0 / (2.0 * (144.0 - 36.0)))).abs() < 1e-12);
}

#[test]
fn groups_give_a_block_diagonal_graph() {
    let data = hex(6, 6);
    let n = data.len() / 2;
    // Interleaved sections on top of each other: only the group separates them.
    let groups: Vec<i32> = (0..n).map(|i| (i % 2) as i32).collect();
    let g = knn(&data, 2, 3, Some(&groups));
    for (i, r) in g.adj.outer_iterator().enumerate() {
        for (j, _) in r.iter() {
            assert_eq!(groups[i], groups[j]);
        }
    }
}

#[test]
fn duplicate_points_and_ties_are_deterministic() {
    // Four copies of one point plus a square around it: ties everywhere.
    let mut data = vec![0.0; 8];
    data.extend_from_slice(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0]);
    let a = knn(&data, 2, 3, None);
    let b = knn(&data, 2, 3, None);
    assert_eq!(a.adj, b.adj);
    // Spot 0's three nearest are its copies 1, 2, 3 (distance 0).
    let r0: Vec<usize> = a.adj.outer_view(0).unwrap().indices().to_vec();
    assert!([1, 2, 3].iter().all(|j| r0.contains(j)));
    // Spot 4 (1,0): ties at distance 1 among copies 0..3 -> lowest indices 0,1,2.
    let r4: Vec<usize> = a.adj.outer_view(4).unwrap().indices().to_vec();
    assert!([0, 1, 2].iter().all(|j| r4.contains(j)));
    assert!(!r4.contains(&3) || a.adj.outer_view(3).unwrap().indices().contains(&4));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let d = hex(3, 3);
    let c = Coords { data: &d, dim: 2 };
    assert!(matches!(build_graph(&c, None, Neighbours::Knn(0)), Err(SedrError::Input { .. })));
    assert!(build_graph(&c, None, Neighbours::Knn(9)).is_err());
    assert!(build_graph(&c, Some(&[0, 1]), Neighbours::Knn(2)).is_err());
    assert!(build_graph(&c, None, Neighbours::Radius(-1.0)).is_err());
    assert!(build_graph(&Coords { data: &d, dim: 1 }, None, Neighbours::Knn(2)).is_err());
    let mut bad = d.clone();
    bad[3] = f64::NAN;
    assert!(build_graph(&Coords { data: &bad, dim: 2 }, None, Neighbours::Knn(2)).is_err());
    assert!(build_graph(&Coords { data: &[], dim: 2 }, None, Neighbours::Knn(2)).is_err());
}

/// Brute force: sort all others by (distance, index), keep k, symmetrise.
fn brute(data: &[f64], dim: usize, how: Neighbours) -> Vec<Vec<usize>> {
    let n = data.len() / dim;
    let d2 = |i: usize, j: usize| -> f64 {
        (0..dim).map(|t| (data[i * dim + t] - data[j * dim + t]).powi(2)).sum()
    };
    let mut sets = vec![std::collections::BTreeSet::new(); n];
    for i in 0..n {
        let mut c: Vec<(f64, usize)> = (0..n).filter(|&j| j != i).map(|j| (d2(i, j), j)).collect();
        c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let keep: Vec<usize> = match how {
            Neighbours::Knn(k) => c.iter().take(k).map(|x| x.1).collect(),
            Neighbours::Radius(r) => c.iter().filter(|x| x.0 < r * r).map(|x| x.1).collect(),
        };
        for j in keep {
            sets[i].insert(j);
            sets[j].insert(i);
        }
    }
    sets.into_iter().map(|s| s.into_iter().collect()).collect()
}

#[test]
fn property_matches_brute_force_on_random_inputs() {
    let mut rng = SplitMix64::new(7);
    for case in 0..200 {
        let dim = 2 + case % 2;
        let n = 2 + rng.below(60);
        // Coarse integer grids create many exact ties and duplicates.
        let coarse = case % 3 == 0;
        let data: Vec<f64> = (0..n * dim)
            .map(|_| if coarse { rng.below(4) as f64 } else { rng.next_f64() * 10.0 })
            .collect();
        let how = if case % 4 == 1 {
            Neighbours::Radius(0.5 + rng.next_f64() * 3.0)
        } else {
            Neighbours::Knn(1 + rng.below((n - 1).min(8)))
        };
        let g = build_graph(&Coords { data: &data, dim }, None, how).expect("valid");
        let want = brute(&data, dim, how);
        for (i, want_i) in want.iter().enumerate() {
            let got: Vec<usize> = g.adj.outer_view(i).unwrap().indices().to_vec();
            assert_eq!(&got, want_i, "case {case} spot {i} ({how:?})");
        }
    }
}

#[test]
fn from_pattern_is_the_sorted_union_without_self_loops() {
    // 0 → 2, 0 → 1 (unsorted), 1 → 1 (self loop), 2 → 0 (both ways), 3 → 0 twice.
    let g = SpatialGraph::from_pattern(5, &[0, 2, 3, 4, 6, 6], &[2, 1, 1, 0, 0, 0]).unwrap();
    let rows: Vec<Vec<usize>> = g.adj.outer_iterator().map(|r| r.indices().to_vec()).collect();
    assert_eq!(rows, vec![vec![1, 2, 3], vec![0], vec![0], vec![0], vec![]]);
    assert!(g.adj.data().iter().all(|&v| v == 1.0));
}
