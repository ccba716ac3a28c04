//! The loss terms of SEDR (reference spec §4–§5), written for any float kind
//! so they can be gradient-checked in float64.
//!
//! The plain forms (`sce`, `edge_bce`, `mse`, …) are the reference
//! definitions. Training uses the `*_and_grad` forms, which return the same
//! values together with their exact gradients computed without autograd
//! (the edge loss as gathers and gather-sums, on the CPU in plain Rust; the
//! reconstruction losses in closed form, for the GCN decoder without ever
//! forming the n × d reconstruction). Tests check them against autograd.

use tch::{Device, Kind, Reduction, Tensor};

/// Scaled cosine error: mean over rows of (1 − cos(a_i, b_i))^alpha.
pub fn sce(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    sce_rows(a, b, alpha).mean(None::<Kind>)
}

/// The per-row terms (1 − cos(a_i, b_i))^alpha of [`sce`]. Averaging them
/// with a 0/1 row weight gives the SCE of the selected rows without
/// gathering them (a gather's backward is a slow scatter on the CPU).
pub fn sce_rows(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    let unit = |t: &Tensor| {
        let norm = t.square().sum_dim_intlist(1, true, None::<Kind>).sqrt().clamp_min(1e-12);
        t / norm
    };
    let cos = (unit(a) * unit(b)).sum_dim_intlist(1, false, None::<Kind>);
    (-cos + 1.0).pow_tensor_scalar(alpha)
}

/// Edge reconstruction: BCE-with-logits of inner products z_i·z_j over
/// positive and negative pairs, times Kipf's GAE norm.
pub fn edge_bce(z: &Tensor, pos: (&Tensor, &Tensor), neg: Option<(&Tensor, &Tensor)>, norm: f64) -> Tensor {
    let logit = |src: &Tensor, dst: &Tensor| {
        (z.index_select(0, src) * z.index_select(0, dst)).sum_dim_intlist(1, false, None::<Kind>)
    };
    let lp = logit(pos.0, pos.1);
    let (logits, labels) = match neg {
        Some((s, d)) if s.size()[0] > 0 => {
            let ln = logit(s, d);
            let y = Tensor::cat(&[lp.ones_like(), ln.zeros_like()], 0);
            (Tensor::cat(&[lp, ln], 0), y)
        }
        _ => {
            let y = lp.ones_like();
            (lp, y)
        }
    };
    logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, Reduction::Mean) * norm
}

/// Index pairs (src_e, dst_e) of n spots, sorted by src (CSR-like
/// `src_offsets`), with the permutation that sorts them by dst. Both
/// groupings turn the sums Σ_e c_e z_dst / Σ_e c_e z_src into gather-sums.
pub struct Pairs {
    pub n: i64,
    pub src: Tensor,
    pub dst: Tensor,
    pub src_offsets: Tensor,
    /// src in dst-sorted order, with the permutation and its offsets.
    pub src_by_dst: Tensor,
    pub by_dst: Tensor,
    pub dst_offsets: Tensor,
}

impl Pairs {
    /// From host vectors; `src` must be sorted ascending and all ids < n.
    pub fn from_host(n: usize, src: &[i64], dst: &[i64], device: Device) -> Pairs {
        let counts = |ids: &[i64]| {
            let mut c = vec![0i64; n + 1];
            for &i in ids {
                c[i as usize + 1] += 1;
            }
            for i in 0..n {
                c[i + 1] += c[i];
            }
            c
        };
        let src_offsets = counts(src);
        let dst_offsets = counts(dst);
        // Counting sort by dst (stable).
        let mut next = dst_offsets.clone();
        let mut by_dst = vec![0i64; dst.len()];
        for (e, &j) in dst.iter().enumerate() {
            let slot = &mut next[j as usize];
            by_dst[*slot as usize] = e as i64;
            *slot += 1;
        }
        let src_by_dst: Vec<i64> = by_dst.iter().map(|&e| src[e as usize]).collect();
        let t = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Pairs {
            n: n as i64,
            src: t(src),
            dst: t(dst),
            src_offsets: t(&src_offsets),
            src_by_dst: t(&src_by_dst),
            by_dst: t(&by_dst),
            dst_offsets: t(&dst_offsets),
        }
    }

