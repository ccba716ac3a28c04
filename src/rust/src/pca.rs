//! Seeded randomized PCA (Halko et al.) on libtorch: a few hundred
//! milliseconds for 200 components of a 4k × 2k matrix, where R's `prcomp`
//! on the reference BLAS takes over a minute. The Gaussian test matrix comes
//! from SEDR's own seeded generator, so libtorch's global one is untouched.
//!
//! Two entry points share one randomized SVD: [`pca`] on a dense matrix and
//! [`pca_sparse`] on a sparse one that is centred and scaled implicitly
//! (Z = (X − μ)/σ is never formed, so a million spots × 2000 genes needs
//! memory for the nonzeros and a few n × (k + 10) blocks only). For the
//! sparse one, when a cost model says so (a few thousand genes at most),
//! the CPU runs the same randomized SVD through the g × g Gram matrix ZᵀZ,
//! accumulated from the sparse rows: one pass over the pairs of each
//! spot's nonzeros, dense g × g products and one sparse product, instead of
//! ten sparse products with k + 10 columns and the n × (k + 10) QR. The
//! exact PCA (the eigendecomposition of ZᵀZ) is an option.

use crate::device::ThreadGuard;
use crate::error::{Result, SedrError};
use crate::rng::SplitMix64;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

pub struct Pca {
    /// n × k scores, column-major (R's layout); empty with [`Scores::Input`].
    pub scores: Vec<f64>,
    /// With [`Scores::Input`]: the scores as the trainer's input, n × k
    /// float32, row-major, on the CPU (the doubles rounded as `as f32`).
    pub input: Option<Tensor>,
    /// Singular values of the centred matrix (k).
    pub sdev: Vec<f64>,
    /// g × k loadings, column-major.
    pub loadings: Vec<f64>,
}

/// Oversampling of the randomized range finder.
const OVERSAMPLE: i64 = 10;
/// Power (subspace) iterations, each re-orthonormalised by QR.
const POWER_ITERS: usize = 4;

/// A 2-d double tensor as a column-major `Vec` (R's layout), with a single
/// copy when it is already a row- or column-major block on the CPU.
fn col_major(t: &Tensor) -> Result<Vec<f64>> {
    let t = t.f_to_device(Device::Cpu)?;
    let t = if dense_layout(&t).is_some() { t } else { t.f_contiguous()? };
    let (view, rs, cs) = strided_host_slice(&t)?;
    let size = t.size();
    let (rows, cols) = (size[0] as usize, size[1] as usize);
    let mut out = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        out.extend((0..rows).map(|r| view[r * rs + c * cs]));
    }
    Ok(out)
}

fn check_k(k: usize, n: usize, g: usize) -> Result<()> {
    if k == 0 || k > n.min(g) {
        return Err(SedrError::input("npcs", format!("must be between 1 and min(spots, genes) = {}", n.min(g))));
    }
    Ok(())
}

fn qr(a: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_linalg_qr(a, "reduced")?.0)
}

/// The g × l Gaussian test matrix, drawn from SEDR's own seeded generator
/// (SplitMix64, Box–Muller) rather than libtorch's global one: the same seed
/// gives the same matrix on every device and thread count, and concurrent
/// libtorch users cannot reseed it between the seeding and the draw.
fn gaussian(g: i64, l: i64, seed: u64, device: Device) -> Result<Tensor> {
    let len = (g * l) as usize;
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        // u1 in (0, 1] so that the logarithm is finite.
        let u1 = 1.0 - rng.next_f64();
        let u2 = rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push(r * t.cos());
        out.push(r * t.sin());
    }
    out.truncate(len);
    Ok(Tensor::from_slice(&out).f_view([g, l])?.f_to_device(device)?)
}

/// Randomized SVD of an implicit n × g matrix Z given by its products
/// `mul(M) = Z·M` (M: g × l) and `tmul(Q) = Zᵀ·Q` (Q: n × l): a Gaussian
/// range finder with `OVERSAMPLE` extra columns and `POWER_ITERS` power
/// iterations. Each iteration re-orthonormalises the genes-side basis by QR
/// (g × l, cheap); the spots-side basis (n × l) is orthonormalised once, at
/// the end. That spans the same subspaces as a QR after every product (a QR
/// only changes the basis within a span: Zᵀ(Y·R⁻¹) has the Q factor of ZᵀY up
/// to column signs, which the final SVD absorbs), and the n × l QRs are the
/// dominant cost at a million spots. Between two genes-side QRs the
/// conditioning is that of ZᵀZ on an orthonormal basis, harmless in double
/// precision for z-scored data.
fn randomized_svd(
    mul: impl Fn(&Tensor) -> Result<Tensor>,
    tmul: impl Fn(&Tensor) -> Result<Tensor>,
    g: i64,
    l: i64,
    k: i64,
    seed: u64,
    device: Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let omega = gaussian(g, l, seed, device)?;
    let mut y = mul(&omega)?;
    drop(omega);
    for _ in 0..POWER_ITERS {
        let w = qr(&tmul(&y)?)?;
        // Freed before the next product, not after it: y is n × l doubles
        // (1.7 GB at a million spots).
        drop(y);
        y = mul(&w)?;
    }
    let q = qr(&y)?;
    drop(y);
    // B = Qᵀ Z (l × g), from Zᵀ Q.
    let b = tmul(&q)?.f_transpose(0, 1)?;
    let (ub, s, v) = b.f_svd(true, true)?;
    // Only the first k columns of U = Q·Ub are kept: form just those.
    let ub = ub.f_narrow(1, 0, k)?;
    Ok((q.f_mm(&ub)?, s, v))
}

/// Where [`pca_rows`] puts the scores: R's layout (n × k doubles,
/// column-major), or the trainer's input (n × k float32, row-major; see
/// [`Pca::input`]), the same values rounded as the trainer rounds R's
/// doubles. The second never holds the n × k doubles whole on the Gram
/// path (8 GB at 5 M spots × 200 PCs, and R's copy of them another 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scores {
    R,
    Input,
}

/// The first `k` components with the sign convention (the largest |loading|
/// of each component is positive: deterministic across runs and devices),
/// copied to the host in R's layout (or as the trainer's input).
fn finish(u: Tensor, s: Tensor, v: Tensor, k: i64, out: Scores) -> Result<Pca> {
    let s = s.f_narrow(0, 0, k)?;
    // Scores in place (n × k is the largest output: no second copy of it).
    let mut scores = u.f_narrow(1, 0, k)?;
    drop(u);
    let _ = scores.f_mul_(&s)?;
    finish_scores(scores, s, v.f_narrow(1, 0, k)?, out)
}

/// The sign of each component (1 × k: the sign of its largest |loading|,
/// 1 where that is 0) and the loadings with it applied.
fn sign_convention(v: &Tensor) -> (Tensor, Tensor) {
    let pick = v.abs().argmax(0, true);
    let sign = v.gather(0, &pick, false).sign();
    let sign = sign.where_self(&sign.ne(0.0), &sign.ones_like());
    let v = v * &sign;
    (sign, v)
}

/// [`finish`] from the scores U·S (n × k), the k singular values and the
/// g × k loadings: the sign convention, then R's layout (or the input's).
fn finish_scores(mut scores: Tensor, s: Tensor, v: Tensor, out: Scores) -> Result<Pca> {
    let (sign, v) = sign_convention(&v);
    let _ = scores.f_mul_(&sign)?;
    let (scores, input) = match out {
        Scores::R => (col_major(&scores)?, None),
        Scores::Input => {
            let t = scores.f_to_device(Device::Cpu)?;
            drop(scores);
            (Vec::new(), Some(t.f_to_kind(Kind::Float)?.f_contiguous()?))
        }
    };
    Ok(Pca {
        scores,
        input,
        sdev: Vec::<f64>::try_from(s.to_device(Device::Cpu))?,
        loadings: col_major(&v)?,
    })
}

/// Spots per block of [`input_scores`]: its double scores are this many
/// rows (100 MB at 200 PCs). Small in the tests, so that they cross blocks.
const SCORE_BLOCK: usize = if cfg!(test) { 100 } else { 1 << 16 };

