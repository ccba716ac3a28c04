//! Negative edges for the edge-reconstruction loss, drawn correctly: for each
//! positive (i, j) of A+I, `ratio` pairs (i, u) with u uniform over the spots
//! that are *not* in row i of A+I. (The reference used positions in the
//! non-neighbour list as node ids, so its "negatives" included neighbours and
//! never the highest ids, and it drew them once.) Everything stays on the
//! device: membership is a binary search in the sorted keys i·n + j.

use tch::{Kind, Tensor};

pub struct NegativeSampler {
    n: i64,
    /// Sorted keys i·n + j of the positive pairs.
    pos_keys: Tensor,
    pos_src: Tensor,
    ratio: i64,
}

/// A draw of negatives: source and destination spot ids.
pub struct Negatives {
    pub src: Tensor,
    pub dst: Tensor,
}

impl NegativeSampler {
    /// `src`/`dst` are the positive pairs in CSR order (so the keys are sorted).
    pub fn new(n: i64, src: &Tensor, dst: &Tensor, ratio: usize) -> Self {
        let pos_keys = src * n + dst;
        NegativeSampler { n, pos_keys, pos_src: src.shallow_clone(), ratio: ratio as i64 }
    }

    fn is_positive(&self, src: &Tensor, dst: &Tensor) -> Tensor {
        let keys = src * self.n + dst;
        let m = self.pos_keys.size()[0];
        let at = keys.searchsorted(&self.pos_keys, false, false, "left", None::<Tensor>).clamp_max(m - 1);
        self.pos_keys.gather(0, &at, false).eq_tensor(&keys)
    }

    /// Draws `ratio` negatives per positive with libtorch's (seeded) generator.
    /// Collisions with positives are redrawn; the few still colliding after
    /// 16 rounds (only on tiny, dense graphs) are dropped.
    pub fn draw(&self) -> Negatives {
        if self.ratio == 0 {
            let empty = Tensor::zeros([0], (Kind::Int64, self.pos_src.device()));
            return Negatives { src: empty.shallow_clone(), dst: empty };
        }
        let src = self.pos_src.repeat([self.ratio]);
        let m = src.size()[0];
        let opts = (Kind::Int64, src.device());
        let mut dst = Tensor::randint_low(0, self.n, [m], opts);
        let mut hit = self.is_positive(&src, &dst);
        for _ in 0..16 {
            if !bool::try_from(hit.any()).unwrap_or(false) {
                break;
            }
            let redraw = Tensor::randint_low(0, self.n, [m], opts);
            dst = dst.where_self(&hit.logical_not(), &redraw);
            hit = self.is_positive(&src, &dst);
        }
        let keep = hit.logical_not().nonzero().squeeze_dim(1);
        Negatives { src: src.index_select(0, &keep), dst: dst.index_select(0, &keep) }
    }
}
