//! The extendr glue: the only module that knows about R. Every entry point
//! returns `list(ok, err, kind)` (never an R error raised from Rust) and runs
//! inside `catch_unwind`, so neither a Rust panic nor a libtorch exception
//! crosses into R; R's `unwrap_rust()` turns `err` into a classed condition.
//! R has already checked and coerced the arguments; Rust checks again.

use crate::device::{cuda_available, device_name, parse_device, with_pool};
use crate::error::{Result, SedrError};
use crate::graph::{build_graph, Coords, Neighbours, SpatialGraph};
use crate::params::{DecoderKind, Mode, Params};
use crate::train::{Phase, Trainer};
use extendr_api::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn null() -> Robj {
    ().into()
}

fn result_list(r: Result<Robj>) -> Robj {
    match r {
        Ok(v) => list!(ok = v, err = null(), kind = null()).into(),
        Err(e) => {
            let arg: Robj = match &e {
                SedrError::Input { arg, .. } => arg.as_str().into(),
                SedrError::Device(_) => "device".into(),
                _ => null(),
            };
            list!(ok = null(), err = e.to_string(), kind = e.kind(), arg = arg).into()
        }
    }
}

/// The first line of libtorch's message, without tch's unwrap wrapper and
/// the C++ stack trace that follows it.
fn tidy_panic_message(msg: &str) -> String {
    let msg = msg.split("\\nException raised").next().unwrap_or(msg);
    let msg = msg.split("\nException raised").next().unwrap_or(msg);
    let msg = msg.trim_start_matches("called `Result::unwrap()` on an `Err` value: ");
    msg.trim_start_matches("Torch(\"").trim_end_matches("\")").to_string()
}

/// Runs `f`, turning a panic (e.g. a libtorch exception surfacing through
/// tch's unwrapping wrappers) into an error value. The default panic hook
/// would print a backtrace into the R console; it is silenced unless
/// SEDR_BACKTRACE is set.
fn guarded(f: impl FnOnce() -> Result<Robj>) -> Robj {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        if std::env::var_os("SEDR_BACKTRACE").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
    });
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let raw = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        let msg = tidy_panic_message(&raw);
        if raw.contains("Torch(") || raw.contains("TchError") || raw.contains("CUDA") {
            Err(SedrError::Torch(msg))
        } else {
            Err(SedrError::Internal(msg))
        }
    });
    result_list(r)
}

fn to_usize(v: &[i32], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| SedrError::input(what, "contains a negative or NA index")))
        .collect()
}

/// Coordinates arrive column-major (R's n × d matrix); the graph wants rows.
fn row_major(col: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * d];
    for j in 0..d {
        for i in 0..n {
            out[i * d + j] = col[j * n + i];
        }
    }
    out
}

/// @noRd
#[extendr]
fn sedr_build_graph(coords: &[f64], n: i32, dim: i32, k: i32, radius: f64, groups: Robj, threads: i32) -> Robj {
    guarded(|| {
        let (n, dim) = (n.max(0) as usize, dim.max(0) as usize);
        if coords.len() != n * dim {
            return Err(SedrError::input("coords", "length does not match its dimensions"));
        }
        let data = row_major(coords, n, dim);
        let how = if radius > 0.0 { Neighbours::Radius(radius) } else { Neighbours::Knn(k.max(0) as usize) };
        let g: Option<Vec<i32>> = if groups.is_null() { None } else { groups.as_integer_slice().map(|s| s.to_vec()) };
        let graph = with_pool(threads.max(1) as usize, || build_graph(&Coords { data: &data, dim }, g.as_deref(), how))??;
        let (indptr, indices, _) = graph.adj.into_raw_storage();
        let p: Vec<i32> = indptr.iter().map(|&v| v as i32).collect();
        let i: Vec<i32> = indices.iter().map(|&v| v as i32).collect();
        Ok(list!(i = i, p = p).into())
    })
}

