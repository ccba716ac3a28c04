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