    /// From device tensors; `src` must be sorted ascending.
    pub fn from_device(n: i64, src: Tensor, dst: Tensor) -> Pairs {
        let offsets = |ids: &Tensor| {
            let c = ids.bincount(None::<Tensor>, n).cumsum(0, Kind::Int64);
            Tensor::cat(&[c.zeros_like().narrow(0, 0, 1), c], 0)
        };
        let by_dst = dst.argsort_stable(true, 0, false);
        Pairs {
            n,
            src_offsets: offsets(&src),
            dst_offsets: offsets(&dst),
            src_by_dst: src.index_select(0, &by_dst),
            by_dst,
            src,
            dst,
        }
    }

    pub fn len(&self) -> i64 {
        self.src.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inner products z_src · z_dst.
    fn logits(&self, z: &Tensor) -> Tensor {
        (z.index_select(0, &self.src) * z.index_select(0, &self.dst)).sum_dim_intlist(1, false, None::<Kind>)
    }

    /// Σ_e c_e (e_src z_dstᵀ + e_dst z_srcᵀ): the gradient of Σ_e f(z_src·z_dst)
    /// with c_e = f′.
    fn pair_grad(&self, z: &Tensor, c: &Tensor) -> Tensor {
        let bag = |idx: &Tensor, offsets: &Tensor, w: &Tensor| Tensor::embedding_bag(z, idx, offsets, false, 0, false, Some(w), true).0;
        bag(&self.dst, &self.src_offsets, c) + bag(&self.src_by_dst, &self.dst_offsets, &c.index_select(0, &self.by_dst))
    }
}

/// log(1 + e^l), exactly (libtorch's softplus returns l itself above 20).
fn softplus_exact(l: &Tensor) -> Tensor {
    l.clamp_min(0.0) + l.abs().neg().exp().log1p()
}

/// [`edge_bce`] and its gradient with respect to z, computed without
/// autograd (gathers and gather-sums only; autograd's scatter backward of
/// the gathers is several times slower on the CPU). Returns (loss, dL/dz).
pub fn edge_bce_and_grad(z: &Tensor, pos: &Pairs, neg: Option<&Pairs>, norm: f64) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let z = z.detach().contiguous();
        let neg = neg.filter(|p| !p.is_empty());
        let m = (pos.len() + neg.map_or(0, Pairs::len)) as f64;
        let lp = pos.logits(&z);
        // BCE with logits: y = 1 → softplus(−l), y = 0 → softplus(l).
        let mut value = softplus_exact(&-&lp).sum(Kind::Double);
        // d/dl: sigmoid(l) − y.
        let mut grad = pos.pair_grad(&z, &((lp.sigmoid() - 1.0) * (norm / m)));
        if let Some(neg) = neg {
            let ln = neg.logits(&z);
            value += softplus_exact(&ln).sum(Kind::Double);
            grad += neg.pair_grad(&z, &(ln.sigmoid() * (norm / m)));
        }
        ((value * (norm / m)).to_kind(z.kind()), grad)
    })
}

/// Index pairs on the host (CPU training): grouped by source (CSR-like),
/// with the pair ids sorted by destination.
pub struct HostPairs {
    pub n: usize,
    /// Source of each pair (sorted ascending) and its CSR offsets (n + 1).
    pub src: Vec<u32>,
    pub src_offsets: Vec<usize>,
    pub dst: Vec<u32>,
    /// Pair ids sorted (stably) by destination, and their offsets (n + 1).
    pub by_dst: Vec<u32>,
    pub dst_offsets: Vec<usize>,
    /// (i, j) is a pair exactly when (j, i) is: the destination-side sum
    /// then equals the source-side one (c_ij = c_ji because the inner product
    /// is computed the same way for both).
    pub symmetric: bool,
    /// For a symmetric set: whether pair e has src > dst, and the id of its
    /// reverse pair (its logit is the reverse's: the inner product is
    /// symmetric bit for bit). Empty otherwise.
    mirrored: Vec<bool>,
    reverse: Vec<u32>,
}