/// Labels (1-based codes) as 0-based ones for crate::refine, and back.
fn vote(graph: &SpatialGraph, labels: &[i32], rounds: i32) -> Result<Vec<i32>> {
    let codes: Vec<u32> = labels
        .iter()
        .map(|&l| {
            // NA is i32::MIN: checked_sub keeps it from wrapping to a valid code.
            l.checked_sub(1)
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| SedrError::input("labels", "has a code below 1 or NA"))
        })
        .collect::<Result<_>>()?;
    let out = crate::refine::majority_vote(graph, &codes, rounds.max(0) as usize)?;
    Ok(out.into_iter().map(|l| l as i32 + 1).collect())
}

/// Majority vote over the k-nearest-spot graph of `coords` (built as by
/// sedr_build_graph, and never handed to R).
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sedr_vote_knn(coords: &[f64], n: i32, dim: i32, k: i32, groups: Robj, labels: &[i32], rounds: i32, threads: i32) -> Robj {
    guarded(|| {
        let (n, dim) = (n.max(0) as usize, dim.max(0) as usize);
        if coords.len() != n * dim {
            return Err(SedrError::input("coords", "length does not match its dimensions"));
        }
        let data = row_major(coords, n, dim);
        let g: Option<Vec<i32>> = if groups.is_null() { None } else { groups.as_integer_slice().map(|s| s.to_vec()) };
        let codes = with_pool(threads.max(1) as usize, || {
            let graph = build_graph(&Coords { data: &data, dim }, g.as_deref(), Neighbours::Knn(k.max(0) as usize))?;
            vote(&graph, labels, rounds)
        })??;
        Ok(codes.into())
    })
}

/// Majority vote over the graph whose CSC slots are `p` and `i` (0-based),
/// symmetrised and without self loops (SpatialGraph::from_slots).
/// @noRd
#[extendr]
fn sedr_vote_graph(p: &[i32], i: &[i32], labels: &[i32], rounds: i32, threads: i32) -> Robj {
    guarded(|| {
        let graph = SpatialGraph::from_slots(labels.len(), p, i)?;
        Ok(with_pool(threads.max(1) as usize, || vote(&graph, labels, rounds))??.into())
    })
}

/// @noRd
#[extendr]
fn sedr_pca(x: &[f64], n: i32, g: i32, k: i32, seed: i32, threads: i32, device: &str) -> Robj {
    guarded(|| {
        let dev = parse_device(device)?;
        let p = crate::pca::pca(x, n.max(0) as usize, g.max(0) as usize, k.max(0) as usize, seed as u32 as u64, threads.max(1) as usize, dev)?;
        Ok(list!(scores = p.scores, sdev = p.sdev, loadings = p.loadings).into())
    })
}

/// Sparse PCA of the implicitly centred and scaled matrix: `p`, `i`, `x` are
/// the slots of a genes × spots dgCMatrix (the CSR form of spots × genes);
/// `scale` 0 marks a constant gene; `method` "auto", "sparse", "gram" or
/// "exact" (crate::pca::Method).
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sedr_pca_sparse(p: &[i32], i: &[i32], x: &[f64], n: i32, g: i32, center: &[f64], scale: &[f64], k: i32, seed: i32, threads: i32, device: &str, method: &str) -> Robj {
    guarded(|| {
        let dev = parse_device(device)?;
        let method = crate::pca::Method::parse(method)?;
        let (n, g) = (usize::try_from(n).unwrap_or(0), usize::try_from(g).unwrap_or(0));
        let pc = crate::pca::pca_sparse(p, i, x, n, g, center, scale, k.max(0) as usize, seed as u32 as u64, threads.max(1) as usize, dev, method)?;
        Ok(list!(scores = pc.scores, sdev = pc.sdev, loadings = pc.loadings).into())
    })
}

