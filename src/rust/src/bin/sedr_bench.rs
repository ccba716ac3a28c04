//! `sedr-bench`: times the SEDR trainer on a synthetic layered tissue.
//!
//! ```text
//! cargo run --release -p sedr --no-default-features --bin sedr-bench -- \
//!     --n 3639,20000 --device cpu --threads 2 [--epochs 200] [--dec-epochs 200]
//!     [--d 200] [--k 12] [--noise 1.5] [--seed 42] [--batch-size 0 (full batch)]
//!     [--check] [--pca-genes G]
//! ```
//!
//! For each n it builds a hex-grid tissue, the k-NN graph, trains the full
//! schedule one epoch at a time and prints: n, nnz(A+I), epochs, median
//! seconds per epoch of the pre-training and DEC phases, the first DEC
//! epoch (k-means for the centres, first target), graph-build and total
//! training seconds, and the process's peak RSS so far (VmHWM).
//!
//! `--check` adds the ARI of k-means (one cluster per band) on the trained
//! embedding against the bands, and a digest of the embedding's bits, so
//! two runs (or two devices) can be compared for identical output.
//! `--pca-genes G` also times the preprocessing recipe's PCA (`d`
//! components, CPM, every gene selected) on synthetic sparse counts of
//! n spots × G genes, about 5 % non-zero, on the same device.

use sedr::device::{device_name, parse_device};
use sedr::graph::{build_graph, Coords, Neighbours};
use sedr::kmeans::kmeans;
use sedr::metrics::ari;
use sedr::params::Params;
use sedr::pca::{Csr, Method, Scores};
use sedr::recipe::{recipe_pca, Normalize};
use sedr::rng::SplitMix64;
use sedr::synth::{grid_for, layered_tissue};
use sedr::train::{Phase, Trainer};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Layers of the synthetic tissue.
const BANDS: usize = 7;

struct Args {
    ns: Vec<usize>,
    d: usize,
    k: usize,
    epochs: usize,
    dec_epochs: usize,
    device: String,
    threads: usize,
    noise: f64,
    seed: u64,
    batch_size: usize,
    check: bool,
    pca_genes: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: sedr-bench [--n N[,N...]] [--d 200] [--k 12] [--epochs 200] [--dec-epochs 200] \
         [--device cpu|cuda|cuda:N|auto] [--threads 1] [--noise 1.5] [--seed 42] [--batch-size 0] \
         [--check] [--pca-genes G]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        ns: vec![3639],
        d: 200,
        k: 12,
        epochs: 200,
        dec_epochs: 200,
        device: "cpu".into(),
        threads: 1,
        noise: 1.5,
        seed: 42,
        batch_size: 0,
        check: false,
        pca_genes: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    fn num<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> T {
        match v.and_then(|s| s.parse().ok()) {
            Some(x) => x,
            None => {
                eprintln!("{flag} needs a number");
                usage()
            }
        }
    }
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--n" => {
                let v = it.next().unwrap_or_else(|| usage());
                a.ns = v.split(',').map(|s| num("--n", Some(&s.trim().to_string()))).collect();
            }
            "--d" => a.d = num(flag, it.next()),
            "--k" => a.k = num(flag, it.next()),
            "--epochs" => a.epochs = num(flag, it.next()),
            "--dec-epochs" => a.dec_epochs = num(flag, it.next()),
            "--device" => a.device = it.next().cloned().unwrap_or_else(|| usage()),
            "--threads" => a.threads = num(flag, it.next()),
            "--noise" => a.noise = num(flag, it.next()),
            "--seed" => a.seed = num(flag, it.next()),
            "--batch-size" => a.batch_size = num(flag, it.next()),
            "--check" => a.check = true,
            "--pca-genes" => a.pca_genes = num(flag, it.next()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other}");
                usage()
            }
        }
    }
    a
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Sparse counts, n spots × g genes in CSR, about 5 % non-zero: each spot's
/// non-zero genes are drawn by geometric gaps, counts 1–4, and genes with
/// index ≡ band (mod bands) of the spot's band count 4 more.
fn synthetic_counts(label: &[usize], bands: usize, g: usize, seed: u64) -> (Vec<i32>, Vec<i32>, Vec<f64>) {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_c0de);
    let log_miss = (1.0f64 - 0.05).ln();
    let (mut indptr, mut indices, mut values) = (vec![0i32], Vec::new(), Vec::new());
    for &b in label {
        let mut j = 0usize;
        loop {
            j += (rng.next_f64().max(1e-300).ln() / log_miss) as usize;
            if j >= g {
                break;
            }
            indices.push(j as i32);
            values.push(1.0 + rng.below(4) as f64 + if j % bands.max(1) == b { 4.0 } else { 0.0 });
            j += 1;
        }
        indptr.push(indices.len() as i32);
    }
    (indptr, indices, values)
}

