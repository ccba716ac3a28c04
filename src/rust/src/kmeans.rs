//! Seeded k-means (k-means++ seeding, Lloyd iterations, best of several
//! restarts), used to initialise the DEC centres: plain Rust on the CPU,
//! tensor operations on other devices.

use crate::model::sq_dist;
use crate::rng::SplitMix64;
use tch::{Device, Kind, Tensor};

pub struct KMeansFit {
    pub centres: Tensor,
    pub inertia: f64,
}

fn plus_plus(x: &Tensor, k: i64, rng: &mut SplitMix64) -> Tensor {
    let n = x.size()[0] as usize;
    let mut chosen = vec![rng.below(n) as i64];
    let mut best = sq_dist(x, &x.narrow(0, chosen[0], 1)).squeeze_dim(1);
    while (chosen.len() as i64) < k {
        let w: Vec<f64> = Vec::<f64>::try_from(best.to_kind(Kind::Double).to_device(tch::Device::Cpu)).unwrap_or_default();
        let total: f64 = w.iter().sum();
        let next = if total > 0.0 {
            let mut t = rng.next_f64() * total;
            let mut pick = n - 1;
            for (i, wi) in w.iter().enumerate() {
                if t < *wi {
                    pick = i;
                    break;
                }
                t -= wi;
            }
            pick
        } else {
            rng.below(n)
        };
        chosen.push(next as i64);
        let d = sq_dist(x, &x.narrow(0, next as i64, 1)).squeeze_dim(1);
        best = best.minimum(&d);
    }
    x.index_select(0, &Tensor::from_slice(&chosen).to_device(x.device()))
}

fn lloyd(x: &Tensor, mut c: Tensor, max_iter: usize, tol: f64) -> KMeansFit {
    let k = c.size()[0];
    let d = x.size()[1];
    for _ in 0..max_iter {
        let assign = sq_dist(x, &c).argmin(1, false);
        let sums = Tensor::zeros([k, d], (x.kind(), x.device())).index_add(0, &assign, x);
        let counts = Tensor::zeros([k], (x.kind(), x.device())).index_add(0, &assign, &x.ones_like().narrow(1, 0, 1).squeeze_dim(1));
        // Empty clusters keep their previous centre.
        let empty = counts.eq(0.0).unsqueeze(1);
        let newc = (sums / counts.clamp_min(1.0).unsqueeze(1)).where_self(&empty.logical_not(), &c);
        let shift = f64::try_from((&newc - &c).square().sum(Kind::Double)).unwrap_or(0.0);
        c = newc;
        if shift <= tol {
            break;
        }
    }
    let inertia = f64::try_from(sq_dist(x, &c).min_dim(1, false).0.sum(Kind::Double)).unwrap_or(f64::INFINITY);
    KMeansFit { centres: c, inertia }
}


/// Squared distances from the point `p` to each of the k centres (k × d,
/// row-major) into `out`.
#[inline(always)]
fn point_dists(p: &[f32], centres: &[f32], out: &mut [f32]) {
    let d = p.len();
    for (o, c) in out.iter_mut().zip(centres.chunks_exact(d)) {
        let mut acc = [0f32; 8];
        let (pc, cc) = (p.chunks_exact(8), c.chunks_exact(8));
        let tail: f32 = pc.remainder().iter().zip(cc.remainder()).map(|(a, b)| (a - b) * (a - b)).sum();
        for (a, b) in pc.zip(cc) {
            for l in 0..8 {
                let t = a[l] - b[l];
                acc[l] += t * t;
            }
        }
        *o = acc.iter().sum::<f32>() + tail;
    }
}

/// Squared distances from the point `p` to the centres: the smallest, its
/// centre (the first on a tie) and the second smallest.
#[inline(always)]
fn nearest_two(p: &[f32], centres: &[f32], dist: &mut [f32]) -> (f32, u32, f32) {
    point_dists(p, centres, dist);
    let (mut best, mut arg, mut second) = (f32::INFINITY, 0, f32::INFINITY);
    for (j, &v) in dist.iter().enumerate() {
        if v < best {
            second = best;
            best = v;
            arg = j;
        } else if v < second {
            second = v;
        }
    }
    (best, arg as u32, second)
}

/// Relative slack of the bounds below. A squared distance from
/// [`point_dists`] is within about d·2⁻²⁴ (≈ 2·10⁻⁶ at d = 32) of the exact
/// one, so a point whose bounds are separated by this much keeps the centre
/// a full distance pass would give it, bit for bit.
const BOUND_SLACK: f64 = 1e-4;