/// The counts' slots (genes × spots dgCMatrix = CSR of spots × genes),
/// checked: well-formed, finite, >= 0.
fn counts_view<'a>(p: &'a [i32], i: &'a [i32], x: &'a [f64], g: i32) -> Result<crate::pca::Csr<'a>> {
    let g = usize::try_from(g).map_err(|_| SedrError::input("object", "has a negative number of genes"))?;
    let n = p.len().checked_sub(1).ok_or_else(|| SedrError::input("object", "has malformed column pointers"))?;
    let csr = crate::pca::Csr { indptr: p, indices: i, values: x, n, g };
    crate::recipe::check_counts(&csr)?;
    Ok(csr)
}

/// The problems of a counts matrix's values (NA/NaN/Inf, negative,
/// non-integer) and, when the values are fine, its spots without counts
/// (0-based), for check_counts_values().
/// @noRd
#[extendr]
fn sedr_count_problems(p: &[i32], i: &[i32], x: &[f64], g: i32) -> Robj {
    guarded(|| {
        // On a pool of its own, as every entry point (see `with_pool`).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let vp = with_pool(threads, || crate::recipe::value_problems(x))?;
        let empty: Vec<i32> = if vp.non_finite || vp.negative {
            Vec::new()
        } else {
            let csr = counts_view(p, i, x, g)?;
            with_pool(threads, || crate::recipe::empty_spots(&csr))?.into_iter().map(|s| s as i32).collect()
        };
        Ok(list!(non_finite = vp.non_finite, negative = vp.negative, non_integer = vp.non_integer, empty = empty).into())
    })
}

/// The recipe's first pass: per-gene detection, stored entries, sum and sum
/// of squares; the gene filter; the spots' library sizes over kept genes.
/// @noRd
#[extendr]
fn sedr_recipe_stats(p: &[i32], i: &[i32], x: &[f64], g: i32, min_spots: f64, min_counts: f64, threads: i32) -> Robj {
    guarded(|| {
        let csr = counts_view(p, i, x, g)?;
        if !(min_spots.is_finite() && min_counts.is_finite()) {
            return Err(SedrError::input("min.spots", "`min.spots` and `min.counts` must be finite"));
        }
        let threads = threads.max(1) as usize;
        let (s, keep, totals) = with_pool(threads, || {
            let s = crate::recipe::gene_stats(&csr, threads);
            let keep = crate::recipe::filter_genes(&s, min_spots, min_counts);
            let totals = crate::recipe::spot_totals(&csr, &keep);
            (s, keep, totals)
        })?;
        Ok(list!(detected = s.detected, stored = s.stored, sum = s.sum, sum_sq = s.sum_sq, keep = keep, totals = totals).into())
    })
}

/// The VST's clipped sums over the stored entries, per gene, given the
/// counts' means `mu` and the fitted sds `sd` (0: gene not scored).
/// @noRd
#[extendr]
fn sedr_recipe_clipped(p: &[i32], i: &[i32], x: &[f64], g: i32, mu: &[f64], sd: &[f64], threads: i32) -> Robj {
    guarded(|| {
        let csr = counts_view(p, i, x, g)?;
        if mu.len() != csr.g || sd.len() != csr.g {
            return Err(SedrError::input("mu", "`mu` and `sd` need one value per gene"));
        }
        let threads = threads.max(1) as usize;
        let out = with_pool(threads, || crate::recipe::clipped_sums(&csr, mu, sd, threads))?;
        Ok(Robj::from(out))
    })
}

/// EM for mclust's EEE mixture on the n × p `x` from the n × G `z`
/// (column-major): list(pro, mean, cholSigma, z, loglik, iterations), or
/// NULL where mclust's EM fails (see `crate::mixture`).
/// @noRd
#[extendr]
fn sedr_em_eee(x: &[f64], n: i32, p: i32, z: &[f64], g: i32, tol: f64, itmax: i32) -> Robj {
    guarded(|| {
        let (n, p, g) = (n.max(0) as usize, p.max(0) as usize, g.max(0) as usize);
        let fit = crate::mixture::em_eee(x, n, p, z, g, tol, itmax.max(0) as usize)?;
        Ok(match fit {
            None => null(),
            Some(f) => list!(
                pro = f.pro,
                mean = f.mean,
                cholSigma = f.chol,
                z = f.z,
                loglik = f.loglik,
                iterations = f.iterations as i32
            )
            .into(),
        })
    })
}

