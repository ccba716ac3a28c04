//! `sedr-bench`: times the SEDR trainer on a synthetic layered tissue.
//!
//! ```text
//! cargo run --release -p sedr --no-default-features --bin sedr-bench -- \
//!     --n 3639,20000 --device cpu --threads 2 [--epochs 200] [--dec-epochs 200]
//!     [--d 200] [--k 12] [--noise 1.5] [--seed 42] [--batch-size 0 (full batch)]
//! ```
//!
//! For each n it builds a hex-grid tissue, the k-NN graph, trains the full
//! schedule one epoch at a time and prints: n, nnz(A+I), epochs, median
//! seconds per epoch of the pre-training and DEC phases, the first DEC
//! epoch (k-means for the centres, first target), graph-build and total
//! training seconds, and the process's peak RSS so far (VmHWM).

use sedr::device::{device_name, parse_device};
use sedr::graph::{build_graph, Coords, Neighbours};
use sedr::params::Params;
use sedr::synth::{grid_for, layered_tissue};
use sedr::train::{Phase, Trainer};
use std::time::Instant;

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
}

fn usage() -> ! {
    eprintln!(
        "usage: sedr-bench [--n N[,N...]] [--d 200] [--k 12] [--epochs 200] [--dec-epochs 200] \
         [--device cpu|cuda|cuda:N|auto] [--threads 1] [--noise 1.5] [--seed 42] [--batch-size 0]"
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
    println!(
        "{:>8} {:>9} {:>7} {:>13} {:>13} {:>13} {:>9} {:>9} {:>11}",
        "n", "nnz(A+I)", "epochs", "pre ms/epoch", "DEC ms/epoch", "DEC start ms", "graph s", "train s", "peakRSS MiB"
    );
    for &n_want in &a.ns {
        let (rows, cols) = grid_for(n_want);
        let tissue = layered_tissue(rows, cols, 7, a.d, 10.min(a.d), a.noise, a.seed);
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
        if let Err(e) = trainer.output(false) {
            eprintln!("output: {e}");
            std::process::exit(1)
        }
        let train_s = t1.elapsed().as_secs_f64();
        println!(
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
    }
}
