use super::*;
use tch::{Device, Kind, Tensor};

/// Central finite differences of a scalar function against autograd, float64.
fn gradcheck(f: impl Fn(&Tensor) -> Tensor, x0: &Tensor) {
    let x = x0.detach().set_requires_grad(true);
    let y = f(&x);
    y.backward();
    let grad = Vec::<f64>::try_from(x.grad().view(-1)).unwrap();
    let base = Vec::<f64>::try_from(x0.view(-1)).unwrap();
    let h = 1e-6;
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += h;
        let mut minus = base.clone();
        minus[i] -= h;
        let fp = f64::try_from(f(&Tensor::from_slice(&plus).view_as(x0))).unwrap();
        let fm = f64::try_from(f(&Tensor::from_slice(&minus).view_as(x0))).unwrap();
        let fd = (fp - fm) / (2.0 * h);
        assert!((fd - grad[i]).abs() < 1e-5 * (1.0 + fd.abs()), "entry {i}: fd {fd} vs autograd {}", grad[i]);
    }
}

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Double, Device::Cpu))
}

#[test]
fn sce_gradient_matches_finite_differences() {
    tch::manual_seed(1);
    let b = randn(&[5, 4]);
    gradcheck(|a| sce(a, &b, 3.0), &randn(&[5, 4]));
}

#[test]
fn sce_is_zero_for_parallel_rows_and_positive_otherwise() {
    tch::manual_seed(2);
    let a = randn(&[6, 3]);
    assert!(f64::try_from(sce(&a, &(&a * 2.5), 3.0)).unwrap().abs() < 1e-12);
    assert!(f64::try_from(sce(&a, &(-&a), 3.0)).unwrap() > 7.99);
}

#[test]
fn dec_kl_gradient_matches_finite_differences() {
    tch::manual_seed(3);
    let p = randn(&[6, 4]).softmax(1, Kind::Double);
    gradcheck(|logits| dec_kl(&logits.softmax(1, Kind::Double), &p), &randn(&[6, 4]));
}

#[test]
fn dec_kl_is_mean_over_all_entries_and_zero_at_equality() {
    tch::manual_seed(4);
    let q = randn(&[5, 3]).softmax(1, Kind::Double);
    assert!(f64::try_from(dec_kl(&q, &q)).unwrap().abs() < 1e-12);
    let p = target_distribution(&q);
    let want = f64::try_from((&p * (p.log() - q.log())).sum(Kind::Double)).unwrap() / 15.0;
    assert!((f64::try_from(dec_kl(&q, &p)).unwrap() - want).abs() < 1e-12);
}

#[test]
fn masked_mse_gradient_matches_finite_differences() {
    tch::manual_seed(5);
    let target = randn(&[4, 3]);
    let idx = Tensor::from_slice(&[0i64, 2, 3]);
    gradcheck(|a| mse(&a.index_select(0, &idx), &target.index_select(0, &idx)), &randn(&[4, 3]));
}

#[test]
fn target_distribution_rows_sum_to_one_and_sharpen() {
    tch::manual_seed(6);
    let q = randn(&[8, 4]).softmax(1, Kind::Double);
    let p = target_distribution(&q);
    let sums = Vec::<f64>::try_from(p.sum_dim_intlist(1, false, None::<Kind>)).unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12));
    let qmax = f64::try_from(q.max()).unwrap();
    assert!(f64::try_from(p.max()).unwrap() >= qmax);
}

#[test]
fn edge_loss_with_perfect_logits_is_near_zero() {
    // Two orthogonal groups scaled up: positives within a group (large dot
    // product), negatives across groups (dot product 0 → logit 0 is not
    // perfect, so push negatives apart with opposite signs instead).
    let z = Tensor::from_slice(&[20.0f64, 0.0, 20.0, 0.0, -20.0, 0.0, -20.0, 0.0]).view([4, 2]);
    let pos_s = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let pos_d = Tensor::from_slice(&[1i64, 0, 3, 2]);
    let neg_s = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let neg_d = Tensor::from_slice(&[2i64, 3, 0, 1]);
    let l = f64::try_from(edge_bce(&z, (&pos_s, &pos_d), Some((&neg_s, &neg_d)), 0.5)).unwrap();
    assert!(l < 1e-10, "{l}");
    // And a random embedding gives a clearly positive loss.
    let l0 = f64::try_from(edge_bce(&z.zeros_like(), (&pos_s, &pos_d), Some((&neg_s, &neg_d)), 0.5)).unwrap();
    assert!((l0 - 0.5 * 2f64.ln()).abs() < 1e-12);
}

#[test]
fn vgae_kl_is_zero_at_the_prior() {
    let mu = Tensor::zeros([5, 3], (Kind::Double, Device::Cpu));
    assert!(f64::try_from(vgae_kl(&mu, &mu)).unwrap().abs() < 1e-15);
    tch::manual_seed(7);
    gradcheck(|m| vgae_kl(m, &(m * 0.3)), &randn(&[4, 3]));
}

