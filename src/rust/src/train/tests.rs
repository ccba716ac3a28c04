use super::*;
use crate::graph::{build_graph, Coords, Neighbours};
use crate::params::Mode;

/// A layered tissue: a hex grid whose spots fall into `bands` curved layers;
/// features are band means in a low-dimensional subspace plus strong noise.
pub(crate) fn layered_tissue(rows: usize, cols: usize, bands: usize, d: usize, noise: f64, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let n = rows * cols;
    let mut coords = Vec::with_capacity(2 * n);
    let mut label = Vec::with_capacity(n);
    for r in 0..rows {
        for c in 0..cols {
            let x = c as f64 + 0.5 * (r % 2) as f64;
            let y = r as f64 * 3f64.sqrt() / 2.0;
            coords.extend_from_slice(&[x, y]);
            let h = y + 3.0 * (x / cols as f64 * std::f64::consts::PI).sin();
            let top = rows as f64 * 3f64.sqrt() / 2.0 + 3.0;
            label.push(((h / top * bands as f64) as usize).min(bands - 1));
        }
    }
    let gauss = |rng: &mut SplitMix64| {
        let (u1, u2) = (rng.next_f64().max(1e-300), rng.next_f64());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let means: Vec<Vec<f64>> = (0..bands).map(|_| (0..d).map(|_| gauss(&mut rng)).collect()).collect();
    // Column-major n × d.
    let mut x = vec![0.0; n * d];
    for j in 0..d {
        for i in 0..n {
            x[j * n + i] = if j < 10 { means[label[i]][j] } else { 0.0 } + noise * gauss(&mut rng);
        }
    }
    (coords, x, label)
}

fn grid_graph(coords: &[f64], k: usize) -> SpatialGraph {
    build_graph(&Coords { data: coords, dim: 2 }, None, Neighbours::Knn(k)).unwrap()
}

fn quick(epochs: usize, dec_epochs: usize, seed: u64) -> Params {
    Params { epochs, dec_epochs, dec_interval: 5, kmeans_restarts: 3, seed, ..Params::default() }
}

/// Adjusted Rand index from the contingency table.
pub(crate) fn ari(a: &[usize], b: &[usize]) -> f64 {
    let ka = a.iter().max().unwrap() + 1;
    let kb = b.iter().max().unwrap() + 1;
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

fn kmeans_labels(data_row_major: &[f64], n: usize, d: usize, k: i64) -> Vec<usize> {
    let x = Tensor::from_slice(data_row_major).view([n as i64, d as i64]).to_kind(Kind::Float);
    let fit = kmeans(&x, k, 10, &mut SplitMix64::new(1));
    let lab = crate::model::sq_dist(&x, &fit.centres).argmin(1, false);
    Vec::<i64>::try_from(lab).unwrap().into_iter().map(|v| v as usize).collect()
}

#[test]
fn outputs_have_the_right_shapes_and_are_finite() {
    let (coords, x, _) = layered_tissue(10, 12, 3, 20, 1.0, 1);
    let g = grid_graph(&coords, 6);
    let mut t = Trainer::new(&x, 120, 20, &g, quick(6, 6, 1), Device::Cpu).unwrap();
    let first = t.step(4).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].phase, Phase::Pretrain);
    t.fit().unwrap();
    assert!(t.is_done());
    assert_eq!(t.history().len(), 12);
    assert_eq!(t.history()[11].phase, Phase::Dec);
    assert!(t.step(5).unwrap().is_empty());
    let out = t.output(true).unwrap();
    assert_eq!((out.n, out.latent), (120, 32));
    assert_eq!(out.embedding.len(), 120 * 32);
    assert!(out.embedding.iter().all(|v| v.is_finite()));
    let q = out.q.expect("DEC ran");
    assert_eq!(q.len(), 120 * 10);
    for row in q.chunks(10) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
    assert_eq!(out.recon.unwrap().len(), 120 * 20);
}