/// The E-step of a fitted EEE mixture on the n × p `x`: list(z, loglik).
/// @noRd
#[extendr]
fn sedr_estep_eee(x: &[f64], n: i32, p: i32, pro: &[f64], mean: &[f64], chol: &[f64]) -> Robj {
    guarded(|| {
        let (z, loglik) = crate::mixture::estep_eee(x, n.max(0) as usize, p.max(0) as usize, pro, mean, chol)?;
        Ok(list!(z = z, loglik = loglik).into())
    })
}

/// CPM of the selected genes (`selected`: 0-based, increasing), their
/// moments and the sparse PCA of their z-scores. With `as_input` the scores
/// come back as a trainer input handle (`input`, for sedr_trainer_new; see
/// `TrainerInput`) instead of R doubles (`scores`).
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sedr_recipe_pca(p: &[i32], i: &[i32], x: &[f64], g: i32, selected: &[i32], totals: &[f64], normalize: &str, k: i32, seed: i32, threads: i32, device: &str, method: &str, as_input: bool) -> Robj {
    guarded(|| {
        let dev = parse_device(device)?;
        let method = crate::pca::Method::parse(method)?;
        let how = crate::recipe::Normalize::parse(normalize)?;
        let csr = counts_view(p, i, x, g)?;
        let sel = to_usize(selected, "features")?;
        let out = if as_input { crate::pca::Scores::Input } else { crate::pca::Scores::R };
        let r = crate::recipe::recipe_pca(&csr, &sel, totals, how, k.max(0) as usize, seed as u32 as u64, threads.max(1) as usize, dev, method, out)?;
        let input: Robj = match r.pca.input {
            Some(t) => ExternalPtr::new(TrainerInput(Some(crate::train::Input::from_rows(t)?))).into(),
            None => null(),
        };
        Ok(list!(
            scores = r.pca.scores,
            input = input,
            sdev = r.pca.sdev,
            loadings = r.pca.loadings,
            center = r.moments.center,
            scale = r.moments.scale,
            constant = r.moments.constant
        )
        .into())
    })
}

/// Moran's I and its z-score of the selected genes of a counts matrix
/// (genes x spots slots; `selected` 0-based), normalised as the recipe does,
/// on the spatial graph's adjacency slots.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sedr_recipe_moran(p: &[i32], i: &[i32], x: &[f64], g: i32, selected: &[i32], totals: &[f64], normalize: &str, adj_p: &[i32], adj_i: &[i32], threads: i32) -> Robj {
    guarded(|| {
        let how = crate::recipe::Normalize::parse(normalize)?;
        let csr = counts_view(p, i, x, g)?;
        let sel = to_usize(selected, "features")?;
        let graph = SpatialGraph::from_slots(csr.n, adj_p, adj_i)?;
        let m = crate::recipe::recipe_moran(&csr, &sel, totals, how, &graph, threads.max(1) as usize)?;
        Ok(list!(i = m.i, z = m.z).into())
    })
}