/// The Gram path's scores Z·M (M g × k), signed by the convention, as the
/// trainer's input: n × k float32, row-major, computed a block of spots at
/// a time. Each element is that of [`sparse_mul`] (the same row kernel,
/// then − cᵀM), times its sign, rounded to float32: the bits of
/// `finish_scores(sparse_mul(..), .., Scores::R)` cast as the trainer casts
/// R's doubles, without the n × k doubles.
fn input_scores<R: Rows>(x: &R, m: &Tensor, w: &Tensor, ct: &Tensor, s: Tensor, v: Tensor, pool: &rayon::ThreadPool) -> Result<Pca> {
    let (n, k) = (x.n_rows(), m.size()[1] as usize);
    let (sign, v) = sign_convention(&v);
    let sign = Vec::<f64>::try_from(sign.f_view([-1])?.f_to_kind(Kind::Double)?)?;
    let ctm = Vec::<f64>::try_from(ct.f_mm(m)?.f_view([-1])?)?;
    let mw = (m * w).f_contiguous()?;
    let mw_s = host_slice(&mw)?;
    let input = Tensor::f_empty([n as i64, k as i64], (Kind::Float, Device::Cpu))?;
    if n * k > 0 {
        // SAFETY: a fresh contiguous CPU float tensor of n·k elements, not
        // otherwise accessed while `dst` lives.
        let dst = unsafe { std::slice::from_raw_parts_mut(input.data_ptr() as *mut f32, n * k) };
        let mut block = vec![0.0f64; SCORE_BLOCK.min(n) * k];
        for first in (0..n).step_by(SCORE_BLOCK) {
            let rows = RowRange { x, first, n: SCORE_BLOCK.min(n - first) };
            let b = &mut block[..rows.n * k];
            b.iter_mut().for_each(|o| *o = 0.0);
            pool.install(|| mul_into(&rows, mw_s, k, b));
            for (o, d) in b.chunks(k).zip(dst[first * k..(first + rows.n) * k].chunks_mut(k)) {
                for c in 0..k {
                    d[c] = ((o[c] - ctm[c]) * sign[c]) as f32;
                }
            }
        }
    }
    Ok(Pca {
        scores: Vec::new(),
        input: Some(input),
        sdev: Vec::<f64>::try_from(s.to_device(Device::Cpu))?,
        loadings: col_major(&v)?,
    })
}

/// Rows [first, first + n) of another [`Rows`].
struct RowRange<'a, R: Rows> {
    x: &'a R,
    first: usize,
    n: usize,
}

impl<R: Rows> Rows for RowRange<'_, R> {
    fn n_rows(&self) -> usize {
        self.n
    }
    fn n_cols(&self) -> usize {
        self.x.n_cols()
    }
    fn row_into<'s>(&'s self, i: usize, buf: &'s mut RowBuf) -> (&'s [i32], &'s [f64]) {
        self.x.row_into(self.first + i, buf)
    }
}

/// Exact SVD of a small dense matrix, after centring its columns.
fn exact_svd(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let x = x - x.f_mean_dim(0, true, Kind::Double)?;
    Ok(x.f_svd(true, true)?)
}

/// PCA of `x` (n × g, column-major, columns are features) to `k` components.
/// The columns are centred; signs are fixed so that the largest loading of
/// each component is positive (deterministic across runs and devices).
pub fn pca(x_col_major: &[f64], n: usize, g: usize, k: usize, seed: u64, threads: usize, device: Device) -> Result<Pca> {
    if x_col_major.len() != n * g || n < 2 || g < 1 {
        return Err(SedrError::input("x", format!("expected an n × g matrix with n ≥ 2 (got {} values for {n} × {g})", x_col_major.len())));
    }
    check_k(k, n, g)?;
    if x_col_major.iter().any(|v| !v.is_finite()) {
        return Err(SedrError::input("x", "contains NA, NaN or Inf"));
    }
    let _threads = ThreadGuard::set(threads);
    let _grad = tch::no_grad_guard();
    let x = Tensor::from_slice(x_col_major).f_view([g as i64, n as i64])?.transpose(0, 1).f_to_device(device)?;
    let (n_i, g_i, k_i) = (n as i64, g as i64, k as i64);
    let l = (k_i + OVERSAMPLE).min(n_i.min(g_i));
    let (u, s, v) = if l >= n_i.min(g_i) {
        // Small enough for an exact SVD.
        exact_svd(&x)?
    } else {
        let x = &x - x.f_mean_dim(0, true, Kind::Double)?;
        let xt = x.transpose(0, 1);
        randomized_svd(|m| Ok(x.f_mm(m)?), |q| Ok(xt.f_mm(q)?), g_i, l, k_i, seed, device)?
    };
    finish(u, s, v, k_i, Scores::R)
}

/// o += v·m, elementwise: the inner loop of the sparse products. With AVX2
/// when the CPU has it (4 doubles per instruction instead of SSE2's 2; no
/// FMA, so each product is rounded before the sum and the result is the
/// same bits as the plain loop).
#[inline]
fn axpy(o: &mut [f64], v: f64, m: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { axpy_avx2(o, v, m) };
            return;
        }
    }
    axpy_plain(o, v, m);
}

#[inline(always)]
fn axpy_plain(o: &mut [f64], v: f64, m: &[f64]) {
    o.iter_mut().zip(m).for_each(|(o, m)| *o += v * m);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(o: &mut [f64], v: f64, m: &[f64]) {
    axpy_plain(o, v, m);
}

/// A sparse n × g matrix in CSR form (rows = spots), borrowed: exactly the
/// slots of R's genes × spots dgCMatrix (its CSC form).
pub struct Csr<'a> {
    pub indptr: &'a [i32],
    pub indices: &'a [i32],
    pub values: &'a [f64],
    pub n: usize,
    pub g: usize,
}

/// The rows (spots) of a sparse spots × genes matrix as the PCA kernels
/// read them: stored in CSR ([`Csr`]), or derived row by row from another
/// matrix (the recipe's normalised selected genes, `recipe::NormRows`), so
/// that a derived matrix as large as the counts is never held.
pub trait Rows: Sync {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Row `i`'s stored entries, columns strictly increasing: borrowed from
    /// the matrix, or computed into `buf` (cleared first).
    fn row_into<'s>(&'s self, i: usize, buf: &'s mut RowBuf) -> (&'s [i32], &'s [f64]);
    /// The number of stored entries of row `i` (for the cost model).
    fn row_len(&self, i: usize, buf: &mut RowBuf) -> usize {
        self.row_into(i, buf).0.len()
    }
}

/// Scratch space for a row computed on the fly ([`Rows::row_into`]).
#[derive(Default)]
pub struct RowBuf {
    pub cols: Vec<i32>,
    pub vals: Vec<f64>,
}

impl Rows for Csr<'_> {
    fn n_rows(&self) -> usize {
        self.n
    }
    fn n_cols(&self) -> usize {
        self.g
    }
    fn row_into<'s>(&'s self, i: usize, _buf: &'s mut RowBuf) -> (&'s [i32], &'s [f64]) {
        self.row(i)
    }
    fn row_len(&self, i: usize, _buf: &mut RowBuf) -> usize {
        (self.indptr[i + 1] - self.indptr[i]) as usize
    }
}

/// Rows per block of the CPU kernels. Fixed (not derived from the thread
/// count), so the summation order and hence the result do not depend on it.
const BLOCK: usize = 4096;

impl Csr<'_> {
    /// Checks the slots as they arrive from R: pointers start at 0, never
    /// decrease and end at nnz; gene indices are in range and strictly
    /// increasing within a spot (no duplicates); values are finite.
    pub fn check(&self) -> Result<()> {
        let (indptr, indices, n, g) = (self.indptr, self.indices, self.n, self.g);
        let bad = |msg: &str| Err(SedrError::input("x", msg.to_string()));
        if indptr.len() != n + 1 || indptr.first() != Some(&0) {
            return bad("has malformed column pointers (expected one per spot plus one, starting at 0)");
        }
        if indices.len() != self.values.len() || indptr[n] < 0 || indptr[n] as usize != indices.len() {
            return bad("has malformed sparse slots (pointers, indices and values disagree)");
        }
        for r in 0..n {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if b < a {
                return bad("has decreasing column pointers");
            }
            let mut last = -1i64;
            for &j in &indices[a as usize..b as usize] {
                if j < 0 || j as usize >= g || (j as i64) <= last {
                    return bad("has gene indices out of range, unsorted or duplicated within a spot");
                }
                last = j as i64;
            }
        }
        if self.values.iter().any(|v| !v.is_finite()) {
            return bad("contains NA, NaN or Inf");
        }
        Ok(())
    }

    pub fn row(&self, i: usize) -> (&[i32], &[f64]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }
}