/// The host (CPU) edge loss equals the tensor formulation, single- and
/// multi-threaded, for symmetric positives and random negatives; and both
/// equal autograd through `edge_bce`.
#[test]
fn host_edge_loss_matches_tensor_path_and_autograd() {
    use crate::graph::{build_graph, Coords, Neighbours};
    let side = 110usize;
    let coords: Vec<f64> = (0..side * side).flat_map(|i| [(i % side) as f64, (i / side) as f64]).collect();
    let g = build_graph(&Coords { data: &coords, dim: 2 }, None, Neighbours::Knn(12)).unwrap();
    let n = g.n();
    let (r, c) = g.target_pairs();
    let to_u32 = |v: &[i64]| v.iter().map(|&i| i as u32).collect::<Vec<u32>>();
    let pos = HostPairs::new(n, to_u32(&r), to_u32(&c));
    assert!(pos.symmetric && pos.len() > 100_000);
    // Random negatives, sorted by source.
    tch::manual_seed(8);
    let dst = Vec::<i64>::try_from(Tensor::randint(n as i64, [r.len() as i64], (Kind::Int64, Device::Cpu))).unwrap();
    let neg = HostPairs::new(n, to_u32(&r), to_u32(&dst));
    assert!(!neg.symmetric);
    let z = Tensor::randn([n as i64, 32], (Kind::Float, Device::Cpu)) * 0.4;
    let (vt, gt) = edge_bce_and_grad(&z, &pos.to_pairs(Device::Cpu), Some(&neg.to_pairs(Device::Cpu)), 0.7);
    let vt = f64::try_from(vt).unwrap();
    for threads in [1, 2] {
        let (vh, gh) = edge_bce_and_grad_host(&z, &pos, Some(&neg), 0.7, threads).unwrap();
        assert!((vh - vt).abs() < 1e-5 * vt.abs(), "{vh} vs {vt}");
        let scale = f64::try_from(gt.abs().max()).unwrap();
        let diff = f64::try_from((&gh - &gt).abs().max()).unwrap();
        assert!(diff < 1e-4 * scale, "threads {threads}: max |diff| {diff} (scale {scale})");
    }
    // Autograd through the reference formulation (float64).
    let zd = z.to_kind(Kind::Double).set_requires_grad(true);
    let l = edge_bce(&zd, (&Tensor::from_slice(&r), &Tensor::from_slice(&c)), Some((&Tensor::from_slice(&r), &Tensor::from_slice(&dst))), 0.7);
    l.backward();
    assert!((f64::try_from(&l).unwrap() - vt).abs() < 1e-5 * vt.abs());
    let diff = f64::try_from((zd.grad() - gt.to_kind(Kind::Double)).abs().max()).unwrap();
    assert!(diff < 1e-4 * f64::try_from(gt.abs().max()).unwrap(), "autograd diff {diff}");
}

/// The closed-form reconstruction gradients equal autograd of
/// rec_w·MSE + self_w·SCE(masked rows of R, X + m·t), including the token's.
#[test]
fn recon_loss_gradients_match_autograd() {
    tch::manual_seed(9);
    let (n, d) = (40i64, 7i64);
    let r0 = randn(&[n, d]);
    let x = randn(&[n, d]);
    let t0 = randn(&[1, d]) * 0.3;
    let ind = Tensor::rand([n, 1], (Kind::Double, Device::Cpu)).lt(0.7).to_kind(Kind::Double);
    let n_mask = f64::try_from(ind.sum(Kind::Double)).unwrap() as i64;
    let rl = recon_loss_and_grad(&r0, &x, Some(MaskedRows { ind: &ind, n_mask, token: Some(&t0) }), 10.0, 1.5, 3.0);
    let r = r0.detach().set_requires_grad(true);
    let t = t0.detach().set_requires_grad(true);
    let xm = &x + &ind * &t;
    let idx = ind.squeeze_dim(1).nonzero().squeeze_dim(1);
    let mse_ref = mse(&r, &x);
    let sce_ref = sce(&r.index_select(0, &idx), &xm.index_select(0, &idx), 3.0);
    (&mse_ref * 10.0 + &sce_ref * 1.5).backward();
    let close = |a: &Tensor, b: &Tensor| f64::try_from((a - b).abs().max()).unwrap() < 1e-10 * (1.0 + f64::try_from(b.abs().max()).unwrap());
    assert!(close(&rl.mse, &mse_ref) && close(&rl.sce, &sce_ref));
    assert!(close(&rl.d_recon, &r.grad()));
    assert!(close(rl.d_token.as_ref().unwrap(), &t.grad()));
    // No token in the target (replacement): the SCE of the masked rows of (R, X).
    let rep = recon_loss_and_grad(&r0, &x, Some(MaskedRows { ind: &ind, n_mask, token: None }), 10.0, 1.5, 3.0);
    let r2 = r0.detach().set_requires_grad(true);
    let sce_rep = sce(&r2.index_select(0, &idx), &x.index_select(0, &idx), 3.0);
    (mse(&r2, &x) * 10.0 + &sce_rep * 1.5).backward();
    assert!(close(&rep.sce, &sce_rep) && !close(&rep.sce, &sce_ref));
    assert!(close(&rep.d_recon, &r2.grad()) && rep.d_token.is_none());
    // Without a mask: the MSE part alone.
    let plain = recon_loss_and_grad(&r0, &x, None, 10.0, 1.5, 3.0);
    assert!(plain.d_token.is_none() && f64::try_from(&plain.sce).unwrap() == 0.0);
    assert!(close(&plain.d_recon, &((&r0 - &x) * (20.0 / (n * d) as f64))));
}