/// Seconds for the recipe's PCA (`k` components) of synthetic counts.
fn time_pca(label: &[usize], bands: usize, g: usize, k: usize, a: &Args, device: Device) -> Result<f64, String> {
    let (indptr, indices, values) = synthetic_counts(label, bands, g, a.seed);
    let n = label.len();
    let x = Csr { indptr: &indptr, indices: &indices, values: &values, n, g };
    let totals: Vec<f64> = (0..n).map(|i| values[indptr[i] as usize..indptr[i + 1] as usize].iter().sum::<f64>().max(1.0)).collect();
    let selected: Vec<usize> = (0..g).collect();
    let t = Instant::now();
    recipe_pca(&x, &selected, &totals, Normalize::Cpm, k.min(g - 1), a.seed, a.threads, device, Method::Auto, Scores::Input).map_err(|e| e.to_string())?;
    Ok(t.elapsed().as_secs_f64())
}

/// ARI of k-means (one cluster per band) on the embedding against the bands,
/// and an FNV-1a digest of the embedding's bits.
fn check(embedding: &[f64], n: usize, latent: usize, label: &[usize], bands: usize, seed: u64) -> (f64, u64) {
    let x = Tensor::from_slice(embedding).view([n as i64, latent as i64]).to_kind(Kind::Float);
    let fit = kmeans(&x, bands as i64, 10, &mut SplitMix64::new(seed));
    let found: Vec<usize> = Vec::<i64>::try_from(sedr::model::sq_dist(&x, &fit.centres).argmin(1, false))
        .map(|v| v.into_iter().map(|c| c as usize).collect())
        .unwrap_or_default();
    let digest = embedding
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (ari(label, &found), digest)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

fn main() {
    let a = parse_args();
    let device = match parse_device(&a.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    };
    println!(
        "device {} | threads {} | d {} | k {} | epochs {}+{} | batch {}",
        device_name(device),
        a.threads,
        a.d,
        a.k,
        a.epochs,
        a.dec_epochs,
        if a.batch_size == 0 { "full".to_string() } else { a.batch_size.to_string() }
    );
    print!(
        "{:>8} {:>9} {:>7} {:>13} {:>13} {:>13} {:>9} {:>9} {:>11}",
        "n", "nnz(A+I)", "epochs", "pre ms/epoch", "DEC ms/epoch", "DEC start ms", "graph s", "train s", "peakRSS MiB"
    );
    if a.check {
        print!(" {:>6} {:>16}", "ARI", "digest");
    }
    if a.pca_genes > 0 {
        print!(" {:>9}", format!("pca({}) s", a.pca_genes));
    }
    println!();
    for &n_want in &a.ns {
        let (rows, cols) = grid_for(n_want);
        let tissue = layered_tissue(rows, cols, BANDS, a.d, 10.min(a.d), a.noise, a.seed);
        let n = tissue.n;
        let t0 = Instant::now();
        let graph = match build_graph(&Coords { data: &tissue.coords, dim: 2 }, None, Neighbours::Knn(a.k)) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("graph: {e}");
                std::process::exit(1)
            }
        };
        let graph_s = t0.elapsed().as_secs_f64();
        let nnz = graph.adj.nnz() + n;
        let params = Params { epochs: a.epochs, dec_epochs: a.dec_epochs.max(1), dec: a.dec_epochs > 0, threads: a.threads, seed: a.seed, batch_size: a.batch_size, ..Params::default() };
        let total = params.total_epochs();
        let t1 = Instant::now();
        let mut trainer = match Trainer::new(&tissue.x, n, a.d, &graph, params, device) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("trainer: {e}");
                std::process::exit(1)
            }
        };
        let (mut pre, mut dec) = (Vec::new(), Vec::new());
        let mut dec_start: Option<f64> = None;
        while !trainer.is_done() {
            let te = Instant::now();
            let losses = match trainer.step(1) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("training: {e}");
                    std::process::exit(1)
                }
            };
            let s = te.elapsed().as_secs_f64();
            match losses.first().map(|l| l.phase) {
                Some(Phase::Pretrain) => pre.push(s),
                Some(Phase::Dec) => {
                    if dec_start.is_none() {
                        // k-means for the centres plus the first target.
                        dec_start = Some(s);
                    } else {
                        dec.push(s);
                    }
                }
                None => break,
            }
        }
        let out = match trainer.output(false) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("output: {e}");
                std::process::exit(1)
            }
        };
        let train_s = t1.elapsed().as_secs_f64();
        drop(trainer);
        print!(
            "{:>8} {:>9} {:>7} {:>13.2} {:>13.2} {:>13.1} {:>9.3} {:>9.2} {:>11.0}",
            n,
            nnz,
            total,
            median(pre) * 1e3,
            median(dec) * 1e3,
            dec_start.map_or(f64::NAN, |s| s * 1e3),
            graph_s,
            train_s,
            peak_rss_mib()
        );
        if a.check {
            let (score, digest) = check(&out.embedding, n, out.latent, &tissue.label, BANDS, a.seed);
            print!(" {score:>6.3} {digest:>16x}");
        }
        if a.pca_genes > 0 {
            match time_pca(&tissue.label, BANDS, a.pca_genes, a.d, &a, device) {
                Ok(s) => print!(" {s:>9.2}"),
                Err(e) => print!(" pca failed: {e}"),
            }
        }
        println!();
    }
}