/// One k-means run on the host from the given centres: Lloyd rounds until
/// the centres move less than `tol` (summed squared shift) or 300 rounds.
/// Returns (centres, inertia).
///
/// Hamerly's bounds skip the distance pass for the points whose centre
/// cannot have changed: an upper bound `u` on the distance to their centre
/// and a lower bound `l` on the distance to any other, moved by how far the
/// centres moved. A point is recomputed (with the same arithmetic as a full
/// pass) unless `u` is clearly below `l` or half the distance from its
/// centre to the nearest other centre, so the labels, the centres and the
/// inertia are those of plain Lloyd rounds; only the work differs.
fn lloyd_host(x: &[f32], d: usize, c: Vec<f32>, tol: f64) -> (Vec<f32>, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked at run time).
        return unsafe { lloyd_host_avx2(x, d, c, tol) };
    }
    lloyd_host_body(x, d, c, tol)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lloyd_host_avx2(x: &[f32], d: usize, c: Vec<f32>, tol: f64) -> (Vec<f32>, f64) {
    lloyd_host_body(x, d, c, tol)
}

#[inline(always)]
fn lloyd_host_body(x: &[f32], d: usize, mut c: Vec<f32>, tol: f64) -> (Vec<f32>, f64) {
    let k = c.len() / d;
    let mut bounds = Bounds::new(x, d, &c);
    let mut moved = vec![0f64; k];
    for round in 0..300 {
        if round > 0 {
            bounds.relabel(x, d, &c, &moved, |_, _, _| {});
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for (p, &l) in x.chunks_exact(d).zip(&bounds.labels) {
            counts[l as usize] += 1;
            for (s, v) in sums[l as usize * d..][..d].iter_mut().zip(p) {
                *s += *v as f64;
            }
        }
        let mut shift = 0f64;
        for j in 0..k {
            // Empty clusters keep their previous centre.
            moved[j] = 0.0;
            if counts[j] == 0 {
                continue;
            }
            let mut mj = 0f64;
            for t in 0..d {
                let v = (sums[j * d + t] / counts[j] as f64) as f32;
                shift += ((v - c[j * d + t]) as f64).powi(2);
                mj += (v as f64 - c[j * d + t] as f64).powi(2);
                c[j * d + t] = v;
            }
            moved[j] = mj.sqrt() * (1.0 + BOUND_SLACK);
        }
        if shift <= tol {
            break;
        }
    }
    // The inertia of the final centres: each point's squared distance to its
    // centre, summed in point order (as a full pass would).
    let mut inertia = 0f64;
    let mut own = [0f32; 1];
    bounds.relabel(x, d, &c, &moved, |p, label, best| {
        let best = best.unwrap_or_else(|| {
            point_dists(p, &c[label as usize * d..][..d], &mut own);
            own[0]
        });
        inertia += best as f64;
    });
    (c, inertia)
}

/// Hamerly's bounds for [`lloyd_host`]: each point's centre, an upper bound
/// on its distance to that centre and a lower bound on its distance to any
/// other (Euclidean, not squared).
struct Bounds {
    labels: Vec<u32>,
    upper: Vec<f64>,
    lower: Vec<f64>,
    dist: Vec<f32>,
}

impl Bounds {
    /// Labels every point with a full distance pass.
    #[inline(always)]
    fn new(x: &[f32], d: usize, c: &[f32]) -> Self {
        let n = x.len() / d;
        let mut b = Bounds { labels: vec![0; n], upper: vec![0.0; n], lower: vec![0.0; n], dist: vec![0.0; c.len() / d] };
        for (i, p) in x.chunks_exact(d).enumerate() {
            b.recompute(i, p, c);
        }
        b
    }

    /// A full distance pass for point `i`; returns its squared distance to
    /// its centre.
    #[inline(always)]
    fn recompute(&mut self, i: usize, p: &[f32], c: &[f32]) -> f32 {
        let (best, arg, second) = nearest_two(p, c, &mut self.dist);
        self.labels[i] = arg;
        self.upper[i] = (best as f64).sqrt() * (1.0 + BOUND_SLACK);
        self.lower[i] = (second as f64).sqrt() * (1.0 - BOUND_SLACK);
        best
    }

    /// Moves the bounds by how far each centre moved and relabels the points
    /// whose centre may have changed. `visit(point, label, best)` sees every
    /// point in order, with its squared distance to its centre when it was
    /// recomputed.
    #[inline(always)]
    fn relabel(&mut self, x: &[f32], d: usize, c: &[f32], moved: &[f64], mut visit: impl FnMut(&[f32], u32, Option<f32>)) {
        let k = moved.len();
        // Half the distance from each centre to its nearest other centre.
        let half_gap: Vec<f64> = (0..k)
            .map(|j| {
                let cj = &c[j * d..(j + 1) * d];
                let nearest = (0..k).filter(|&m| m != j).map(|m| sq_dist_f64(cj, &c[m * d..(m + 1) * d])).fold(f64::INFINITY, f64::min);
                0.5 * nearest.sqrt() * (1.0 - BOUND_SLACK)
            })
            .collect();
        // A point's other centres moved at most by the largest move among
        // them: the largest, or the second largest for the point whose
        // centre moved most.
        let (mut m1, mut m1_at, mut m2) = (0f64, usize::MAX, 0f64);
        for (j, &m) in moved.iter().enumerate() {
            if m > m1 {
                (m2, m1, m1_at) = (m1, m, j);
            } else if m > m2 {
                m2 = m;
            }
        }
        for (i, p) in x.chunks_exact(d).enumerate() {
            let a = self.labels[i] as usize;
            self.upper[i] += moved[a];
            self.lower[i] -= if a == m1_at { m2 } else { m1 };
            if self.upper[i] * (1.0 + BOUND_SLACK) < self.lower[i].max(half_gap[a]) {
                visit(p, self.labels[i], None);
            } else {
                let best = self.recompute(i, p, c);
                visit(p, self.labels[i], Some(best));
            }
        }
    }
}

/// Squared distance of two f32 vectors, accumulated in f64.
fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum()
}