#[test]
fn imputation_mode_and_no_dec_work() {
    let (coords, x, _) = layered_tissue(8, 8, 2, 15, 1.0, 2);
    let g = grid_graph(&coords, 6);
    let p = Params { dec: false, ..Params { epochs: 5, ..Params::for_mode(Mode::Imputation) } };
    let mut t = Trainer::new(&x, 64, 15, &g, p, Device::Cpu).unwrap();
    t.fit().unwrap();
    let out = t.output(true).unwrap();
    assert!(out.q.is_none());
    // The MLP decoder ends in an ELU: bounded below by −1.
    assert!(out.recon.unwrap().iter().all(|&v| v >= -1.0 - 1e-6));
}

#[test]
fn losses_decrease_on_a_planted_two_domain_grid() {
    let (coords, x, _) = layered_tissue(16, 16, 2, 30, 1.0, 3);
    let g = grid_graph(&coords, 6);
    let mut t = Trainer::new(&x, 256, 30, &g, Params { dec: false, epochs: 150, ..Params::default() }, Device::Cpu).unwrap();
    t.fit().unwrap();
    let h = t.history();
    let mean = |s: &[EpochLoss]| s.iter().map(|e| e.total).sum::<f64>() / s.len() as f64;
    assert!(mean(&h[140..]) < 0.8 * mean(&h[..10]), "{} vs {}", mean(&h[140..]), mean(&h[..10]));
}

#[test]
fn same_seed_gives_identical_embeddings_and_different_seeds_do_not() {
    let (coords, x, _) = layered_tissue(10, 10, 3, 20, 1.0, 4);
    let g = grid_graph(&coords, 6);
    let run = |seed| {
        let mut t = Trainer::new(&x, 100, 20, &g, quick(10, 10, seed), Device::Cpu).unwrap();
        t.fit().unwrap();
        t.output(false).unwrap().embedding
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12));
}