/// out = X·m, with m (g × l) and out (n × l) row-major; rows in parallel.
fn mul_into<R: Rows>(x: &R, m: &[f64], l: usize, out: &mut [f64]) {
    out.par_chunks_mut(l * BLOCK).enumerate().for_each(|(b, block)| {
        let mut buf = RowBuf::default();
        for (r, o) in block.chunks_mut(l).enumerate() {
            let (js, vs) = x.row_into(b * BLOCK + r, &mut buf);
            for (&j, &v) in js.iter().zip(vs) {
                axpy(o, v, &m[j as usize * l..(j as usize + 1) * l]);
            }
        }
    });
}

/// Xᵀ·q for q (n × l, element (i, c) at `q[i * rs + c * cs]`: row- or
/// column-major, so QR's column-major output needs no copy), as g × l
/// row-major. Each block of spots copies its rows of q into a row-major
/// buffer and accumulates into its own g × l buffer (cache-resident);
/// buffers are added in block order, a wave of `threads` blocks at a
/// time, so the result is the same for every thread count.
fn tmul<R: Rows>(x: &R, q: &[f64], l: usize, rs: usize, cs: usize, threads: usize) -> Vec<f64> {
    let (n, g) = (x.n_rows(), x.n_cols());
    let blocks = n.div_ceil(BLOCK);
    let mut total = vec![0.0; g * l];
    let wave = threads.max(1);
    for w0 in (0..blocks).step_by(wave) {
        let parts: Vec<Vec<f64>> = (w0..(w0 + wave).min(blocks))
            .into_par_iter()
            .map(|b| {
                let mut acc = vec![0.0; g * l];
                let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
                let mut qb = vec![0.0; (end - start) * l];
                for c in 0..l {
                    for i in start..end {
                        qb[(i - start) * l + c] = q[i * rs + c * cs];
                    }
                }
                let mut buf = RowBuf::default();
                for i in start..end {
                    let qrow = &qb[(i - start) * l..(i - start + 1) * l];
                    let (js, vs) = x.row_into(i, &mut buf);
                    for (&j, &v) in js.iter().zip(vs) {
                        axpy(&mut acc[j as usize * l..(j as usize + 1) * l], v, qrow);
                    }
                }
                acc
            })
            .collect();
        for part in parts {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
        }
    }
    total
}

/// X as CSR slots (indptr, indices, values) and Xᵀ's, for libtorch's sparse
/// tensors.
#[allow(clippy::type_complexity)]
fn csr_and_transpose<R: Rows>(x: &R) -> ((Vec<i32>, Vec<i32>, Vec<f64>), (Vec<i32>, Vec<i32>, Vec<f64>)) {
    let (n, g) = (x.n_rows(), x.n_cols());
    let mut buf = RowBuf::default();
    let (mut ptr, mut ind, mut val) = (vec![0i32], Vec::new(), Vec::new());
    let mut tptr = vec![0i32; g + 1];
    for i in 0..n {
        let (js, vs) = x.row_into(i, &mut buf);
        ind.extend_from_slice(js);
        val.extend_from_slice(vs);
        ptr.push(ind.len() as i32);
        for &j in js {
            tptr[j as usize + 1] += 1;
        }
    }
    for j in 0..g {
        tptr[j + 1] += tptr[j];
    }
    let mut next: Vec<i32> = tptr[..g].to_vec();
    let mut tind = vec![0i32; ind.len()];
    let mut tval = vec![0f64; ind.len()];
    for i in 0..n {
        for p in ptr[i] as usize..ptr[i + 1] as usize {
            let j = ind[p] as usize;
            let dst = next[j] as usize;
            tind[dst] = i as i32;
            tval[dst] = val[p];
            next[j] += 1;
        }
    }
    ((ptr, ind, val), (tptr, tind, tval))
}

/// A libtorch sparse CSR tensor (for CUDA, where cuSPARSE does the products;
/// on the CPU libtorch's products with Xᵀ are several times slower than
/// [`Csr::tmul`] and need copies of X, and CSR support prints a "beta" warning).
fn csr_tensor(indptr: &[i32], indices: &[i32], values: &[f64], rows: i64, cols: i64, device: Device) -> Result<Tensor> {
    let crow = Tensor::from_slice(indptr).f_to_device(device)?;
    let col = Tensor::from_slice(indices).f_to_device(device)?;
    let val = Tensor::from_slice(values).f_to_device(device)?;
    Ok(Tensor::f_sparse_csr_tensor_crow_col_value_size(&crow, &col, &val, [rows, cols], (Kind::Double, device))?)
}

/// Row and column strides of a 2-d tensor laid out as one dense row- or
/// column-major block, else None.
fn dense_layout(t: &Tensor) -> Option<(usize, usize)> {
    let (size, stride) = (t.size(), t.stride());
    if size.len() != 2 {
        return None;
    }
    let (r, c) = (size[0], size[1]);
    if (stride[1] == 1 || c <= 1) && (stride[0] == c || r <= 1) {
        Some((c.max(0) as usize, 1))
    } else if (stride[0] == 1 || r <= 1) && (stride[1] == r || c <= 1) {
        Some((1, r.max(0) as usize))
    } else {
        None
    }
}

/// The data of a 2-d double tensor on the CPU laid out as a dense row- or
/// column-major block, borrowed, with its row and column strides.
fn strided_host_slice(t: &Tensor) -> Result<(&[f64], usize, usize)> {
    let layout = dense_layout(t);
    let (rs, cs) = match layout {
        Some(l) if t.device() == Device::Cpu && t.kind() == Kind::Double => l,
        _ => return Err(SedrError::Internal("pca: expected a dense 2-d double tensor on the CPU".into())),
    };
    let len = t.numel();
    if len == 0 {
        return Ok((&[], rs, cs));
    }
    // SAFETY: a dense row- or column-major block of `len` doubles on the CPU
    // that lives (and is not written to) while `t` is borrowed.
    Ok((unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f64, len) }, rs, cs))
}

/// The data of a contiguous double tensor on the CPU, borrowed.
fn host_slice(t: &Tensor) -> Result<&[f64]> {
    crate::host_slice::host_slice(t).ok_or_else(|| SedrError::Internal("pca: expected a contiguous double tensor on the CPU".into()))
}

/// Like [`host_slice`], writable (fresh tensors only).
fn host_slice_mut(t: &mut Tensor) -> Result<&mut [f64]> {
    crate::host_slice::host_slice_mut(t).ok_or_else(|| SedrError::Internal("pca: expected a contiguous double tensor on the CPU".into()))
}

/// Z·m = X·(m∘w) − 1·(cᵀm) for a g × l block m, by the CPU kernel
/// [`mul_into`] (w = 1/σ and c = μ/σ as g × 1 columns, `ct` = cᵀ).
fn sparse_mul<R: Rows>(x: &R, m: &Tensor, w: &Tensor, ct: &Tensor, pool: &rayon::ThreadPool) -> Result<Tensor> {
    let l = m.size()[1];
    let mw = (m * w).f_contiguous()?;
    let mut out = Tensor::f_zeros([x.n_rows() as i64, l], (Kind::Double, Device::Cpu))?;
    {
        let (mw_s, out_s) = (host_slice(&mw)?, host_slice_mut(&mut out)?);
        pool.install(|| mul_into(x, mw_s, l as usize, out_s));
    }
    let _ = out.f_sub_(&ct.f_mm(m)?)?;
    Ok(out)
}