fn params_from_list(mode: &str, opts: List) -> Result<Params> {
    let mut p = Params::for_mode(Mode::parse(mode)?);
    for (name, v) in opts.iter() {
        let num = || -> Result<f64> {
            v.as_real()
                .or_else(|| v.as_integer().map(f64::from))
                .filter(|x| !x.is_nan())
                .ok_or_else(|| SedrError::input(name, "must be a single number"))
        };
        let count = || -> Result<usize> {
            let x = num()?;
            if x < 0.0 || x.fract() != 0.0 || x > 1e9 {
                return Err(SedrError::input(name, format!("must be a whole number >= 0, not {x}")));
            }
            Ok(x as usize)
        };
        let flag = || v.as_bool().ok_or_else(|| SedrError::input(name, "must be TRUE or FALSE"));
        match name {
            "feat.hidden1" => p.feat_hidden1 = count()? as i64,
            "feat.hidden2" => p.feat_hidden2 = count()? as i64,
            "gcn.hidden1" => p.gcn_hidden1 = count()? as i64,
            "gcn.hidden2" => p.gcn_hidden2 = count()? as i64,
            "dropout" => p.dropout = num()?,
            "mask.rate" => p.mask_rate = num()?,
            "sce.alpha" => p.sce_alpha = num()?,
            "dec" => p.dec = flag()?,
            "dec.clusters" => p.dec_clusters = count()? as i64,
            "dec.alpha" => p.dec_alpha = num()?,
            "dec.interval" => p.dec_interval = count()?,
            "rec.weight" => p.rec_w = num()?,
            "gcn.weight" => p.gcn_w = num()?,
            "self.weight" => p.self_w = num()?,
            "dec.kl.weight" => p.dec_kl_w = num()?,
            "epochs" => p.epochs = count()?,
            "dec.epochs" => p.dec_epochs = count()?,
            "lr" => p.lr = num()?,
            "weight.decay" => p.weight_decay = num()?,
            "neg.ratio" => p.neg_ratio = count()?,
            "resample.negatives" => p.resample_negatives = flag()?,
            "mask.replace" => p.mask_replace = flag()?,
            "bn.full.batch" => p.bn_full_batch = flag()?,
            "kmeans.restarts" => p.kmeans_restarts = count()?,
            "kmeans.max.spots" => p.kmeans_max_spots = count()?,
            "average.epochs" => p.avg_epochs = count()?,
            "batch.size" => p.batch_size = count()?,
            "decoder" => {
                let s = v.as_str().ok_or_else(|| SedrError::input(name, "must be \"gcn\" or \"mlp\""))?;
                p.decoder = DecoderKind::parse(s)?
            }
            "seed" => p.seed = num()? as i64 as u32 as u64,
            "n.threads" => p.threads = count()?,
            other => return Err(SedrError::input(other, "is not a SEDR option; see ?SEDROptions")),
        }
    }
    Ok(p)
}

/// @noRd
#[extendr]
fn sedr_trainer_new(input: Robj, adj_p: &[i32], adj_i: &[i32], mode: &str, opts: List, device: &str) -> Robj {
    guarded(|| {
        let params = params_from_list(mode, opts)?;
        let dev = parse_device(device)?;
        let mut slot = ExternalPtr::<TrainerInput>::try_from(input)
            .map_err(|_| SedrError::Internal("not a SEDR trainer input handle".into()))?;
        let input = slot.0.take().ok_or_else(|| SedrError::Internal("the trainer input was used already".into()))?;
        let n = input.n();
        let graph = with_pool(params.threads, || SpatialGraph::from_slots(n, adj_p, adj_i))??;
        let t = Trainer::from_input(input, graph, params, dev)?;
        Ok(ExternalPtr::new(t).into())
    })
}

/// The trainer's input, made (checked, float32, row-major) before the
/// trainer so that R can free the float64 matrix in between: at a million
/// spots × 200 PCs that is 1.6 GB less at the trainer's construction.
struct TrainerInput(Option<crate::train::Input>);

/// @noRd
#[extendr]
fn sedr_trainer_input(x: &[f64], n: i32, d: i32) -> Robj {
    guarded(|| {
        let input = crate::train::Input::new(x, n.max(0) as usize, d.max(0) as usize)?;
        Ok(ExternalPtr::new(TrainerInput(Some(input))).into())
    })
}

fn trainer(ptr: &Robj) -> Result<ExternalPtr<Trainer>> {
    ExternalPtr::<Trainer>::try_from(ptr.clone()).map_err(|_| SedrError::Internal("not a SEDR trainer handle".into()))
}