#[test]
fn bad_parameters_and_inputs_are_errors() {
    let (coords, x, _) = layered_tissue(4, 4, 2, 5, 1.0, 5);
    let g = grid_graph(&coords, 3);
    let mk = |p: Params| Trainer::new(&x, 16, 5, &g, p, Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(mk(Params { epochs: 0, ..Params::default() }).contains("epochs"));
    assert!(mk(Params { lr: -1.0, ..Params::default() }).contains("lr"));
    assert!(mk(Params { threads: 0, ..Params::default() }).contains("n.threads"));
    assert!(mk(Params { dec_clusters: 17, ..Params::default() }).contains("dec.clusters"));
    assert!(mk(Params { mask_rate: 1.5, ..Params::default() }).contains("mask.rate"));
    let mut bad = x.clone();
    bad[0] = f64::NAN;
    assert!(Trainer::new(&bad, 16, 5, &g, Params::default(), Device::Cpu).is_err());
    assert!(Trainer::new(&x, 15, 5, &g, Params::default(), Device::Cpu).is_err());
}

#[test]
fn negatives_never_hit_positive_pairs() {
    let (coords, _, _) = layered_tissue(12, 12, 2, 2, 1.0, 6);
    let g = grid_graph(&coords, 6);
    let (r, c) = g.target_pairs();
    let (src, dst) = (Tensor::from_slice(&r), Tensor::from_slice(&c));
    tch::manual_seed(1);
    let s = NegativeSampler::new(144, &src, &dst, 1);
    let neg = s.draw();
    let ns = Vec::<i64>::try_from(&neg.src).unwrap();
    let nd = Vec::<i64>::try_from(&neg.dst).unwrap();
    assert_eq!(ns.len(), r.len());
    let pos: std::collections::HashSet<(i64, i64)> = r.iter().copied().zip(c.iter().copied()).collect();
    assert!(ns.iter().zip(&nd).all(|(a, b)| !pos.contains(&(*a, *b))));
    // Uniform-ish: every spot is drawn as a negative at least once.
    let seen: std::collections::HashSet<i64> = nd.iter().copied().collect();
    assert!(seen.len() > 130);
}

#[test]
fn recovers_layers_better_than_pca_on_a_synthetic_tissue() {
    // 3,000 spots on a hex grid, 7 bands, noisy 200-d features.
    let (rows, cols, bands, d) = (50, 60, 7, 200);
    let n = rows * cols;
    let (coords, x, truth) = layered_tissue(rows, cols, bands, d, std::env::var("NOISE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.5), 7);
    let g = grid_graph(&coords, 12);
    let mut t = Trainer::new(&x, n, d, &g, Params { threads: 2, ..Params::default() }, Device::Cpu).unwrap();
    t.fit().unwrap();
    let out = t.output(false).unwrap();
    let sedr = ari(&truth, &kmeans_labels(&out.embedding, n, 32, bands as i64));
    // Baseline: k-means on the top 32 principal components of the input.
    let p = crate::pca::pca(&x, n, d, 32, 1, 2, Device::Cpu).unwrap();
    let mut row_major = vec![0.0; n * 32];
    for j in 0..32 {
        for i in 0..n {
            row_major[i * 32 + j] = p.scores[j * n + i];
        }
    }
    let base = ari(&truth, &kmeans_labels(&row_major, n, 32, bands as i64));
    eprintln!("ARI: SEDR {sedr:.3}, PCA {base:.3}");
    assert!(sedr >= 0.9, "SEDR ARI {sedr}");
    assert!(sedr > base + 0.1, "SEDR {sedr} vs PCA {base}");
}

#[test]
#[ignore]
fn experiment_halves() {
    let (rows, cols, bands, d) = (50, 60, 7, 200);
    let n = rows * cols;
    let (coords, x, truth) = layered_tissue(rows, cols, bands, d, 1.5, 7);
    let g = grid_graph(&coords, 12);
    let mut t = Trainer::new(&x, n, d, &g, Params { threads: 2, ..Params::default() }, Device::Cpu).unwrap();
    let t0 = std::time::Instant::now();
    t.fit().unwrap();
    eprintln!("fit {:?}", t0.elapsed());
    let out = t.output(false).unwrap();
    let z = Tensor::from_slice(&out.embedding).view([n as i64, 32]);
    let sd = z.std_dim(0, true, false);
    eprintln!("sd {:?}", Vec::<f64>::try_from(sd.view(-1)).unwrap());
    for (name, part) in [("feat", z.narrow(1, 0, 16)), ("mu", z.narrow(1, 16, 16))] {
        let s = (&part - part.mean_dim(0, true, None::<Kind>)) / part.std_dim(0, true, false).clamp_min(1e-12);
        let v = Vec::<f64>::try_from(s.contiguous().view(-1)).unwrap();
        let a = ari(&truth, &kmeans_labels(&v, n, 16, 7));
        let v2 = Vec::<f64>::try_from(part.contiguous().view(-1)).unwrap();
        let a2 = ari(&truth, &kmeans_labels(&v2, n, 16, 7));
        eprintln!("{name}: std-kmeans {a:.3} raw-kmeans {a2:.3}");
    }
}

/// Times the parts of one epoch (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn profile_epoch_parts() {
    let threads: usize = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let _g = crate::device::ThreadGuard::set(threads);
    let (rows, cols, bands, d) = (55, 55, 7, 200);
    let n = rows * cols;
    let (coords, x, _) = layered_tissue(rows, cols, bands, d, 1.5, 7);
    let g = grid_graph(&coords, 12);
    let mut t = Trainer::new(&x, n, d, &g, Params { threads, ..Params::default() }, Device::Cpu).unwrap();
    let reps = 20;
    let time = |name: &str, f: &mut dyn FnMut()| {
        f();
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            f();
        }
        eprintln!("{name:<40} {:8.3} ms", t0.elapsed().as_secs_f64() * 1e3 / reps as f64);
    };
    time("one_epoch (pretrain)", &mut || {
        t.one_epoch().unwrap();
    });
    time("forward train", &mut || {
        let _ = t.net.forward(&t.x, &t.adj, true);
    });
    time("forward eval", &mut || {
        let _ = t.eval_z();
    });
    time("negatives draw", &mut || {
        let _ = t.sampler.draw();
    });
    let neg = t.sampler.draw();
    let z = t.eval_z();
    time("edge_bce_and_grad", &mut || {
        let _ = loss::edge_bce_and_grad(&z, &t.pos, Some(&neg), t.norm);
    });
    time("fwd + mse + backward", &mut || {
        let mut fw = t.net.forward(&t.x, &t.adj, true);
        let tape = fw.tape.take().unwrap();
        let l = loss::mse(&fw.recon, &t.x);
        t.net.backward(&l, tape, &t.adj);
    });
    time("fwd + mse + sce + backward", &mut || {
        let mut fw = t.net.forward(&t.x, &t.adj, true);
        let tape = fw.tape.take().unwrap();
        let (ind, nm, xm) = fw.masked.as_ref().unwrap();
        let l = loss::mse(&fw.recon, &t.x) + (loss::sce_rows(&fw.recon, xm, 3.0) * ind.squeeze_dim(1)).sum(Kind::Float) / (*nm as f64);
        t.net.backward(&l, tape, &t.adj);
    });
    time("mse+sce fwd/bwd only (n x 200)", &mut || {
        let r = t.x.detach().set_requires_grad(true);
        let l = loss::mse(&r, &t.x) + loss::sce_rows(&r, &t.x, 3.0).sum(Kind::Float);
        l.backward();
    });
    time("opt step", &mut || {
        t.opt.step();
    });
    let x200 = t.x.shallow_clone();
    let w64 = Tensor::randn([64, 200], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    time("x.matmul(W^T) 3025x200x64 fwd+bwd", &mut || {
        x200.matmul(&w64.tr()).sum(Kind::Float).backward();
    });
}

#[test]
#[ignore]
fn profile_primitives() {
    let threads: usize = std::env::var("THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let _g = crate::device::ThreadGuard::set(threads);
    let reps = 50;
    let time = |name: &str, f: &mut dyn FnMut() -> Tensor| {
        let _ = f();
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            let _ = f();
        }
        eprintln!("{name:<40} {:8.3} ms", t0.elapsed().as_secs_f64() * 1e3 / reps as f64);
    };
    let o = (Kind::Float, Device::Cpu);
    let (n, e) = (3600i64, 48000i64);
    let h = Tensor::randn([n, 64], o);
    let z = Tensor::randn([n, 32], o);
    time("rand 3600x64", &mut || Tensor::rand([n, 64], o));
    time("rand 3600x64 .lt(0.8)", &mut || Tensor::rand([n, 64], o).lt(0.8));
    time("bernoulli_ 3600x64", &mut || Tensor::empty([n, 64], o).bernoulli_float_(0.8));
    time("dropout 3600x64", &mut || h.dropout(0.2, true));
    time("randn 3600x64", &mut || Tensor::randn([n, 64], o));
    let mut rng = SplitMix64::new(1);
    time("rust mask 3600x64 + from_slice", &mut || {
        let v: Vec<f32> = (0..n * 64).map(|_| if rng.next_u64() >> 40 < (0.8 * (1u64 << 24) as f64) as u64 { 1.25 } else { 0.0 }).collect();
        Tensor::from_slice(&v).view([n, 64])
    });
    let idx = Tensor::randint(n, [e], (Kind::Int64, Device::Cpu));
    let src = Tensor::randn([e, 32], o);
    time("index_select z 48k rows", &mut || z.index_select(0, &idx));
    time("index_add 48k x32", &mut || z.zeros_like().index_add(0, &idx, &src));
    let idx2 = idx.unsqueeze(1).expand([e, 32], false);
    time("scatter_add 48k x32", &mut || z.zeros_like().scatter_add(0, &idx2, &src));
    time("argsort 48k", &mut || idx.argsort(0, false));
    time("sort 48k", &mut || idx.sort(0, false).0);
    time("bincount 48k", &mut || idx.bincount(None::<Tensor>, n));
    time("randint 48k", &mut || Tensor::randint(n, [e], (Kind::Int64, Device::Cpu)));
    time("randperm 3600", &mut || Tensor::randperm(n, (Kind::Int64, Device::Cpu)));
    let w = Tensor::rand([e], o);
    let sorted = idx.sort(0, false).0;
    let offsets = Tensor::cat(&[Tensor::zeros([1], (Kind::Int64, Device::Cpu)), sorted.bincount(None::<Tensor>, n).cumsum(0, Kind::Int64)], 0);
    time("embedding_bag 48k x32 weighted", &mut || Tensor::embedding_bag(&z, &idx, &offsets, false, 0, false, Some(&w), true).0);
    let x200 = Tensor::randn([n, 200], o);
    let w200 = Tensor::randn([200, 64], o);
    time("mm 3600x200x64", &mut || x200.mm(&w200));
    time("mm^T 200x3600x64", &mut || x200.transpose(0, 1).mm(&h));
    time("mul 3600x200", &mut || &x200 * 1.5);
}