/// How [`pca_rows`] finds the components of Z on the CPU. `Sparse` and
/// `Gram` are the same randomized SVD (same seed, same test matrix, same
/// iterations, so the same components up to rounding): `Sparse` by sparse
/// products with Z and Zᵀ, `Gram` through the g × g matrix ZᵀZ (one pass
/// over the pairs of each spot's nonzeros, dense g × g products for the
/// power iterations, and a single sparse product for the scores). `Exact`
/// is the exact PCA, the eigendecomposition of ZᵀZ. `Auto` (the default)
/// is the randomized SVD by the cheaper of `Sparse` and `Gram`
/// ([`gram_is_cheaper`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Auto,
    Sparse,
    Gram,
    Exact,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Method::Auto),
            "sparse" => Ok(Method::Sparse),
            "gram" => Ok(Method::Gram),
            "exact" => Ok(Method::Exact),
            _ => Err(SedrError::input("SEDR.pca", format!("must be \"auto\", \"sparse\", \"gram\" or \"exact\", not \"{s}\""))),
        }
    }

    /// Whether to form ZᵀZ for `x` and k components: never above
    /// [`GRAM_MAX_GENES`] genes (a g × g matrix of doubles and libtorch's
    /// copies of it: 0.5 GB each at 8000 genes).
    fn use_gram<R: Rows>(self, x: &R, k: usize, pool: &rayon::ThreadPool) -> bool {
        match self {
            _ if x.n_cols() > GRAM_MAX_GENES => false,
            Method::Gram | Method::Exact => true,
            Method::Sparse => false,
            Method::Auto => pool.install(|| gram_is_cheaper(x, k)),
        }
    }
}

/// The most genes for which ZᵀZ is formed.
const GRAM_MAX_GENES: usize = 8000;

/// The cost model that picks the Gram path for the randomized SVD, in units
/// of one multiply-add of the sparse products (AVX2, 4 doubles per
/// instruction). Measured on the project's 2-core machine, 1 thread, at
/// 1 M spots × 2000 genes (bench/README.md, "Stages"): an update of the Gram
/// accumulation (a scattered load-add-store) costs ≈ 4 such units, and a
/// multiply-add of libtorch's dense g × g products ≈ 1/10 of one. The
/// sparse path makes 2 + 2 × `POWER_ITERS` sparse products with k + 10
/// columns and QRs of the n × l and g × l bases; the Gram path makes one
/// sparse product with k columns and `POWER_ITERS` + 1 dense ones. With
/// ≈ 100 nonzeros per spot and 200 components it wins from a few thousand
/// spots on (DLPFC 151673: 3,639 spots, 220 nonzeros each, 2,000 genes).
fn gram_is_cheaper<R: Rows>(x: &R, k: usize) -> bool {
    let (n, g) = (x.n_rows(), x.n_cols());
    let blocks: Vec<(f64, f64)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let mut buf = RowBuf::default();
            let (mut nnz, mut pairs) = (0.0, 0.0);
            for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
                let len = x.row_len(i, &mut buf) as f64;
                nnz += len;
                pairs += len * (len + 1.0) / 2.0;
            }
            (nnz, pairs)
        })
        .collect();
    let (nnz, pairs) = blocks.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let (n, g, k) = (n as f64, g as f64, k as f64);
    let (l, iters) = (k + OVERSAMPLE as f64, POWER_ITERS as f64);
    let gram = 4.0 * pairs + (iters + 1.0) * g * g * l / 10.0 + nnz * k;
    let sparse = (2.0 + 2.0 * iters) * nnz * l + 2.0 * (n + g * iters) * l * l;
    gram < sparse
}

/// The randomized SVD of [`randomized_svd`] from ZᵀZ (`gram`, g × g): the
/// same test matrix and power iterations, W ← qr(ZᵀZ·W) being qr(Zᵀ(Z·W)),
/// then the final basis of Y = Z·W without forming Y: with YᵀY = WᵀZᵀZW =
/// E·Λ·Eᵀ, Q = Y·E·Λ^(−1/2) is an orthonormal basis of Y's span (the QR's
/// up to a rotation, which the SVD of B = QᵀZ = Λ^(−1/2)·Eᵀ·Wᵀ·ZᵀZ absorbs).
/// Returns the g × k matrix M with Z·M = U·S (the scores), S and V, or
/// None when Y has fewer than k columns of numerical rank or the k-th
/// singular value is below 1e-6 of the first (the sparse path then takes
/// over). The λ of YᵀY are the squared singular values of Z on
/// the basis (their spread ≈ (σ₁/σ_l)², ~1e4 on z-scored genes), so Q is
/// orthonormal to ~1e-12 in double precision.
fn randomized_from_gram(gram: &Tensor, l: i64, k: i64, seed: u64) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let g = gram.size()[0];
    let w = power_iterations_f32(gram, gaussian(g, l, seed, Device::Cpu)?)?;
    // C = WᵀZᵀZ (l × g); YᵀY = C·W, symmetrised against rounding.
    let c = w.f_transpose(0, 1)?.f_mm(gram)?;
    let yty = c.f_mm(&w)?;
    let yty = (&yty + yty.f_transpose(0, 1)?) * 0.5;
    let (lam, e) = yty.f_linalg_eigh("U")?;
    let lam_max = lam.f_max()?.double_value(&[]);
    let kept = Vec::<f64>::try_from(&lam)?.iter().filter(|&&v| v > 1e-10 * lam_max).count() as i64;
    if kept < k || lam_max <= 0.0 {
        return Ok(None);
    }
    // Eigenvalues ascend: the last `kept` columns.
    let lam = lam.f_narrow(0, l - kept, kept)?;
    let basis = e.f_narrow(1, l - kept, kept)? * lam.f_rsqrt()?.f_view([1, kept])?;
    let b = basis.f_transpose(0, 1)?.f_mm(&c)?;
    // B's SVD from the kept × kept B·Bᵀ = Ub·S²·Ubᵀ, a fifth of the time of
    // the SVD of the kept × g matrix: V = Bᵀ·Ub·S⁻¹. Squaring costs the
    // small singular values relative precision ~1e-16·(s₁/s)²; where the
    // k-th is below 1e-6·s₁ (V inaccurate) the sparse path takes over.
    let bbt = b.f_mm(&b.f_transpose(0, 1)?)?;
    let bbt = (&bbt + bbt.f_transpose(0, 1)?) * 0.5;
    let (s2, ub) = bbt.f_linalg_eigh("U")?;
    // Eigenvalues ascend: the last k, largest first.
    let ub = ub.f_narrow(1, kept - k, k)?.f_flip([1])?;
    let s = s2.f_narrow(0, kept - k, k)?.f_flip([0])?.f_clamp_min(0.0)?.f_sqrt()?;
    let sv = Vec::<f64>::try_from(&s)?;
    if sv[k as usize - 1] <= 1e-6 * sv[0] {
        return Ok(None);
    }
    let v = b.f_transpose(0, 1)?.f_mm(&ub)? / s.f_view([1, k])?;
    let m = w.f_mm(&basis.f_mm(&ub)?)? * s.f_view([1, k])?;
    Ok(Some((m.f_contiguous()?, s, v)))
}

/// The power iterations of [`randomized_from_gram`], W ← qr(ZᵀZ·W), in
/// single precision, returned in double. They only choose the subspace:
/// everything after them (YᵀY = WᵀZᵀZW, its eigenvectors, B) is computed in
/// double for the W they return, and Q = Y·E·Λ^(−1/2) is orthonormal for
/// any W of full rank, so the components are the exact Rayleigh–Ritz
/// values of Z on span(Z·W). Rounding W to float32 moves that span by ~1e-7,
/// far less than the power iterations leave it from Z's leading subspace
/// at k + 10 columns. Half the time of double products (the g × g × l
/// products are most of the PCA at 2000 genes).
fn power_iterations_f32(gram: &Tensor, w: Tensor) -> Result<Tensor> {
    let gram = gram.f_to_kind(Kind::Float)?;
    let mut w = w.f_to_kind(Kind::Float)?;
    for _ in 0..POWER_ITERS {
        w = qr(&gram.f_mm(&w)?)?;
    }
    Ok(w.f_to_kind(Kind::Double)?)
}

/// ZᵀZ, then the components by [`randomized_from_gram`] or, for
/// [`Method::Exact`], by its eigendecomposition: (M, S, V) with Z·M the
/// scores (M = V for the exact PCA), or None to take the sparse path.
#[allow(clippy::too_many_arguments)]
fn gram_components<R: Rows>(
    x: &R,
    center: &[f64],
    w: &[f64],
    l: i64,
    k: i64,
    seed: u64,
    threads: usize,
    method: Method,
    pool: &rayon::ThreadPool,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let gram = pool.install(|| gram_matrix(x, center, w, threads))?;
    if method != Method::Exact {
        return randomized_from_gram(&gram, l, k, seed);
    }
    let (vals, vecs) = top_eigenpairs(&gram, k)?;
    // Eigenvalues of ZᵀZ are the squared singular values of Z; rounding can
    // leave a zero one slightly negative.
    Ok(Some((vecs.shallow_clone(), vals.f_clamp_min(0.0)?.f_sqrt()?, vecs)))
}

