# The dense products of one CPU training epoch at DLPFC 151673's size (all
# but the few small ones of the decoder's weights, 32 x 32 x 200), timed
# alone on one thread with the same libtorch (MKL) the package links: a floor
# for the epoch's time, to set beside `sedr-bench`'s ms per epoch.
#   <venv>/bin/python bench/epoch-products.py [n] [inputs]
# Widths are the defaults (encoder 64 -> 16, graph layer 64 -> 16 + 16,
# embedding 32); the encoder's first product runs on the 20 % kept rows. Each
# product is timed in the orientation the forward or backward uses it.
import sys, time, warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3639
d = int(sys.argv[2]) if len(sys.argv) > 2 else 200
kept = int(0.2 * n)

def t(rows, inner, cols, trans_a=False):
    """Seconds for one (rows x inner) . (inner x cols) product."""
    a = torch.randn(inner, rows).t() if trans_a else torch.randn(rows, inner)
    b = torch.randn(inner, cols)
    for _ in range(20):
        a.mm(b)
    reps = 300
    t0 = time.perf_counter()
    for _ in range(reps):
        a.mm(b)
    return (time.perf_counter() - t0) / reps

products = [  # (what, rows, inner, cols, transposed left operand)
    ("encoder 1, forward (kept rows)", kept, d, 64, False),
    ("encoder 1, weight gradient", d, kept, 64, True),
    ("encoder 2, forward", n, 64, 16, False),
    ("encoder 2, weight gradient", 64, n, 16, True),
    ("encoder 2, input gradient", n, 16, 64, False),
    ("graph layer, forward", n, 16, 64, False),
    ("graph layer, weight gradient", 16, n, 64, True),
    ("graph layer, input gradient", n, 64, 16, False),
    ("heads mu, sigma, forward (x2)", n, 64, 16, False),
    ("heads, weight gradients (x2)", 64, n, 16, True),
    ("heads, input gradients (x2)", n, 16, 64, False),
    ("decoder X W^T", n, d, 32, False),
    ("decoder (S c)^T X", 32, n, d, True),
    ("decoder S (W W^T), (S c)^T S", n, 32, 32, False),
]
print("| product | shape | us | GFLOP/s |\n|---|---|---|---|")
total_s = total_flop = 0.0
for what, r, k, c, tr in products:
    # "(x2)" rows and the decoder's two n x 32 x 32 products run twice.
    count = 2 if "(x2)" in what or what.startswith("decoder S") else 1
    s = t(r, k, c, tr)
    flop = 2.0 * r * k * c
    total_s += s * count
    total_flop += flop * count
    print(f"| {what} | {r} x {k} x {c} | {s * 1e6:.0f} | {flop / s / 1e9:.1f} |")
print(f"\none epoch's dense products: {total_flop / 1e6:.0f} MFLOP in {total_s * 1e3:.2f} ms; "
      f"200 epochs: {total_s * 200:.2f} s (n = {n}, {d} inputs, 1 thread)")