impl HostPairs {
    /// `src` must be sorted ascending; ids must be < n.
    pub fn new(n: usize, src: Vec<u32>, dst: Vec<u32>) -> HostPairs {
        let offsets = |ids: &[u32]| {
            let mut c = vec![0usize; n + 1];
            for &i in ids {
                c[i as usize + 1] += 1;
            }
            for i in 0..n {
                c[i + 1] += c[i];
            }
            c
        };
        let src_offsets = offsets(&src);
        let dst_offsets = offsets(&dst);
        let mut next = dst_offsets.clone();
        let mut by_dst = vec![0u32; dst.len()];
        for (e, &j) in dst.iter().enumerate() {
            let slot = &mut next[j as usize];
            by_dst[*slot] = e as u32;
            *slot += 1;
        }
        let mut reverse = Vec::new();
        let symmetric = src.iter().zip(&dst).all(|(&i, &j)| {
            let at = src_offsets[j as usize];
            match dst[at..src_offsets[j as usize + 1]].iter().position(|&v| v == i) {
                Some(p) => {
                    reverse.push((at + p) as u32);
                    true
                }
                None => false,
            }
        });
        let mirrored = if symmetric { src.iter().zip(&dst).map(|(i, j)| i > j).collect() } else { Vec::new() };
        if !symmetric {
            reverse = Vec::new();
        }
        HostPairs { n, src, src_offsets, dst, by_dst, dst_offsets, symmetric, mirrored, reverse }
    }

    pub fn len(&self) -> usize {
        self.dst.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dst.is_empty()
    }

    /// The same pairs as device tensors.
    pub fn to_pairs(&self, device: Device) -> Pairs {
        let s: Vec<i64> = self.src.iter().map(|&v| v as i64).collect();
        let d: Vec<i64> = self.dst.iter().map(|&v| v as i64).collect();
        Pairs::from_host(self.n, &s, &d, device)
    }
}

/// Inner product with 8 independent partial sums (so it vectorises; a plain
/// fold is one serial chain of additions). Symmetric bit for bit:
/// dot(a, b) == dot(b, a).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// out[o] = z_src(first+o) · z_dst(first+o), for o in 0..out.len(), skipping
/// the pairs `skip` says are filled otherwise. `K` > 0 fixes the width at
/// compile time (the loops unroll); the arithmetic is the same for any `K`.
#[inline(always)]
fn logits_body<const K: usize>(zv: &[f32], k: usize, src: &[u32], dst: &[u32], skip: Option<&[bool]>, first: usize, out: &mut [f32]) {
    let k = if K > 0 { K } else { k };
    for (o, l) in out.iter_mut().enumerate() {
        if skip.is_some_and(|s| s[first + o]) {
            continue;
        }
        let (i, j) = (src[first + o] as usize, dst[first + o] as usize);
        *l = dot(&zv[i * k..][..k], &zv[j * k..][..k]);
    }
}

