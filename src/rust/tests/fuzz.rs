//! Randomised robustness ("fuzz") tests of the entry points that take user
//! data: graph construction and parameter validation. Each case draws sizes,
//! values (NaN, ±Inf, huge, duplicated, collinear) and options at random and
//! checks that the call returns Ok or Err, never panics, and finishes.
//!
//! `cargo test --release -p sedr --test fuzz` runs 300 cases per target;
//! `SEDR_FUZZ_CASES=100000` (see RELIABILITY.md) runs a long campaign.

use sedr::graph::{build_graph, Coords, Neighbours, SpatialGraph};
use sedr::params::{Mode, Params};
use sedr::rng::SplitMix64;
use std::panic::catch_unwind;
use std::time::Instant;

fn cases() -> usize {
    std::env::var("SEDR_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn wild(rng: &mut SplitMix64) -> f64 {
    match rng.below(12) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => 1e300 * (rng.next_f64() - 0.5),
        4 => 0.0,
        5 => -0.0,
        6 => f64::MIN_POSITIVE,
        _ => (rng.next_f64() - 0.5) * 100.0,
    }
}

#[test]
fn graph_builder_never_panics() {
    let mut rng = SplitMix64::new(0xF0F0);
    let start = Instant::now();
    let mut ok = 0usize;
    for case in 0..cases() {
        let dim = [2, 3, 2, 3, 2, 0, 1, 4][rng.below(8)]; // mostly valid (2 or 3)
        let n = rng.below(80);
        let dirty = rng.below(6) == 0;
        let coarse = rng.below(3) == 0;
        let len = if rng.below(30) == 0 { n * dim.max(1) + 1 } else { n * dim };
        let data: Vec<f64> = (0..len)
            .map(|_| {
                if dirty && rng.below(10) == 0 {
                    wild(&mut rng)
                } else if coarse {
                    rng.below(3) as f64
                } else {
                    rng.next_f64() * 50.0
                }
            })
            .collect();
        let how = match rng.below(3) {
            0 => Neighbours::Radius(wild(&mut rng).abs()),
            _ => Neighbours::Knn(rng.below(15)),
        };
        let groups: Option<Vec<i32>> = match rng.below(3) {
            0 => Some((0..n + usize::from(rng.below(10) == 0)).map(|_| rng.below(3) as i32).collect()),
            _ => None,
        };
        let t0 = Instant::now();
        let res = catch_unwind(|| build_graph(&Coords { data: &data, dim }, groups.as_deref(), how));
        assert!(res.is_ok(), "case {case}: panic (n={n}, dim={dim}, {how:?})");
        assert!(t0.elapsed().as_secs_f64() < 5.0, "case {case}: took too long");
        if let Ok(Ok(g)) = res {
            ok += 1;
            // A valid graph is symmetric, loop-free and in range.
            for (i, row) in g.adj.outer_iterator().enumerate() {
                for (j, _) in row.iter() {
                    assert!(j != i && g.adj.get(j, i).is_some(), "case {case}: asymmetric or loop");
                }
            }
        }
    }
    eprintln!("graph fuzz: {} cases ({ok} valid) in {:.1} s", cases(), start.elapsed().as_secs_f64());
}

#[test]
fn user_supplied_patterns_never_panic() {
    let mut rng = SplitMix64::new(0xBEEF);
    for case in 0..cases() {
        let n = rng.below(30);
        let nnz = rng.below(60);
        let mut indptr: Vec<usize> = (0..=n).map(|_| rng.below(nnz + 2)).collect();
        if rng.below(2) == 0 {
            indptr.sort_unstable();
            if let Some(first) = indptr.first_mut() {
                *first = 0;
            }
        }
        let indices: Vec<usize> = (0..nnz).map(|_| rng.below(n + 2)).collect();
        let res = catch_unwind(|| SpatialGraph::from_pattern(n, &indptr, &indices));
        assert!(res.is_ok(), "case {case}: panic");
    }
}

#[test]
fn parameter_validation_never_panics() {
    let mut rng = SplitMix64::new(0xCAFE);
    let mut rejected = 0usize;
    for case in 0..cases() {
        let mut p = Params::for_mode(if rng.below(2) == 0 { Mode::Clustering } else { Mode::Imputation });
        let int = |rng: &mut SplitMix64| rng.below(200) as i64 - 20;
        p.feat_hidden1 = int(&mut rng);
        p.feat_hidden2 = int(&mut rng);
        p.gcn_hidden1 = int(&mut rng);
        p.gcn_hidden2 = int(&mut rng);
        p.dropout = wild(&mut rng) / 50.0;
        p.mask_rate = wild(&mut rng) / 50.0;
        p.sce_alpha = wild(&mut rng);
        p.dec = rng.below(2) == 0;
        p.dec_clusters = int(&mut rng);
        p.dec_alpha = wild(&mut rng);
        p.dec_interval = rng.below(5);
        p.rec_w = wild(&mut rng);
        p.gcn_w = wild(&mut rng);
        p.lr = wild(&mut rng) / 100.0;
        p.weight_decay = wild(&mut rng);
        p.epochs = rng.below(3);
        p.dec_epochs = rng.below(3);
        p.threads = rng.below(3);
        let res = catch_unwind(|| p.check());
        assert!(res.is_ok(), "case {case}: panic");
        if let Ok(Err(e)) = res {
            rejected += 1;
            assert!(e.to_string().starts_with('`'), "case {case}: message does not name an argument: {e}");
        }
    }
    assert!(rejected > 0);
}