/// @noRd
#[extendr]
fn sedr_trainer_step(ptr: Robj, n_epochs: i32) -> Robj {
    guarded(|| {
        let mut t = trainer(&ptr)?;
        let losses = t.step(n_epochs.max(0) as usize)?;
        let col = |f: fn(&crate::train::EpochLoss) -> f64| losses.iter().map(f).collect::<Vec<f64>>();
        Ok(list!(
            epoch = losses.iter().map(|e| e.epoch as i32).collect::<Vec<i32>>(),
            phase = losses.iter().map(|e| if e.phase == Phase::Pretrain { "pretrain" } else { "dec" }).collect::<Vec<&str>>(),
            total = col(|e| e.total),
            mse = col(|e| e.mse),
            graph = col(|e| e.graph),
            sce = col(|e| e.sce),
            dec_kl = col(|e| e.dec_kl),
            done = t.is_done()
        )
        .into())
    })
}

/// @noRd
#[extendr]
fn sedr_trainer_output(ptr: Robj, with_recon: bool) -> Robj {
    guarded(|| {
        let t = trainer(&ptr)?;
        let o = t.output_col_major(with_recon)?;
        let opt = |v: Option<Vec<f64>>| v.map(Robj::from).unwrap_or_else(null);
        Ok(list!(
            embedding = o.embedding,
            n = o.n as i32,
            latent = o.latent as i32,
            q = opt(o.q),
            k = o.k as i32,
            recon = opt(o.recon),
            d_in = o.d_in as i32,
            device = device_name(t.device()),
            n_parameters = t.n_parameters() as f64
        )
        .into())
    })
}

/// @noRd
#[extendr]
fn sedr_torch_info() -> Robj {
    guarded(|| {
        let count = if cuda_available() { tch::Cuda::device_count() } else { 0 };
        Ok(list!(
            cuda_available = cuda_available(),
            cuda_devices = count as i32,
            threads = tch::get_num_threads(),
            mkl = tch::utils::has_mkl(),
            openmp = tch::utils::has_openmp()
        )
        .into())
    })
}

/// @noRd
#[extendr]
fn sedr_lisi(x: &[f64], n: i32, d: i32, labels: List, perplexity: f64, threads: i32) -> Robj {
    guarded(|| {
        let (n, d) = (n.max(0) as usize, d.max(0) as usize);
        if x.len() != n * d {
            return Err(SedrError::input("embedding", "has the wrong size"));
        }
        let rows = row_major(x, n, d);
        let labs: Vec<Vec<i32>> = labels
            .values()
            .map(|v| v.as_integer_slice().map(|s| s.to_vec()).ok_or_else(|| SedrError::input("labels", "must be integer codes")))
            .collect::<Result<_>>()?;
        let out = with_pool(threads.max(1) as usize, || crate::lisi::lisi(&rows, n, d, &labs, perplexity))??;
        Ok(List::from_values(out).into())
    })
}

/// Deliberate failures, so tests can check that R survives each kind.
/// @noRd
#[extendr]
fn sedr_fail(what: &str) -> Robj {
    guarded(|| match what {
        "panic" => panic!("deliberate panic for testing"),
        "torch" => {
            // An impossible allocation: libtorch throws, tch panics, we catch.
            let t = tch::Tensor::zeros([1 << 40, 1 << 30], (tch::Kind::Float, tch::Device::Cpu));
            Ok(Robj::from(t.numel() as f64))
        }
        _ => Err(SedrError::input("what", "unknown failure kind")),
    })
}

extendr_module! {
    mod sedr;
    fn sedr_build_graph;
    fn sedr_vote_knn;
    fn sedr_vote_graph;
    fn sedr_pca;
    fn sedr_pca_sparse;
    fn sedr_count_problems;
    fn sedr_recipe_stats;
    fn sedr_recipe_clipped;
    fn sedr_recipe_pca;
    fn sedr_recipe_moran;
    fn sedr_trainer_input;
    fn sedr_trainer_new;
    fn sedr_trainer_step;
    fn sedr_trainer_output;
    fn sedr_torch_info;
    fn sedr_fail;
    fn sedr_lisi;
    fn sedr_em_eee;
    fn sedr_estep_eee;
}