/// ZᵀZ for Z = (X − 1·μᵀ)·diag(w), as a g × g double tensor (both
/// triangles). XᵀX is accumulated from the sparse rows, upper triangle only:
/// each row adds the products of its stored entries pairwise. The threads
/// own disjoint ranges of rows of XᵀX (split so that each holds about the
/// same share of the triangle) and every one reads all spots, so each entry
/// is summed over the spots in spot order whatever the thread count: the
/// result is the same bits for every thread count, with no reduction. Then
/// ZᵀZ = W·(XᵀX − n·μμᵀ)·W.
///
/// Accuracy: forming ZᵀZ squares Z's condition number, and the centring
/// subtracts n·μμᵀ from the uncentred products (a relative loss of about
/// μ²/σ² of a gene, small for count-like data, whose sd is of the order of
/// its mean or larger). In double precision the error of an eigenvalue is
/// then ~1e-16 × ‖ZᵀZ‖ (× that ratio), far below the components a PCA of
/// z-scored genes keeps (the k-th of 200 eigenvalues is ~1e-3 of the
/// largest on DLPFC), and the scores are computed from Z itself, not from
/// the Gram matrix. The tests compare it with the dense SVD of Z.
fn gram_matrix<R: Rows>(x: &R, center: &[f64], w: &[f64], threads: usize) -> Result<Tensor> {
    let (n, g) = (x.n_rows(), x.n_cols());
    let mut gram = Tensor::f_zeros([g as i64, g as i64], (Kind::Double, Device::Cpu))?;
    let out = host_slice_mut(&mut gram)?;
    // Rows [0, j) of the upper triangle hold 1 − (1 − j/g)² of it.
    let parts = threads.max(1).min(g);
    let bounds: Vec<usize> =
        (0..=parts).map(|p| ((1.0 - (1.0 - p as f64 / parts as f64).sqrt()) * g as f64).round() as usize).collect();
    let sums = {
        let mut ranges = Vec::with_capacity(parts);
        let mut rest = &mut out[..];
        for p in 0..parts {
            let (a, b) = (bounds[p], bounds[p + 1].clamp(bounds[p], g));
            let (head, tail) = rest.split_at_mut((b - a) * g);
            ranges.push((a, b, head));
            rest = tail;
        }
        let sums: Vec<Vec<f64>> = ranges.into_par_iter().map(|(a, b, rows)| gram_rows(x, a, b, rows)).collect();
        sums.concat()
    };
    // (X − 1μᵀ)ᵀ(X − 1μᵀ) = XᵀX − μsᵀ − sμᵀ + n·μμᵀ with s = Xᵀ1 (for μ the
    // column means, XᵀX − n·μμᵀ; `center` may be any vector, as for the
    // randomized path).
    let (n, mu) = (n as f64, center);
    for a in 0..g {
        for b in a..g {
            let v = (out[a * g + b] - mu[a] * sums[b] - sums[a] * mu[b] + n * mu[a] * mu[b]) * w[a] * w[b];
            out[a * g + b] = v;
            out[b * g + a] = v;
        }
    }
    Ok(gram)
}

/// Spots per block of the Gram accumulation: their rows (≈ 2 MB at 100
/// entries a spot) are re-read once per gene they hold.
const GRAM_BLOCK: usize = 2048;

/// Rows [a, b) of the upper triangle of XᵀX (row-major, `rows` holds rows
/// a..b, g columns each) and the column sums of X for genes a..b, summed
/// over all spots in spot order.
///
/// A block of spots at a time, gene by gene: row `jp` of XᵀX receives
/// v_jp·(the entries from jp on) of every spot of the block that holds jp,
/// so that row (16 KB at 2000 genes) stays in the L1 cache while it is
/// updated. Row by row instead, each pair of a spot's entries lands on
/// another row of the g × g matrix, a cache miss per update (twice the
/// time at a million spots). Within a gene the spots come in spot order,
/// so each entry is still summed in spot order.
fn gram_rows<R: Rows>(x: &R, a: usize, b: usize, rows: &mut [f64]) -> Vec<f64> {
    let (n, g) = (x.n_rows(), x.n_cols());
    let mut sums = vec![0.0; b - a];
    let mut buf = RowBuf::default();
    // The block's rows, concatenated, and where each starts.
    let (mut cols, mut vals, mut start) = (Vec::<i32>::new(), Vec::<f64>::new(), Vec::<usize>::new());
    // Per gene of [a, b): the positions (into cols/vals) of its entries and
    // the ends of their spots' rows, in spot order (a counting sort: counts,
    // offsets, fill). A block holds at most GRAM_BLOCK × g < 2³² entries.
    let mut offset = vec![0usize; b - a + 1];
    let mut slots = Vec::<(u32, u32)>::new();
    for first in (0..n).step_by(GRAM_BLOCK) {
        cols.clear();
        vals.clear();
        start.clear();
        offset.iter_mut().for_each(|o| *o = 0);
        for i in first..(first + GRAM_BLOCK).min(n) {
            let (js, vs) = x.row_into(i, &mut buf);
            start.push(cols.len());
            cols.extend_from_slice(js);
            vals.extend_from_slice(vs);
        }
        start.push(cols.len());
        for &j in &cols {
            let j = j as usize;
            if (a..b).contains(&j) {
                offset[j - a + 1] += 1;
            }
        }
        for t in 0..b - a {
            offset[t + 1] += offset[t];
        }
        slots.resize(offset[b - a], (0, 0));
        let mut next = offset.clone();
        for r in 0..start.len() - 1 {
            let (lo, hi) = (start[r], start[r + 1]);
            for (pos, &c) in (lo..hi).zip(&cols[lo..hi]) {
                let j = c as usize;
                if (a..b).contains(&j) {
                    slots[next[j - a]] = (pos as u32, start[r + 1] as u32);
                    next[j - a] += 1;
                }
            }
        }
        for t in 0..b - a {
            let row = &mut rows[t * g..(t + 1) * g];
            for &(pos, end) in &slots[offset[t]..offset[t + 1]] {
                let (pos, end) = (pos as usize, end as usize);
                let vp = vals[pos];
                sums[t] += vp;
                // The rest of the spot's row, from this gene on.
                for (&jq, &vq) in cols[pos..end].iter().zip(&vals[pos..end]) {
                    row[jq as usize] += vp * vq;
                }
            }
        }
    }
    sums
}

/// The `k` largest eigenvalues (decreasing) of a symmetric matrix and their
/// eigenvectors (g × k, contiguous), by libtorch's `linalg_eigh` (LAPACK's
/// divide and conquer; single-threaded here, as the other factorisations).
fn top_eigenpairs(sym: &Tensor, k: i64) -> Result<(Tensor, Tensor)> {
    let g = sym.size()[0];
    let (vals, vecs) = sym.f_linalg_eigh("U")?;
    let vals = vals.f_narrow(0, g - k, k)?.f_flip([0])?;
    let vecs = vecs.f_narrow(1, g - k, k)?.f_flip([1])?.f_contiguous()?;
    Ok((vals, vecs))
}

/// PCA of Z = (X − 1·μᵀ)·diag(1/σ) to `k` components without forming Z, for
/// a sparse n × g matrix X (spots × genes) given as CSR (`indptr` n + 1,
/// `indices` gene ids, `values`) — exactly the slots of R's dgCMatrix of
/// genes × spots. `center` is μ and `scale` σ per gene; `scale[j] == 0`
/// marks a constant gene whose column of Z is zero. The products are sparse
/// with rank-one corrections, Z·M = X·(M/σ) − 1·((μ/σ)ᵀM) and
/// Zᵀ·Q = (XᵀQ)/σ − (μ/σ)·(1ᵀQ); the randomized SVD, its seed use, the sign
/// convention and the output are those of [`pca`], so both agree on the same
/// Z. On the CPU the sparse products are rayon kernels on the borrowed slots
/// (no copy of X; deterministic for every thread count); on CUDA they are
/// libtorch sparse CSR products (cuSPARSE). On the CPU, `method` ([`Method`])
/// may run the same randomized SVD through ZᵀZ ([`gram_matrix`]), which
/// [`Method::Auto`] does where it is cheaper ([`gram_is_cheaper`]), or
/// compute the exact PCA from ZᵀZ ([`Method::Exact`]).
#[allow(clippy::too_many_arguments)]
pub fn pca_sparse(
    indptr: &[i32],
    indices: &[i32],
    values: &[f64],
    n: usize,
    g: usize,
    center: &[f64],
    scale: &[f64],
    k: usize,
    seed: u64,
    threads: usize,
    device: Device,
    method: Method,
) -> Result<Pca> {
    sparse_impl(indptr, indices, values, n, g, center, scale, k, seed, threads, device, device != Device::Cpu, method)
}