/// k-means++ seeding on the host (same draws as the tensor version).
fn plus_plus_host(x: &[f32], d: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let n = x.len() / d;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut c = row(rng.below(n)).to_vec();
    let mut best = vec![0f32; n];
    let mut one = [0f32; 1];
    for (i, b) in best.iter_mut().enumerate() {
        point_dists(row(i), &c, &mut one);
        *b = one[0];
    }
    while c.len() / d < k {
        let total: f64 = best.iter().map(|&v| v as f64).sum();
        let next = if total > 0.0 {
            let mut t = rng.next_f64() * total;
            let mut pick = n - 1;
            for (i, &wi) in best.iter().enumerate() {
                if t < wi as f64 {
                    pick = i;
                    break;
                }
                t -= wi as f64;
            }
            pick
        } else {
            rng.below(n)
        };
        let new = row(next).to_vec();
        for (i, b) in best.iter_mut().enumerate() {
            point_dists(row(i), &new, &mut one);
            *b = b.min(one[0]);
        }
        c.extend_from_slice(&new);
    }
    c
}

/// Best of `restarts` k-means runs on the rows of `x`: k-means++ seeding,
/// then Lloyd rounds until the centres move less than 1e-4 times the mean
/// variance (as scikit-learn) or 300 rounds. On the CPU the runs use plain
/// Rust over the rows (the restarts in parallel, as many threads as
/// libtorch is set to use); elsewhere they use tensor operations.
pub fn kmeans(x: &Tensor, k: i64, restarts: usize, rng: &mut SplitMix64) -> KMeansFit {
    if x.device() == Device::Cpu {
        if let Some(fit) = kmeans_host(x, k, restarts, rng) {
            return fit;
        }
    }
    kmeans_torch(x, k, restarts, rng)
}

fn kmeans_host(x: &Tensor, k: i64, restarts: usize, rng: &mut SplitMix64) -> Option<KMeansFit> {
    let (n, d) = (x.size()[0] as usize, x.size()[1] as usize);
    if n == 0 || d == 0 {
        return None;
    }
    let k = (k.max(1) as usize).min(n);
    let data = Vec::<f32>::try_from(x.detach().to_kind(Kind::Float).contiguous().view(-1)).ok()?;
    let var = f64::try_from(x.detach().to_kind(Kind::Double).var_dim(0, false, false).mean(Kind::Double)).ok()?;
    let tol = 1e-4 * var;
    // Seeds drawn in order (one stream), the runs in parallel.
    let seeds: Vec<Vec<f32>> = (0..restarts.max(1)).map(|_| plus_plus_host(&data, d, k, rng)).collect();
    let threads = (tch::get_num_threads().max(1) as usize).min(seeds.len());
    let mut fits: Vec<Option<(Vec<f32>, f64)>> = vec![None; seeds.len()];
    let per = seeds.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (chunk, out) in seeds.chunks(per).zip(fits.chunks_mut(per)) {
            let data = &data;
            s.spawn(move || {
                for (seed, o) in chunk.iter().zip(out.iter_mut()) {
                    *o = Some(lloyd_host(data, d, seed.clone(), tol));
                }
            });
        }
    });
    // Ties go to the earliest restart.
    let mut best: Option<(Vec<f32>, f64)> = None;
    for f in fits.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| f.1 < b.1) {
            best = Some(f);
        }
    }
    let (c, inertia) = best?;
    let centres = Tensor::from_slice(&c).view([k as i64, d as i64]).to_kind(x.kind());
    Some(KMeansFit { centres, inertia })
}

