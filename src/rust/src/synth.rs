//! A synthetic layered tissue for tests and the `sedr-bench` binary: a hex
//! grid (Visium-like spacing) cut into curved horizontal bands, with
//! features = band mean in a few "signal" dimensions plus Gaussian noise in
//! every dimension. Spatial smoothing over neighbours removes most of the
//! noise, so a spatial method can recover the bands where PCA of the
//! features alone cannot.

use crate::rng::SplitMix64;

/// A generated tissue.
pub struct Tissue {
    pub n: usize,
    pub d: usize,
    /// n × 2 coordinates, row-major.
    pub coords: Vec<f64>,
    /// n × d features, column-major (R's layout, as `Trainer::new` takes).
    pub x: Vec<f64>,
    /// The band of each spot, 0..bands.
    pub label: Vec<usize>,
}

/// A standard normal draw (Box–Muller).
pub fn gauss(rng: &mut SplitMix64) -> f64 {
    let (u1, u2) = (rng.next_f64().max(1e-300), rng.next_f64());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `rows × cols` hex grid, `bands` curved layers, `d` features of which the
/// first `signal_dims` carry an N(0, 1) band mean; every feature gets
/// N(0, noise²) noise.
pub fn layered_tissue(rows: usize, cols: usize, bands: usize, d: usize, signal_dims: usize, noise: f64, seed: u64) -> Tissue {
    let bands = bands.max(1);
    let mut rng = SplitMix64::new(seed);
    let n = rows * cols;
    let mut coords = Vec::with_capacity(2 * n);
    let mut label = Vec::with_capacity(n);
    let top = rows as f64 * 3f64.sqrt() / 2.0 + 3.0;
    for r in 0..rows {
        for c in 0..cols {
            let x = c as f64 + 0.5 * (r % 2) as f64;
            let y = r as f64 * 3f64.sqrt() / 2.0;
            coords.extend_from_slice(&[x, y]);
            let h = y + 3.0 * (x / cols as f64 * std::f64::consts::PI).sin();
            label.push(((h.max(0.0) / top * bands as f64) as usize).min(bands - 1));
        }
    }
    let means: Vec<Vec<f64>> = (0..bands).map(|_| (0..d).map(|_| gauss(&mut rng)).collect()).collect();
    let mut x = vec![0.0; n * d];
    for j in 0..d {
        for i in 0..n {
            x[j * n + i] = if j < signal_dims { means[label[i]][j] } else { 0.0 } + noise * gauss(&mut rng);
        }
    }
    Tissue { n, d, coords, x, label }
}

/// A near-square grid with about `n` spots (exactly `rows × cols`).
pub fn grid_for(n: usize) -> (usize, usize) {
    let rows = ((n as f64).sqrt().round() as usize).max(1);
    let cols = n.div_ceil(rows).max(1);
    (rows, cols)
}