/// [`pca_sparse`] with the choice of sparse products explicit (libtorch CSR
/// tensors, or the CPU kernels), so tests can run both on the CPU.
#[allow(clippy::too_many_arguments)]
fn sparse_impl(
    indptr: &[i32],
    indices: &[i32],
    values: &[f64],
    n: usize,
    g: usize,
    center: &[f64],
    scale: &[f64],
    k: usize,
    seed: u64,
    threads: usize,
    device: Device,
    torch_sparse: bool,
    method: Method,
) -> Result<Pca> {
    // The sizes and k are checked in pca_rows; the structure here.
    let x = Csr { indptr, indices, values, n, g };
    x.check()?;
    pca_rows(&x, center, scale, k, seed, threads, device, torch_sparse, method, Scores::R)
}

/// [`pca_sparse`] of any [`Rows`] (checked by the caller: columns in range
/// and increasing within a row, finite values).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pca_rows<R: Rows>(
    x: &R,
    center: &[f64],
    scale: &[f64],
    k: usize,
    seed: u64,
    threads: usize,
    device: Device,
    torch_sparse: bool,
    method: Method,
    out: Scores,
) -> Result<Pca> {
    let (n, g) = (x.n_rows(), x.n_cols());
    if n < 2 || g < 1 {
        return Err(SedrError::input("x", format!("expected at least 2 spots and 1 gene (got {n} × {g})")));
    }
    check_k(k, n, g)?;
    if n > i32::MAX as usize || g > i32::MAX as usize {
        return Err(SedrError::input("x", "has more than 2^31 - 1 spots or genes"));
    }
    if center.len() != g || scale.len() != g {
        return Err(SedrError::input("center", format!("`center` and `scale` need one value per gene ({g})")));
    }
    if center.iter().any(|v| !v.is_finite()) {
        return Err(SedrError::input("center", "contains NA, NaN or Inf"));
    }
    if scale.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(SedrError::input("scale", "must be finite and >= 0 (0 marks a constant gene)"));
    }
    let threads = threads.max(1);
    // libtorch runs single-threaded here; `threads` go to the sparse kernels
    // (rayon). Its factorisations are small (g × l QRs, an l × g SVD) and on
    // a busy 2-core machine libgomp's barriers in them made 2 threads 5-10x
    // slower than 1 (bench/README.md, "Stages"); single-threaded libtorch
    // also makes the PCA the same for every thread count on the CPU.
    let _threads = ThreadGuard::set(if device == Device::Cpu { 1 } else { threads });
    let _grad = tch::no_grad_guard();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| SedrError::Internal(format!("thread pool: {e}")))?;
    let (n_i, g_i, k_i) = (n as i64, g as i64, k as i64);
    // w = 1/σ (0 for constant genes), c = μ·w; both g × 1 columns.
    let wv: Vec<f64> = scale.iter().map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 }).collect();
    let c: Vec<f64> = center.iter().zip(&wv).map(|(m, w)| m * w).collect();
    let w = Tensor::from_slice(&wv).f_view([g_i, 1])?.f_to_device(device)?;
    let c = Tensor::from_slice(&c).f_view([g_i, 1])?.f_to_device(device)?;
    let ct = c.f_transpose(0, 1)?;
    let l = (k_i + OVERSAMPLE).min(n_i.min(g_i));
    let exact = l >= n_i.min(g_i);
    let cpu_kernels = !torch_sparse && device == Device::Cpu;
    if !exact && cpu_kernels && method.use_gram(x, k, &pool) {
        // None: Z·W has fewer than k columns of numerical rank; the sparse
        // products below take over.
        if let Some((m, s, v)) = gram_components(x, center, &wv, l, k_i, seed, threads, method, &pool)? {
            return match out {
                Scores::R => finish_scores(sparse_mul(x, &m, &w, &ct, &pool)?, s, v, out),
                Scores::Input => input_scores(x, &m, &w, &ct, s, v, &pool),
            };
        }
    }
    let (u, s, v) = if exact {
        // min(n, g) <= k + 10: Z is small enough to form for an exact SVD.
        let mut dense = vec![0.0; n * g];
        let mut buf = RowBuf::default();
        for i in 0..n {
            let (js, vs) = x.row_into(i, &mut buf);
            for (&j, &v) in js.iter().zip(vs) {
                dense[i * g + j as usize] = v;
            }
        }
        let z = Tensor::from_slice(&dense).f_view([n_i, g_i])?.f_to_device(device)?;
        drop(dense);
        exact_svd(&(z * w.f_view([1, g_i])? - &ct))?
    } else if cpu_kernels {
        let lu = l as usize;
        let mul = |m: &Tensor| sparse_mul(x, m, &w, &ct, &pool);
        let tmul = |q: &Tensor| -> Result<Tensor> {
            let qc = if dense_layout(q).is_some() { q.shallow_clone() } else { q.f_contiguous()? };
            let (qs, rs, cs) = strided_host_slice(&qc)?;
            let xtq = pool.install(|| tmul(x, qs, lu, rs, cs, threads));
            let xtq = Tensor::from_slice(&xtq).f_view([g_i, l])?;
            Ok(xtq * &w - c.f_mm(&q.f_sum_dim_intlist(0, true, Kind::Double)?)?)
        };
        randomized_svd(mul, tmul, g_i, l, k_i, seed, device)?
    } else {
        let ((p, i, v), (tp, ti, tv)) = csr_and_transpose(x);
        let xs = csr_tensor(&p, &i, &v, n_i, g_i, device)?;
        drop((p, i, v));
        let xt = csr_tensor(&tp, &ti, &tv, g_i, n_i, device)?;
        let mul = |m: &Tensor| -> Result<Tensor> { Ok(xs.f_mm(&(m * &w))? - ct.f_mm(m)?) };
        let tmul = |q: &Tensor| -> Result<Tensor> { Ok(xt.f_mm(q)? * &w - c.f_mm(&q.f_sum_dim_intlist(0, true, Kind::Double)?)?) };
        randomized_svd(mul, tmul, g_i, l, k_i, seed, device)?
    };
    finish(u, s, v, k_i, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_svd_on_low_rank_data() {
        // 300 × 50 matrix of rank 5 plus tiny noise; 5 components.
        tch::manual_seed(3);
        let a = Tensor::randn([300, 5], (Kind::Double, Device::Cpu)).mm(&Tensor::randn([5, 50], (Kind::Double, Device::Cpu)))
            + Tensor::randn([300, 50], (Kind::Double, Device::Cpu)) * 1e-3;
        let data = Vec::<f64>::try_from(a.transpose(0, 1).contiguous().view(-1)).unwrap();
        let p = pca(&data, 300, 50, 5, 1, 1, Device::Cpu).unwrap();
        let exact = (&a - a.mean_dim(0, true, Kind::Double)).svd(true, false).1;
        let exact = Vec::<f64>::try_from(exact.narrow(0, 0, 5)).unwrap();
        for (got, want) in p.sdev.iter().zip(&exact) {
            assert!((got - want).abs() / want < 1e-6, "{got} vs {want}");
        }
        // Same seed, same answer; scores are centred.
        let p2 = pca(&data, 300, 50, 5, 1, 1, Device::Cpu).unwrap();
        assert_eq!(p.scores, p2.scores);
        let col0: f64 = p.scores[..300].iter().sum();
        assert!(col0.abs() < 1e-8);
    }

    /// CSR indptr, indices and values, then the genes' means and sds, and the dense Z.
    type SparseFixture = (Vec<i32>, Vec<i32>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

    /// A random sparse n × g count-like matrix as CSR (rows = spots), with
    /// an all-zero gene and a constant gene, plus its per-gene mean and
    /// unbiased sd (0 for the two constant genes) and the dense Z.
    fn random_sparse(n: usize, g: usize, density: f64, seed: u64) -> SparseFixture {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let (mut indptr, mut indices, mut values) = (vec![0i32], Vec::new(), Vec::new());
        let mut dense = vec![0.0; n * g];
        for i in 0..n {
            for j in 0..g {
                let v = if j == 0 {
                    0.0 // never detected
                } else if j == 1 {
                    3.0 // detected everywhere, constant
                } else if rng.next_f64() < density * (1.0 + (j % 7) as f64) {
                    1.0 + (rng.next_f64() * 20.0).floor() * (1.0 + (j % 3) as f64)
                } else {
                    0.0
                };
                if v != 0.0 {
                    indices.push(j as i32);
                    values.push(v);
                    dense[i * g + j] = v;
                }
            }
            indptr.push(indices.len() as i32);
        }
        let mut center = vec![0.0; g];
        let mut scale = vec![0.0; g];
        for j in 0..g {
            let m = (0..n).map(|i| dense[i * g + j]).sum::<f64>() / n as f64;
            let ss = (0..n).map(|i| (dense[i * g + j] - m).powi(2)).sum::<f64>();
            center[j] = m;
            scale[j] = (ss / (n - 1) as f64).sqrt();
        }
        // Z, column-major, constant genes zero.
        let mut z = vec![0.0; n * g];
        for j in 0..g {
            for i in 0..n {
                z[j * n + i] = if scale[j] > 1e-12 { (dense[i * g + j] - center[j]) / scale[j] } else { 0.0 };
            }
        }
        for s in scale.iter_mut() {
            if *s <= 1e-12 {
                *s = 0.0;
            }
        }
        (indptr, indices, values, center, scale, z)
    }

    fn assert_same(a: &Pca, b: &Pca) {
        assert_close(a, b, 1e-6);
    }

    /// The randomized SVD through ZᵀZ chooses its subspace in float32
    /// (`power_iterations_f32`): the same components to ~1e-7 of their
    /// size, not to double rounding. How far below depends on the host's
    /// float32 kernels and on the gaps between the singular values (small
    /// on the random matrices here), so each component is compared at 1e-5
    /// of its size: a score column against its norm, a loading column
    /// (unit norm) absolutely.
    fn assert_same_as_gram(gram: &Pca, b: &Pca) {
        let tol = 1e-5;
        assert_close_but_scores(gram, b, tol);
        let n = b.scores.len() / b.sdev.len();
        for (c, (xs, ys)) in gram.scores.chunks(n).zip(b.scores.chunks(n)).enumerate() {
            let norm = ys.iter().map(|v| v * v).sum::<f64>().sqrt();
            let worst = xs.iter().zip(ys).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(worst <= tol * norm, "scores of component {c}: {worst} apart, column norm {norm}");
        }
    }

    fn assert_close(a: &Pca, b: &Pca, tol: f64) {
        assert_close_but_scores(a, b, tol);
        for (x, y) in a.scores.iter().zip(&b.scores) {
            assert!((x - y).abs() < tol, "score {x} vs {y}");
        }
    }

    /// The singular values relatively, the (unit-norm) loadings absolutely.
    fn assert_close_but_scores(a: &Pca, b: &Pca, tol: f64) {
        for (x, y) in a.sdev.iter().zip(&b.sdev) {
            assert!((x - y).abs() <= tol * y.abs().max(1e-300), "sdev {x} vs {y}");
        }
        for (x, y) in a.loadings.iter().zip(&b.loadings) {
            assert!((x - y).abs() < tol, "loading {x} vs {y}");
        }
    }

    #[test]
    fn sparse_matches_dense_randomized() {
        let (n, g, k) = (400, 120, 12);
        let (p, i, x, center, scale, z) = random_sparse(n, g, 0.01, 7);
        let density = x.len() as f64 / (n * g) as f64;
        assert!(density > 0.02 && density < 0.1, "density {density}");
        let dense = pca(&z, n, g, k, 5, 1, Device::Cpu).unwrap();
        let sparse = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 1, Device::Cpu, Method::Sparse).unwrap();
        assert_eq!(sparse.scores.len(), n * k);
        assert_eq!(sparse.loadings.len(), g * k);
        assert_same(&sparse, &dense);
        // The constant genes load nothing; the scores are centred.
        for c in 0..k {
            assert!(sparse.loadings[c * g].abs() < 1e-12 && sparse.loadings[c * g + 1].abs() < 1e-12);
            let m: f64 = sparse.scores[c * n..(c + 1) * n].iter().sum::<f64>() / n as f64;
            assert!(m.abs() < 1e-9, "mean score {m}");
        }
        // The same with 2 threads; the same bits when repeated; and the same
        // with libtorch's sparse CSR products (the CUDA path) on the CPU.
        let two = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 2, Device::Cpu, Method::Sparse).unwrap();
        assert_same(&two, &dense);
        assert!(two.scores == sparse.scores && two.sdev == sparse.sdev && two.loadings == sparse.loadings);
        let again = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 2, Device::Cpu, Method::Sparse).unwrap();
        assert!(again.scores == two.scores && again.sdev == two.sdev && again.loadings == two.loadings);
        let torch = sparse_impl(&p, &i, &x, n, g, &center, &scale, k, 5, 2, Device::Cpu, true, Method::Sparse).unwrap();
        assert_same(&torch, &dense);
        // The same randomized SVD through ZᵀZ: the same components, and the
        // same bits for every thread count.
        let gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 1, Device::Cpu, Method::Gram).unwrap();
        assert_same_as_gram(&gram, &dense);
        for threads in [2, 3] {
            let t = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, threads, Device::Cpu, Method::Gram).unwrap();
            assert!(t.scores == gram.scores && t.sdev == gram.sdev && t.loadings == gram.loadings, "{threads} threads");
        }
        for c in 0..k {
            assert!(gram.loadings[c * g].abs() < 1e-12 && gram.loadings[c * g + 1].abs() < 1e-12);
        }
    }

    #[test]
    fn input_scores_are_the_r_scores_as_float32_rows() {
        // 400 spots cross several blocks of input_scores (100 in tests).
        let (n, g, k) = (400, 120, 12);
        let (p, i, x, center, scale, _) = random_sparse(n, g, 0.01, 11);
        let csr = Csr { indptr: &p, indices: &i, values: &x, n, g };
        for method in [Method::Gram, Method::Sparse, Method::Exact] {
            for threads in [1, 2] {
                let r = pca_rows(&csr, &center, &scale, k, 5, threads, Device::Cpu, false, method, Scores::R).unwrap();
                let t = pca_rows(&csr, &center, &scale, k, 5, threads, Device::Cpu, false, method, Scores::Input).unwrap();
                assert!(r.input.is_none() && t.scores.is_empty());
                assert!(t.sdev == r.sdev && t.loadings == r.loadings, "{method:?}");
                let input = t.input.unwrap();
                assert_eq!((input.size(), input.kind()), (vec![n as i64, k as i64], Kind::Float));
                let got = Vec::<f32>::try_from(input.view(-1)).unwrap();
                // Row-major float32 of R's column-major doubles, as train::Input casts them.
                let want: Vec<f32> = (0..n * k).map(|e| r.scores[(e % k) * n + e / k] as f32).collect();
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{method:?}, {threads} threads");
            }
        }
    }

    /// The exact PCA of a dense n × g matrix `z` (column-major), without
    /// centring it, in [`finish`]'s sign convention and layout.
    fn dense_svd(z: &[f64], n: usize, g: usize, k: usize) -> Pca {
        let t = Tensor::from_slice(z).view([g as i64, n as i64]).transpose(0, 1);
        let (u, s, v) = t.svd(true, true);
        finish(u, s, v, k as i64, Scores::R).unwrap()
    }

    #[test]
    fn exact_matches_dense_svd() {
        // More spots than one kernel block, genes with the constant ones.
        let (n, g, k) = (4500, 40, 8);
        let (p, i, x, center, scale, z) = random_sparse(n, g, 0.02, 21);
        let want = dense_svd(&z, n, g, k);
        let gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 1, Device::Cpu, Method::Exact).unwrap();
        assert_same(&gram, &want);
        // The scores are centred; the constant genes load exactly nothing.
        for c in 0..k {
            assert!(gram.loadings[c * g] == 0.0 && gram.loadings[c * g + 1] == 0.0);
            let m: f64 = gram.scores[c * n..(c + 1) * n].iter().sum::<f64>() / n as f64;
            assert!(m.abs() < 1e-9, "mean score {m}");
        }
        // The same bits for every thread count (and more threads than some
        // ranges of genes hold rows), and when repeated.
        for threads in [2, 3, 7] {
            let t = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, threads, Device::Cpu, Method::Exact).unwrap();
            assert!(t.scores == gram.scores && t.sdev == gram.sdev && t.loadings == gram.loadings, "{threads} threads");
        }
        let again = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 5, 1, Device::Cpu, Method::Exact).unwrap();
        assert!(again.scores == gram.scores && again.sdev == gram.sdev && again.loadings == gram.loadings);
        // A centre that is not the mean: the components of (X − 1μᵀ)W as
        // given, as on the randomized path.
        let shifted: Vec<f64> = center.iter().map(|m| m + 0.7).collect();
        let mut zs = z.clone();
        for j in 0..g {
            let shift = if scale[j] > 0.0 { 0.7 / scale[j] } else { 0.0 };
            zs[j * n..(j + 1) * n].iter_mut().for_each(|v| *v -= shift);
        }
        let off = pca_sparse(&p, &i, &x, n, g, &shifted, &scale, k, 5, 2, Device::Cpu, Method::Exact).unwrap();
        assert_same(&off, &dense_svd(&zs, n, g, k));
    }

    #[test]
    fn exact_keeps_every_component_and_agrees_with_the_randomized_svd() {
        // k = g − 12: every component but the last few (two are the
        // constant genes' zero ones); the randomized SVD, with l = k + 10 <
        // g, is then close to exact as well.
        let (n, g, k) = (600, 60, 48);
        let (p, i, x, center, scale, z) = random_sparse(n, g, 0.03, 5);
        let want = dense_svd(&z, n, g, k);
        let gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 9, 1, Device::Cpu, Method::Exact).unwrap();
        assert_same(&gram, &want);
        let rand = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 9, 1, Device::Cpu, Method::Sparse).unwrap();
        for (a, b) in rand.sdev.iter().zip(&gram.sdev) {
            assert!((a - b).abs() < 1e-3 * b, "sdev {a} vs {b}");
        }
        // The randomized SVD through ZᵀZ is the sparse path's, to its
        // float32 choice of subspace.
        let via_gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 9, 1, Device::Cpu, Method::Gram).unwrap();
        assert_same_as_gram(&via_gram, &rand);
    }

    #[test]
    fn gram_handles_rank_deficient_data() {
        // 8 genes repeated 4 times (32 columns, rank ≤ 6: two of the 8 are
        // constant), so Y = Z·W has fewer independent columns than k + 10.
        let (n, g0, copies) = (300, 8, 4);
        let (p0, i0, x0, c0, s0, _) = random_sparse(n, g0, 0.05, 3);
        let (mut p, mut i, mut x) = (vec![0i32], vec![], vec![]);
        for r in 0..n {
            let (a, b) = (p0[r] as usize, p0[r + 1] as usize);
            for c in 0..copies {
                i.extend(i0[a..b].iter().map(|&j| j + (c * g0) as i32));
                x.extend_from_slice(&x0[a..b]);
            }
            p.push(i.len() as i32);
        }
        let g = g0 * copies;
        let (center, scale) = (c0.repeat(copies), s0.repeat(copies));
        // k = 3 ≤ rank: the Gram path keeps the basis's independent part.
        let sparse = pca_sparse(&p, &i, &x, n, g, &center, &scale, 3, 4, 1, Device::Cpu, Method::Sparse).unwrap();
        let gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, 3, 4, 1, Device::Cpu, Method::Gram).unwrap();
        assert_same_as_gram(&gram, &sparse);
        assert!(gram.scores != sparse.scores, "the Gram path was taken (other rounding)");
        // k = 8 > rank: the Gram path hands over to the sparse products.
        let sparse = pca_sparse(&p, &i, &x, n, g, &center, &scale, 8, 4, 1, Device::Cpu, Method::Sparse).unwrap();
        let gram = pca_sparse(&p, &i, &x, n, g, &center, &scale, 8, 4, 1, Device::Cpu, Method::Gram).unwrap();
        assert!(gram.scores == sparse.scores && gram.sdev == sparse.sdev && gram.loadings == sparse.loadings);
        assert!(gram.sdev[6] < 1e-8 * gram.sdev[0]);
    }

    #[test]
    fn cost_model_picks_gram_for_many_spots_and_few_genes() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        // Many spots, few genes: the products dominate the randomized SVD.
        let (p, i, x, ..) = random_sparse(20000, 40, 0.01, 2);
        let tall = Csr { indptr: &p, indices: &i, values: &x, n: 20000, g: 40 };
        assert!(Method::Auto.use_gram(&tall, 10, &pool));
        assert!(!Method::Sparse.use_gram(&tall, 10, &pool));
        // Few spots, many genes: the g × g eigendecomposition dominates.
        let (p, i, x, ..) = random_sparse(300, 1500, 0.01, 2);
        let wide = Csr { indptr: &p, indices: &i, values: &x, n: 300, g: 1500 };
        assert!(!Method::Auto.use_gram(&wide, 20, &pool));
        assert!(Method::Gram.use_gram(&wide, 20, &pool) && Method::Exact.use_gram(&wide, 20, &pool));
        assert_eq!(Method::parse("gram").unwrap(), Method::Gram);
        assert_eq!(Method::parse("exact").unwrap(), Method::Exact);
        assert!(Method::parse("randomized").is_err());
    }

    #[test]
    fn sparse_matches_dense_exact() {
        // min(n, g) <= k + 10: both take the exact SVD.
        let (n, g, k) = (200, 15, 6);
        let (p, i, x, center, scale, z) = random_sparse(n, g, 0.03, 11);
        let dense = pca(&z, n, g, k, 3, 1, Device::Cpu).unwrap();
        let sparse = pca_sparse(&p, &i, &x, n, g, &center, &scale, k, 3, 1, Device::Cpu, Method::Auto).unwrap();
        assert_same(&sparse, &dense);
    }

    #[test]
    fn sparse_rejects_bad_input() {
        let (p, i, x) = (vec![0, 1, 2], vec![0, 1], vec![1.0, 2.0]);
        let (c, s) = (vec![0.5, 1.0], vec![1.0, 1.0]);
        assert!(pca_sparse(&p, &i, &x, 2, 2, &c, &s, 1, 1, 1, Device::Cpu, Method::Auto).is_ok());
        assert!(pca_sparse(&p, &i, &x, 2, 2, &c, &s, 3, 1, 1, Device::Cpu, Method::Auto).is_err()); // k too large
        assert!(pca_sparse(&[0, 1], &i, &x, 2, 2, &c, &s, 1, 1, 1, Device::Cpu, Method::Auto).is_err()); // pointers
        assert!(pca_sparse(&p, &[0, 2], &x, 2, 2, &c, &s, 1, 1, 1, Device::Cpu, Method::Auto).is_err()); // index range
        assert!(pca_sparse(&[0, 2, 2], &[1, 0], &x, 2, 2, &c, &s, 1, 1, 1, Device::Cpu, Method::Auto).is_err()); // unsorted
        assert!(pca_sparse(&p, &i, &[1.0, f64::NAN], 2, 2, &c, &s, 1, 1, 1, Device::Cpu, Method::Auto).is_err());
        assert!(pca_sparse(&p, &i, &x, 2, 2, &c, &[1.0, -1.0], 1, 1, 1, Device::Cpu, Method::Auto).is_err());
        assert!(pca_sparse(&p, &i, &x, 2, 2, &[0.5], &s, 1, 1, 1, Device::Cpu, Method::Auto).is_err());
    }

    #[test]
    fn reads_row_and_column_major_blocks() {
        let t = Tensor::arange(6, (Kind::Double, Device::Cpu)).view([2, 3]);
        assert_eq!(dense_layout(&t), Some((3, 1)));
        assert_eq!(dense_layout(&t.tr()), Some((1, 3)));
        assert_eq!(dense_layout(&t.narrow(1, 0, 2)), None);
        assert_eq!(col_major(&t).unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(col_major(&t.tr()).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(col_major(&t.narrow(1, 1, 2)).unwrap(), vec![1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(pca(&[1.0, 2.0], 2, 1, 2, 1, 1, Device::Cpu).is_err());
        assert!(pca(&[1.0, f64::NAN, 3.0, 4.0], 2, 2, 1, 1, 1, Device::Cpu).is_err());
    }
}