/// Best of `restarts` k-means runs on the rows of `x` (a float tensor on any
/// device). Like scikit-learn, the tolerance is 1e-4 times the mean variance.
fn kmeans_torch(x: &Tensor, k: i64, restarts: usize, rng: &mut SplitMix64) -> KMeansFit {
    let _guard = tch::no_grad_guard();
    let var = f64::try_from(x.var_dim(0, false, false).mean(Kind::Double)).unwrap_or(0.0);
    let tol = 1e-4 * var;
    let mut best: Option<KMeansFit> = None;
    for _ in 0..restarts.max(1) {
        let fit = lloyd(x, plus_plus(x, k, rng), 300, tol);
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    best.unwrap_or_else(|| KMeansFit { centres: x.narrow(0, 0, k), inertia: f64::INFINITY })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Well-separated blobs: k-means finds the true centres (any order),
    /// the inertia is the within-blob scatter, and a fixed seed repeats.
    #[test]
    fn finds_separated_blobs_and_is_reproducible() {
        tch::manual_seed(3);
        let truth = Tensor::randn([6, 8], (Kind::Float, Device::Cpu)) * 10.0;
        let lab = Tensor::arange(600, (Kind::Int64, Device::Cpu)).remainder(6);
        let noise = Tensor::randn([600, 8], (Kind::Float, Device::Cpu)) * 0.1;
        let x = truth.index_select(0, &lab) + &noise;
        let fit = kmeans(&x, 6, 5, &mut SplitMix64::new(1));
        // Each true centre has a fitted centre within 0.1.
        let d = sq_dist(&truth, &fit.centres).sqrt();
        let nearest = Vec::<f32>::try_from(d.amin(1, false)).unwrap();
        assert!(nearest.iter().all(|&v| v < 0.1), "{nearest:?}");
        let scatter = f64::try_from(noise.square().sum(Kind::Double)).unwrap();
        assert!((fit.inertia - scatter).abs() < 0.05 * scatter, "{} vs {scatter}", fit.inertia);
        let again = kmeans(&x, 6, 5, &mut SplitMix64::new(1));
        assert_eq!(Vec::<f32>::try_from(fit.centres.view(-1)).unwrap(), Vec::<f32>::try_from(again.centres.view(-1)).unwrap());
        // The tensor version (used off the CPU) agrees.
        let t = kmeans_torch(&x, 6, 5, &mut SplitMix64::new(1));
        let dt = Vec::<f32>::try_from(sq_dist(&truth, &t.centres).sqrt().amin(1, false)).unwrap();
        assert!(dt.iter().all(|&v| v < 0.1) && (t.inertia - fit.inertia).abs() < 1e-3 * fit.inertia);
    }

    /// A full distance pass: every row of `x` (n × d) to its nearest
    /// centre; returns the summed squared distance.
    fn assign(x: &[f32], d: usize, centres: &[f32], labels: &mut [u32]) -> f64 {
        let k = centres.len() / d;
        let mut dist = vec![0f32; k];
        let mut total = 0f64;
        for (p, l) in x.chunks_exact(d).zip(labels.iter_mut()) {
            point_dists(p, centres, &mut dist);
            let (mut best, mut arg) = (f32::INFINITY, 0);
            for (j, &v) in dist.iter().enumerate() {
                if v < best {
                    best = v;
                    arg = j;
                }
            }
            *l = arg as u32;
            total += best as f64;
        }
        total
    }

    /// Plain Lloyd rounds (a full distance pass each round): what
    /// [`lloyd_host`] must reproduce bit for bit.
    fn lloyd_plain(x: &[f32], d: usize, mut c: Vec<f32>, tol: f64) -> (Vec<f32>, f64) {
        let (n, k) = (x.len() / d, c.len() / d);
        let mut labels = vec![0u32; n];
        for _ in 0..300 {
            assign(x, d, &c, &mut labels);
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0usize; k];
            for (p, &l) in x.chunks_exact(d).zip(&labels) {
                counts[l as usize] += 1;
                for (s, v) in sums[l as usize * d..][..d].iter_mut().zip(p) {
                    *s += *v as f64;
                }
            }
            let mut shift = 0f64;
            for j in 0..k {
                if counts[j] == 0 {
                    continue;
                }
                for t in 0..d {
                    let v = (sums[j * d + t] / counts[j] as f64) as f32;
                    shift += ((v - c[j * d + t]) as f64).powi(2);
                    c[j * d + t] = v;
                }
            }
            if shift <= tol {
                break;
            }
        }
        let inertia = assign(x, d, &c, &mut labels);
        (c, inertia)
    }

    /// The bounded rounds give the same bits as plain Lloyd rounds: on
    /// overlapping blobs, on uniform noise (many near-ties), on a lattice
    /// with duplicated points (exact ties), for k = 1 and with a centre
    /// that empties.
    #[test]
    fn bounded_rounds_equal_plain_lloyd() {
        let mut rng = SplitMix64::new(7);
        let mut cases: Vec<(Vec<f32>, usize, usize)> = Vec::new();
        // Overlapping blobs, d = 32, k = 10 (the DEC start's shape).
        let (n, d) = (3000, 32);
        let means: Vec<f32> = (0..10 * d).map(|_| (rng.next_f64() * 4.0 - 2.0) as f32).collect();
        let blobs: Vec<f32> = (0..n).flat_map(|i| {
            let m = (i % 10) * d;
            let means = &means;
            (0..d).map(move |t| means[m + t]).collect::<Vec<_>>()
        }).zip((0..n * d).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)).map(|(m, e)| m + 1.5 * e).collect();
        cases.push((blobs, d, 10));
        // Uniform noise in 3-d, k = 7.
        cases.push(((0..2000 * 3).map(|_| rng.next_f64() as f32).collect(), 3, 7));
        // A 10 × 10 integer lattice, every point twice: exact distance ties.
        let lattice: Vec<f32> = (0..200).flat_map(|i| [((i / 2) % 10) as f32, ((i / 2) / 10) as f32]).collect();
        cases.push((lattice.clone(), 2, 6));
        cases.push((lattice, 2, 1));
        for (x, d, k) in cases {
            for restart in 0..4 {
                let seed = plus_plus_host(&x, d, k, &mut rng);
                let (a, ia) = lloyd_host(&x, d, seed.clone(), 0.0);
                let (b, ib) = lloyd_plain(&x, d, seed, 0.0);
                assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "d {d} k {k} restart {restart}");
                assert_eq!(ia.to_bits(), ib.to_bits());
            }
        }
        // A centre far from every point empties and keeps its place.
        let x: Vec<f32> = (0..100).map(|i| (i % 10) as f32).collect();
        let seed = vec![0.0, 9.0, 1000.0];
        let (a, _) = lloyd_host(&x, 1, seed.clone(), 0.0);
        assert_eq!(a, lloyd_plain(&x, 1, seed, 0.0).0);
        assert_eq!(a[2], 1000.0);
    }

    #[test]
    #[ignore]
    fn kmeans_speed() {
        let _g = crate::device::ThreadGuard::set(1);
        tch::manual_seed(3);
        let centres = Tensor::randn([10, 32], (Kind::Float, Device::Cpu)) * 2.0;
        let lab = Tensor::randint(10, [3639], (Kind::Int64, Device::Cpu));
        let x = centres.index_select(0, &lab) + Tensor::randn([3639, 32], (Kind::Float, Device::Cpu));
        let t0 = std::time::Instant::now();
        let fit = kmeans(&x, 10, 20, &mut SplitMix64::new(1));
        eprintln!("host kmeans {:.1} ms inertia {}", t0.elapsed().as_secs_f64() * 1e3, fit.inertia);
        let t0 = std::time::Instant::now();
        let torch = kmeans_torch(&x, 10, 20, &mut SplitMix64::new(1));
        eprintln!("torch kmeans {:.1} ms inertia {}", t0.elapsed().as_secs_f64() * 1e3, torch.inertia);
        assert!((torch.inertia - fit.inertia).abs() < 0.01 * fit.inertia);
    }
}