/// For rows r of `rows` (spot first + r): g_r += Σ_{q ∈ offsets[i]..offsets[i+1]}
/// scale·c[e_q]·z[other[e_q]], with e_q = ids[q] (or q itself). With `K` > 0
/// the row is accumulated in registers; each element sees the same
/// additions in the same order either way.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn accum_body<const K: usize>(zv: &[f32], k: usize, offsets: &[usize], ids: Option<&[u32]>, other: &[u32], c: &[f32], scale: f32, first: usize, rows: &mut [f32]) {
    if K > 0 {
        for (r, g) in rows.chunks_exact_mut(K).enumerate() {
            let i = first + r;
            let mut acc = [0f32; K];
            acc.copy_from_slice(g);
            for q in offsets[i]..offsets[i + 1] {
                let e = ids.map_or(q, |v| v[q] as usize);
                let ce = c[e] * scale;
                let zo = &zv[other[e] as usize * K..][..K];
                for (a, z) in acc.iter_mut().zip(zo) {
                    *a += ce * z;
                }
            }
            g.copy_from_slice(&acc);
        }
        return;
    }
    for (r, g) in rows.chunks_mut(k).enumerate() {
        let i = first + r;
        for q in offsets[i]..offsets[i + 1] {
            let e = ids.map_or(q, |v| v[q] as usize);
            let ce = c[e] * scale;
            let zo = &zv[other[e] as usize * k..][..k];
            for (gv, zv) in g.iter_mut().zip(zo) {
                *gv += ce * zv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn logits_avx2<const K: usize>(zv: &[f32], k: usize, src: &[u32], dst: &[u32], skip: Option<&[bool]>, first: usize, out: &mut [f32]) {
    logits_body::<K>(zv, k, src, dst, skip, first, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn accum_avx2<const K: usize>(zv: &[f32], k: usize, offsets: &[usize], ids: Option<&[u32]>, other: &[u32], c: &[f32], scale: f32, first: usize, rows: &mut [f32]) {
    accum_body::<K>(zv, k, offsets, ids, other, c, scale, first, rows)
}

pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Calls `$f::<K>` with the embedding width as a compile-time constant for
/// the common widths (SEDR's default latent is 32), else `$f::<0>`.
macro_rules! by_width {
    ($k:expr, $f:ident, $($arg:expr),*) => {
        match $k {
            16 => $f::<16>($($arg),*),
            32 => $f::<32>($($arg),*),
            64 => $f::<64>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}

fn logits_kernel(zv: &[f32], k: usize, src: &[u32], dst: &[u32], skip: Option<&[bool]>, first: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 is available (checked at run time).
        return unsafe { by_width!(k, logits_avx2, zv, k, src, dst, skip, first, out) };
    }
    by_width!(k, logits_body, zv, k, src, dst, skip, first, out)
}

#[allow(clippy::too_many_arguments)]
fn accum_kernel(zv: &[f32], k: usize, offsets: &[usize], ids: Option<&[u32]>, other: &[u32], c: &[f32], scale: f32, first: usize, rows: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 is available (checked at run time).
        return unsafe { by_width!(k, accum_avx2, zv, k, offsets, ids, other, c, scale, first, rows) };
    }
    by_width!(k, accum_body, zv, k, offsets, ids, other, c, scale, first, rows)
}

/// Runs `f(first_index, part)` over contiguous parts of `out`, in parallel
/// when it is long enough to pay for the threads.
fn par_chunks<T: Send>(out: &mut [T], threads: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let workers = threads.clamp(1, (out.len() / 20_000).max(1));
    if workers == 1 {
        f(0, out);
        return;
    }
    let per = out.len().div_ceil(workers);
    std::thread::scope(|s| {
        for (w, part) in out.chunks_mut(per).enumerate() {
            let f = &f;
            s.spawn(move || f(w * per, part));
        }
    });
}

/// Splits rows 0..n into at most `threads` contiguous blocks of similar
/// pair counts and runs `f(first_row, rows_of_out)` on each in parallel.
fn row_blocks<T: Send>(offsets: &[usize], width: usize, out: &mut [T], threads: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let n = offsets.len() - 1;
    let total = offsets[n];
    let workers = threads.clamp(1, (total / 20_000).max(1));
    if workers == 1 {
        f(0, out);
        return;
    }
    let mut cuts = vec![0usize];
    for w in 1..workers {
        let target = total * w / workers;
        let r = offsets.partition_point(|&o| o < target).min(n);
        cuts.push(r.max(*cuts.last().unwrap_or(&0)));
    }
    cuts.push(n);
    std::thread::scope(|s| {
        let mut rest = out;
        for w in 0..workers {
            let (a, b) = (cuts[w], cuts[w + 1]);
            let (mine, tail) = rest.split_at_mut((b - a) * width);
            rest = tail;
            let f = &f;
            s.spawn(move || f(a, mine));
        }
    });
}

/// [`edge_bce`] and dL/dz on the host (CPU tensors): inner products and
/// gather-sums in plain Rust over the rows' pair lists, the per-pair
/// softplus/sigmoid through libtorch's vectorised kernels. No n·k or E·k
/// temporaries. Returns (loss, dL/dz).
pub fn edge_bce_and_grad_host(z: &Tensor, pos: &HostPairs, neg: Option<&HostPairs>, norm: f64, threads: usize) -> crate::error::Result<(f64, Tensor)> {
    let (n, k) = (z.size()[0] as usize, z.size()[1] as usize);
    let zv = Vec::<f32>::try_from(z.detach().to_kind(Kind::Float).contiguous().view(-1))?;
    let neg = neg.filter(|p| !p.is_empty());
    let m = (pos.len() + neg.map_or(0, HostPairs::len)) as f64;
    let mut grad = vec![0f32; n * k];
    let mut loss = 0f64;
    for (set, label) in std::iter::once((pos, 1.0)).chain(neg.map(|p| (p, 0.0))) {
        if set.n != n {
            return Err(crate::error::SedrError::Internal("edge pairs and embedding disagree on n".into()));
        }
        // Inner products, in pair order.
        let mut logit = vec![0f32; set.len()];
        let skip = if set.mirrored.is_empty() { None } else { Some(set.mirrored.as_slice()) };
        par_chunks(&mut logit, threads, |first, part| logits_kernel(&zv, k, &set.src, &set.dst, skip, first, part));
        if let Some(skip) = skip {
            for (e, &m) in skip.iter().enumerate() {
                if m {
                    logit[e] = logit[set.reverse[e] as usize];
                }
            }
        }
        // BCE with logits and its derivative (sigmoid(l) − y), vectorised.
        let (value, c) = tch::no_grad(|| -> crate::error::Result<(f64, Vec<f32>)> {
            let l = Tensor::from_slice(&logit);
            let sp = if label == 1.0 { softplus_exact(&-&l) } else { softplus_exact(&l) };
            let value = f64::try_from(sp.sum(Kind::Double))?;
            let c = (l.sigmoid() - label) * (norm / m);
            Ok((value, Vec::<f32>::try_from(c)?))
        })?;
        loss += value;
        // Source side: g_i += Σ_e c_e z_dst(e); destination side:
        // g_u += Σ_{e: dst = u} c_e z_src(e) (for symmetric sets the same sum).
        let twice = if set.symmetric { 2.0 } else { 1.0 };
        row_blocks(&set.src_offsets, k, &mut grad, threads, |first, rows| {
            accum_kernel(&zv, k, &set.src_offsets, None, &set.dst, &c, twice, first, rows)
        });
        if !set.symmetric {
            row_blocks(&set.dst_offsets, k, &mut grad, threads, |first, rows| {
                accum_kernel(&zv, k, &set.dst_offsets, Some(&set.by_dst), &set.src, &c, 1.0, first, rows)
            });
        }
    }
    let g = Tensor::from_slice(&grad).view([n as i64, k as i64]).to_kind(z.kind());
    Ok((loss * norm / m, g))
}

/// The masked-autoencoder part of a reconstruction loss: the 0/1 row
/// indicator m (n), the number of masked rows and the mask token t (1 × d)
/// added to the target rows (None: the target is X itself, as when the
/// token replaces the masked rows; the terms in t are then skipped).
pub struct MaskedRows<'a> {
    pub ind: &'a Tensor,
    pub n_mask: i64,
    pub token: Option<&'a Tensor>,
}

/// Values and gradients of the reconstruction losses.
pub struct ReconLoss {
    /// MSE(R, X), unweighted (scalar tensor).
    pub mse: Tensor,
    /// SCE over the masked rows of (R, X + m·t), unweighted (scalar; 0 without a mask).
    pub sce: Tensor,
    /// d/dR of rec_w·MSE + self_w·SCE.
    pub d_recon: Tensor,
    /// d/dt of self_w·SCE (the token enters the SCE target).
    pub d_token: Option<Tensor>,
}

/// Row statistics of a reconstruction R against the input X (n-vectors):
/// ‖R_i‖², ⟨R_i, X_i⟩, ‖X_i‖², and with a mask ⟨R_i, t⟩, ⟨X_i, t⟩, ‖t‖².
struct RowStats {
    rr: Tensor,
    rx: Tensor,
    xx: Tensor,
    /// Σ_i ‖R_i − X_i‖² when known directly (else rr − 2 rx + xx).
    dd_sum: Option<Tensor>,
    masked: Option<(Tensor, Tensor, Tensor)>,
}

/// The gradient of rec_w·MSE + self_w·SCE in coefficient form:
/// dL/dR = c_r ⊙ R + c_x ⊙ X + c_t tᵀ (row-wise scalars) and
/// dL/dt = Rᵀ v_r + Xᵀ v_x + s_t·t.
struct HeadCoef {
    mse: Tensor,
    sce: Tensor,
    c_r: Tensor,
    c_x: Tensor,
    masked: Option<(Tensor, Tensor, Tensor, Tensor)>,
}

/// The MSE/SCE values and gradient coefficients from row statistics. SCE
/// per masked row: (1 − cos_i)^α with cos_i = ⟨R_i, T_i⟩ / (|R_i| |T_i|),
/// T_i = X_i + t, norms clamped at 1e-12 as in F.normalize.
fn head_coefficients(st: RowStats, n: i64, d: i64, mask: Option<&MaskedRows>, rec_w: f64, self_w: f64, alpha: f64) -> HeadCoef {
    let kind = st.rr.kind();
    let eps = 1e-12;
    let dd_sum = st.dd_sum.unwrap_or_else(|| (&st.rr - &st.rx * 2.0 + &st.xx).sum(Kind::Double));
    let mse = (dd_sum.to_kind(Kind::Double) / (n * d) as f64).to_kind(kind);
    let w = 2.0 * rec_w / (n * d) as f64;
    let Some(m) = mask.filter(|m| m.n_mask > 0) else {
        let c_r = st.rr.full_like(w);
        return HeadCoef { mse, sce: Tensor::zeros([], (kind, st.rr.device())), c_x: -&c_r, c_r, masked: None };
    };
    let ind = m.ind.reshape([n]).to_kind(kind);
    let (r_t, tt_row) = match &st.masked {
        Some((rt, xt, tt)) => (&st.rx + &ind * rt, &st.xx + &ind * (xt * 2.0 + tt)),
        None => (st.rx.shallow_clone(), st.xx.shallow_clone()),
    };
    let nr = st.rr.sqrt().clamp_min(eps);
    let nt = tt_row.sqrt().clamp_min(eps);
    let cos = &r_t / (&nr * &nt);
    // 1 − cos, kept ≥ 0 against rounding (cos can exceed 1 by an ulp).
    let e = (-&cos + 1.0).clamp_min(0.0);
    let sce = (e.pow_tensor_scalar(alpha) * &ind).sum(kind) / m.n_mask as f64;
    // dL/dcos_i on the masked rows (L = self_w · SCE); d cos/dR = T/(|R||T|)
    // − cos·R/|R|², d cos/dT = R/(|R||T|) − cos·T/|T|² (the second terms
    // vanish where a norm is clamped).
    let g = e.pow_tensor_scalar(alpha - 1.0) * &ind * (-alpha * self_w / m.n_mask as f64);
    let b_t = &g / (&nr * &nt);
    let a_r = -(&g * &cos * st.rr.gt(eps * eps).to_kind(kind) / st.rr.clamp_min(eps * eps));
    // dR = w(R − X) + a_r R + b_t (X + m t).
    let c_r = a_r + w;
    let c_x = &b_t - w;
    if st.masked.is_none() {
        return HeadCoef { mse, sce, c_r, c_x, masked: None };
    }
    let a_t = -(&g * &cos * tt_row.gt(eps * eps).to_kind(kind) / tt_row.clamp_min(eps * eps));
    let c_t = &b_t * &ind;
    // dt = Σ_i m_i dL/dT_i = Rᵀ(m b_t) + Xᵀ(m a_t) + t Σ_i m_i a_t,i.
    let v_x = &a_t * &ind;
    let s_t = v_x.sum(kind);
    HeadCoef { mse, sce, c_r, c_x, masked: Some((c_t.shallow_clone(), c_t, v_x, s_t)) }
}

/// rec_w·MSE(R, X) + self_w·mean_{masked i} (1 − cos(R_i, X_i + t))^α and its
/// gradients, without autograd. The reference computes the SCE on gathered
/// rows of R and of the token-added input X + m·t; here the row statistics
/// are expanded instead: ⟨R_i, T_i⟩ = ⟨R_i, X_i⟩ + m_i ⟨R_i, t⟩ and
/// ‖T_i‖² = ‖X_i‖² + 2 m_i ⟨X_i, t⟩ + m_i ‖t‖².
pub fn recon_loss_and_grad(recon: &Tensor, x: &Tensor, masked: Option<MaskedRows>, rec_w: f64, self_w: f64, alpha: f64) -> ReconLoss {
    tch::no_grad(|| {
        let (n, d) = (recon.size()[0], recon.size()[1]);
        let row_dot = |a: &Tensor, b: &Tensor| (a * b).sum_dim_intlist(1, false, None::<Kind>);
        let diff = recon - x;
        let t = masked.as_ref().and_then(|m| m.token).map(|t| t.reshape([d]));
        let st = RowStats {
            rr: row_dot(recon, recon),
            rx: row_dot(recon, x),
            xx: row_dot(x, x),
            dd_sum: Some(diff.square().sum(Kind::Double)),
            masked: t.as_ref().map(|t| (recon.mv(t), x.mv(t), t.square().sum(recon.kind()))),
        };
        let hc = head_coefficients(st, n, d, masked.as_ref(), rec_w, self_w, alpha);
        let mut d_recon = recon * hc.c_r.unsqueeze(1) + x * hc.c_x.unsqueeze(1);
        let d_token = match (&hc.masked, &t, &masked) {
            (Some((c_t, v_r, v_x, s_t)), Some(t), Some(m)) => {
                d_recon += c_t.unsqueeze(1) * t.unsqueeze(0);
                let dt = recon.transpose(0, 1).mv(v_r) + x.transpose(0, 1).mv(v_x) + t * s_t;
                Some(dt.reshape(m.token.map_or(vec![1, d], |t| t.size()).as_slice()))
            }
            _ => None,
        };
        ReconLoss { mse: hc.mse, sce: hc.sce, d_recon, d_token }
    })
}

/// Gradients of the factored reconstruction R = S·W (S: n × k decoder input,
/// W: k × d): dL/dS, dL/dW and dL/dt.
pub struct FactoredReconLoss {
    pub mse: Tensor,
    pub sce: Tensor,
    pub d_s: Tensor,
    pub d_w: Tensor,
    pub d_token: Option<Tensor>,
}

/// [`recon_loss_and_grad`] for R = S·W without ever forming R (n × d) or its
/// gradient: with G = W Wᵀ and P = X Wᵀ, ‖R_i‖² = S_i G S_iᵀ,
/// ⟨R_i, X_i⟩ = S_i·P_i, ⟨R_i, t⟩ = S_i·(W t), and for
/// dR = c_r ⊙ R + c_x ⊙ X + c_t tᵀ:
/// dS = c_r ⊙ (S G) + c_x ⊙ P + c_t (W t)ᵀ,
/// dW = ((c_r ⊙ S)ᵀ S) W + (c_x ⊙ S)ᵀ X + (Sᵀ c_t) t.
/// Two n·k·d products instead of three, and no n × d elementwise passes.
/// `xx` are the row norms ‖X_i‖² (constant during training).
#[allow(clippy::too_many_arguments)]
pub fn factored_recon_loss_and_grad(s: &Tensor, w: &Tensor, x: &Tensor, xx: &Tensor, masked: Option<MaskedRows>, rec_w: f64, self_w: f64, alpha: f64) -> FactoredReconLoss {
    tch::no_grad(|| {
        let (s, w) = (s.detach(), w.detach());
        let (n, d) = (x.size()[0], x.size()[1]);
        let row_dot = |a: &Tensor, b: &Tensor| (a * b).sum_dim_intlist(1, false, None::<Kind>);
        let g = w.mm(&w.tr());
        let p = x.mm(&w.tr());
        let sg = s.mm(&g);
        let t = masked.as_ref().and_then(|m| m.token).map(|t| t.reshape([d]));
        let wt = t.as_ref().map(|t| w.mv(t));
        let st = RowStats {
            rr: row_dot(&sg, &s),
            rx: row_dot(&s, &p),
            xx: xx.shallow_clone(),
            dd_sum: None,
            masked: match (&t, &wt) {
                (Some(t), Some(wt)) => Some((s.mv(wt), x.mv(t), t.square().sum(x.kind()))),
                _ => None,
            },
        };
        let hc = head_coefficients(st, n, d, masked.as_ref(), rec_w, self_w, alpha);
        let mut d_s = &sg * hc.c_r.unsqueeze(1) + &p * hc.c_x.unsqueeze(1);
        let mut d_w = (&s * hc.c_r.unsqueeze(1)).tr().mm(&s).mm(&w) + (&s * hc.c_x.unsqueeze(1)).tr().mm(x);
        let d_token = match (&hc.masked, &t, &wt, &masked) {
            (Some((c_t, v_r, v_x, s_t)), Some(t), Some(wt), Some(m)) => {
                d_s += c_t.unsqueeze(1) * wt.unsqueeze(0);
                d_w += s.tr().mv(c_t).unsqueeze(1) * t.unsqueeze(0);
                // Rᵀ v = Wᵀ (Sᵀ v).
                let dt = w.tr().mv(&s.tr().mv(v_r)) + x.transpose(0, 1).mv(v_x) + t * s_t;
                Some(dt.reshape(m.token.map_or(vec![1, d], |t| t.size()).as_slice()))
            }
            _ => None,
        };
        FactoredReconLoss { mse: hc.mse, sce: hc.sce, d_s, d_w, d_token }
    })
}

/// VGAE KL term in Kipf's form, −0.5/n · mean_i Σ_j (1 + 2 logσ − μ² − σ²),
/// with the reference's extra 1/n kept so the weights mean the same.
pub fn vgae_kl(mu: &Tensor, log_sigma: &Tensor) -> Tensor {
    let n = mu.size()[0] as f64;
    let inner = (log_sigma * 2.0 + 1.0) - mu.square() - (log_sigma * 2.0).exp();
    inner.sum_dim_intlist(1, false, None::<Kind>).mean(None::<Kind>) * (-0.5 / n)
}

/// DEC target distribution P = q² / Σ_i q, renormalised per row.
pub fn target_distribution(q: &Tensor) -> Tensor {
    let w = q.square() / q.sum_dim_intlist(0, true, None::<Kind>);
    &w / w.sum_dim_intlist(1, true, None::<Kind>)
}

/// KL(P ‖ Q) averaged over all n·K entries (PyTorch's `kl_div` default
/// reduction, as the reference uses; not batchmean).
pub fn dec_kl(q: &Tensor, p: &Tensor) -> Tensor {
    q.clamp_min(1e-12).log().kl_div(p, Reduction::Mean, false)
}

/// Mean squared error over all entries.
pub fn mse(a: &Tensor, b: &Tensor) -> Tensor {
    a.mse_loss(b, Reduction::Mean)
}

#[cfg(test)]
mod tests;
