"""Quality metrics as pure functions: distribution distances, noise, diversity, rhythm.

Distances compare feature sets (rows = clips), usually ``features.clip_features`` of generated and
real clips. A distance alone is hard to read, so ``real_baseline`` gives the same metric between
two disjoint halves of the real data: a generator is as good as the features can tell when its
distance to the real data approaches that baseline.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch

__all__ = [
    "standardise",
    "frechet_distance",
    "kernel_distance",
    "real_baseline",
    "spectral_flatness",
    "high_freq_energy_ratio",
    "tonal_share",
    "drone_share",
    "harmonic_lines",
    "diversity",
    "fidelity_coverage",
    "rhythm_stats",
    "ioi_distance",
    "spectral_shape_db",
    "shape_distance_db",
]


def _feats(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {a.shape}")
    return a


def standardise(reference, *others) -> list[np.ndarray]:
    """z-score ``reference`` and every array in ``others`` with the reference's mean and std per column,
    so a distance is not dominated by whichever feature has the largest units. Returns a list."""
    ref = _feats(reference)
    mu, sd = ref.mean(0), ref.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return [(ref - mu) / sd] + [(_feats(o) - mu) / sd for o in others]


def frechet_distance(feat_a, feat_b, eps: float = 1e-6, warn: bool = True) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID/FAD formula):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    tr((S_a S_b)^1/2) is computed as sum(sqrt(eig(S_a^1/2 S_b S_a^1/2))), a symmetric PSD matrix, with two
    symmetric eigendecompositions: the same value as scipy.linalg.sqrtm (tested) and ~100x faster at 136
    dimensions. eps * I keeps singular covariances (N <= D) defined, but the value is then biased upwards for
    small N (a warning says so unless ``warn=False``); prefer ``kernel_distance`` there. Needs N >= 2 per set.
    """
    a, b = _feats(feat_a), _feats(feat_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs at least 2 clips per set")
    d = a.shape[1]
    if warn and min(len(a), len(b)) <= d:
        warnings.warn(f"frechet_distance with {min(len(a), len(b))} clips for {d} feature dimensions: covariances "
                      "are singular, the value is biased upwards; compare it only at equal N or use kernel_distance",
                      stacklevel=2)
    s_a = np.atleast_2d(np.cov(a, rowvar=False)) + eps * np.eye(d)
    s_b = np.atleast_2d(np.cov(b, rowvar=False)) + eps * np.eye(d)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root_a @ s_b @ root_a
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = a.mean(0) - b.mean(0)
    return max(float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_covmean), 0.0)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_distance(feat_a, feat_b, n_subsets: int = 50, subset_size: int | None = None,
                    seed: int = 0) -> tuple[float, float]:
    """Kernel distance (KID): unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3.

    Unbiased means it has no small-sample bias (its expectation is the population MMD^2, which is 0
    for equal distributions, so it can come out slightly negative); this is why it stays honest for
    the few dozen clips users generate. Returns (estimate, standard error).

    subset_size=None (default): one estimate from every clip of both sets (sizes may differ), with a
    jackknife standard error (leave one clip out, in turn from each set; measured on real-vs-real
    splits it is within ~20% of the estimate's true spread; NaN when a set has 2 clips). ``n_subsets`` and
    ``seed`` are unused.
    subset_size=m: the mean over ``n_subsets`` random subsets of m clips per set (seeded), and the std
    of the per-subset estimates, the error of one m-clip estimate (larger than the mean's).
    """
    a, b = _feats(feat_a), _feats(feat_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    n_min = min(len(a), len(b))
    if n_min < 2:
        raise ValueError("kernel_distance needs at least 2 clips per set")
    if subset_size is None:
        return _mmd2_jackknife(a, b)
    m = subset_size
    if not 2 <= m <= n_min:
        raise ValueError(f"subset_size must be between 2 and {n_min}, got {m}")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_subsets)
    for s in range(n_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        vals[s] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                   + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2.0 * kxy.mean())
    se = float(vals.std(ddof=1)) if n_subsets > 1 else float("nan")
    return float(vals.mean()), se


def _mmd2_jackknife(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unbiased MMD^2 of all of x (n) against all of y (m), and its jackknife standard error, from the
    kernel matrices' row sums (each leave-one-out estimate in O(1))."""
    n, m = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    rx, ry, cx, cy = kxx.sum(1), kyy.sum(1), kxy.sum(1), kxy.sum(0)
    sxx, syy, sxy = rx.sum(), ry.sum(), cx.sum()
    val = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    if min(n, m) < 3:  # leaving one out would leave a single clip: no pairs
        return float(val), float("nan")
    jx = (sxx - 2 * rx) / ((n - 1) * (n - 2)) + syy / (m * (m - 1)) - 2.0 * (sxy - cx) / ((n - 1) * m)
    jy = sxx / (n * (n - 1)) + (syy - 2 * ry) / ((m - 1) * (m - 2)) - 2.0 * (sxy - cy) / (n * (m - 1))
    var = (n - 1) / n * np.sum((jx - jx.mean()) ** 2) + (m - 1) / m * np.sum((jy - jy.mean()) ** 2)
    return float(val), float(np.sqrt(var))


def real_baseline(feat_real, fn: Callable, seed: int = 0, **kwargs):
    """``fn(half_1, half_2, **kwargs)`` on two disjoint random halves of the real features: the value
    the metric takes for data exactly as good as the real data at this sample size."""
    r = np.asarray(feat_real)
    if len(r) < 4:
        raise ValueError("real_baseline needs at least 4 real clips")
    perm = np.random.default_rng(seed).permutation(len(r))
    h = len(r) // 2
    return fn(r[perm[:h]], r[perm[h:2 * h]], **kwargs)


def _to_tensor(x) -> torch.Tensor:
    from .features import as_batch

    return as_batch(x)


def spectral_flatness(x, sr: int, n_fft: int = 1024, hop: int = 256, welch: bool = False,
                      silence_db: float = -60.0) -> np.ndarray:
    """Spectral flatness per clip (N,): geometric / arithmetic mean of the power spectrum, in [0, 1].

    welch=False (default, the usual per-frame definition as in librosa): flatness of each frame's
    power spectrum, averaged over the clip's frames. A pure tone gives ~0; white noise gives about
    exp(-0.577) = 0.56, not 1, because a single frame's periodogram of noise fluctuates (each bin
    is exponentially distributed and the geometric mean of that is e^-gamma times its mean).
    welch=True: flatness of the clip's average power spectrum (Welch), where noise reads ~1 but
    a sequence of different notes reads flatter than each note. Frames quieter than ``silence_db``
    below the clip's loudest frame are ignored (silence has no spectral shape); an all-silent clip
    returns 0. ``sr`` is unused by the formula and kept for a uniform signature.
    """
    from .features import power_spectrogram

    p = power_spectrogram(_to_tensor(x), n_fft, hop).double()  # (N, F, frames)
    floor = 1e-20
    if welch:
        p = p.mean(-1, keepdim=True)
    arith = p.mean(1)  # (N, frames)
    geo = torch.exp(torch.log(p + floor).mean(1))
    flat = geo / (arith + floor)
    loud = arith > arith.amax(-1, keepdim=True) * 10.0 ** (silence_db / 10.0)
    loud &= arith > 1e-12
    n = loud.sum(-1)
    out = (flat * loud).sum(-1) / n.clamp_min(1)
    return torch.where(n > 0, out, torch.zeros_like(out)).clamp(0.0, 1.0).numpy()


def high_freq_energy_ratio(x, sr: int, cutoff_hz: float = 4000.0) -> np.ndarray:
    """Share of each clip's energy at or above ``cutoff_hz`` (N,), from the whole-clip power spectrum.
    GAN hiss and aliasing show up as a larger share than the real data has. Silent clips give 0."""
    t = _to_tensor(x).double()
    t = t - t.mean(-1, keepdim=True)
    p = torch.fft.rfft(t).abs().square()
    freqs = torch.fft.rfftfreq(t.shape[-1], d=1.0 / sr, dtype=torch.float64)
    total = p.sum(-1)
    high = p[:, freqs >= cutoff_hz].sum(-1)
    return torch.where(total > 0, high / total.clamp_min(1e-300), torch.zeros_like(total)).numpy()


def harmonic_lines(x, sr: int, held: float = 0.8, n_fft: int | None = None, hold: int = 5, width_hz: float = 200.0,
                   peak_db: float = 10.0, fmin_hz: float = 30.0, silence_db: float = -40.0) -> np.ndarray:
    """(N, 2): each clip's ``tonal_share`` and ``drone_share``, from one pass of the line detection."""
    from scipy.ndimage import median_filter

    from .features import power_spectrogram

    n_fft = n_fft or 2 ** round(math.log2(0.093 * sr))
    p = power_spectrogram(_to_tensor(x), n_fft, n_fft // 4).double().numpy()  # (N, F, frames)
    p = p[:, np.fft.rfftfreq(n_fft, 1.0 / sr) >= fmin_hz]
    width = max(3, int(round(width_hz * n_fft / sr)) | 1)
    smooth = median_filter(p, size=(1, 1, hold), mode="nearest")
    line = smooth > median_filter(smooth, size=(1, width, 1), mode="nearest") * 10.0 ** (peak_db / 10.0)
    energy = p.sum(1)  # (N, frames)
    loud = (energy > energy.max(-1, keepdims=True) * 10.0 ** (silence_db / 10.0)) & (energy > 1e-12)
    n_loud = loud.sum(-1)
    tonal = ((p * line).sum(1) / np.maximum(energy, 1e-30) * loud).sum(-1) / np.maximum(n_loud, 1)
    line = line & loud[:, None]
    fixed = line.sum(-1) >= held * np.maximum(n_loud, 1)[:, None]  # (N, F): a bin on a line all along
    on_line = (p * line).sum((1, 2))
    drone = (p * line * fixed[..., None]).sum((1, 2)) / np.maximum(on_line, 1e-30) * (on_line > 0)
    return np.stack([tonal, drone], 1)


def tonal_share(x, sr: int, **line_args) -> np.ndarray:
    """Share of each clip's energy in harmonic lines (N,), in [0, 1]: the pitch a spectrogram shows.

    A bin is on a line when its power, held by a median over ``hold`` frames (~0.1 s), stands ``peak_db`` above
    the median of the ``width_hz`` around it. Noise and clicks read ~0 (a noise bin's chance peak does not last),
    a held tone or chord ~1, and a mix the tones' share of the energy. Recordings read ~0.1-0.8; a wash of noisy
    pulses reads far lower and a drone far higher, where flatness and onset statistics see neither. Frames
    ``silence_db`` below the clip's loudest are ignored; an all-silent clip gives 0. ``n_fft`` (default: the power
    of two nearest 93 ms, 2048 at 22.05 kHz) sets the resolution; frames hop by a quarter of it
    (``harmonic_lines``'s arguments).
    """
    return harmonic_lines(x, sr, **line_args)[:, 0]


def drone_share(x, sr: int, held: float = 0.8, **line_args) -> np.ndarray:
    """Share of each clip's line energy (``tonal_share``'s lines) in bins that are on a line in at least ``held``
    of its loud frames (N,), in [0, 1]: ~1 for a drone, a tone held all clip long; ~0 for notes that change
    (a melody, a riff). A clip with no lines gives 0. Measured over a clip, so it reads more on short clips:
    compare clips of one length."""
    return harmonic_lines(x, sr, held, **line_args)[:, 1]


def _fine_patterns(logmag, lo: int, hi: int, width: int) -> np.ndarray:
    """Each clip's frame-averaged log-magnitude (clips, bins, frames) less its running median over ``width`` bins,
    at bins lo..hi: the fine structure, its envelope taken out."""
    from scipy.ndimage import median_filter

    m = np.asarray(logmag, dtype=np.float64).mean(-1)
    return (m - median_filter(m, size=(1, width), mode="nearest"))[:, lo:hi]


def fine_structure_pattern(logmag, lo: int, hi: int, width: int = 9) -> tuple[float, float]:
    """How alike clips' fine structure is. Each clip's log-magnitude (clips, bins, frames) is averaged over frames,
    less its running median over ``width`` bins (the envelope), at bins lo..hi. Returns the mean correlation of that
    pattern between different clips, and its mean absolute size. Recordings' fine structure follows what plays
    (0.1-0.2 between clips); a decoder that draws one texture for every clip reads near 1 (round 22 of
    docs/two-stage.md)."""
    pattern = _fine_patterns(logmag, lo, hi, width)
    pattern = pattern[pattern.std(1) > 0]  # a silent clip has no fine structure to compare
    n = len(pattern)
    size = float(np.abs(pattern).mean()) if n else float("nan")
    if n < 2:
        return float("nan"), size
    c = np.corrcoef(pattern)
    return float((c.sum() - n) / (n * (n - 1))), size


def fine_structure_match(logmag, reference, lo: int, hi: int, width: int = 9) -> tuple[float, float]:
    """Is a reconstruction's fine structure in its own recording's place? ``fine_structure_pattern``'s pattern of
    each clip of ``logmag`` correlated with the same clip's of ``reference`` (both (clips, bins, frames)), and
    with the other clips' (what a fixed texture would score). Returns (own, others) mean correlations; own near 1
    puts the partials where the recording has them, own near others draws the same whatever plays."""
    a, b = _fine_patterns(logmag, lo, hi, width), _fine_patterns(reference, lo, hi, width)
    keep = (a.std(1) > 0) & (b.std(1) > 0)
    a, b = a[keep], b[keep]
    n = len(a)
    if n < 2:
        return float("nan"), float("nan")
    c = np.corrcoef(a, b)[:n, n:]
    return float(np.trace(c) / n), float((c.sum() - np.trace(c)) / (n * (n - 1)))


def _log_magnitude(x, n_fft: int) -> np.ndarray:
    """Clips (N, T) -> natural-log STFT magnitude (N, bins, frames), hop n_fft / 4."""
    from .features import power_spectrogram

    return 0.5 * np.log(power_spectrogram(_to_tensor(x), n_fft, n_fft // 4).double().numpy() + 1e-14)


def _band_bins(sr: int, n_fft: int, band_hz: tuple[float, float]) -> tuple[int, int]:
    lo, hi = (int(round(f * n_fft / sr)) for f in band_hz)
    return lo, hi


def fine_structure_agreement(x, reference, sr: int, n_fft: int = 1024,
                             band_hz: tuple[float, float] = (500.0, 5000.0)) -> tuple[float, float]:
    """``fine_structure_match`` of clips (N, T) against ``reference`` clips (N, T), e.g. reconstructions against
    the recordings: (own, others) correlations over ``band_hz``."""
    return fine_structure_match(_log_magnitude(x, n_fft), _log_magnitude(reference, n_fft),
                                *_band_bins(sr, n_fft, band_hz))


def fine_structure_similarity(x, sr: int, n_fft: int = 1024, band_hz: tuple[float, float] = (500.0, 5000.0)):
    """``fine_structure_pattern`` of clips (N, T) at ``sr`` over ``band_hz``, from their log-magnitude STFT (the
    size in nepers of magnitude, as ``benchmarks/twostage.py pattern`` reports it for a decoder)."""
    return fine_structure_pattern(_log_magnitude(x, n_fft), *_band_bins(sr, n_fft, band_hz))


def diversity(x_feats, max_n: int = 2000, seed: int = 0) -> float:
    """Mean Euclidean distance between all pairs of clips (rows) in a feature set.

    Compare the generated batch with the real data (same features, same standardisation, ideally
    the same N): a much smaller value means mode collapse, the generator repeating itself. Above
    ``max_n`` rows a random subset (``seed``) is used to bound the N^2 cost.
    """
    f = _feats(x_feats)
    if len(f) < 2:
        raise ValueError("diversity needs at least 2 clips")
    if len(f) > max_n:
        f = f[np.random.default_rng(seed).choice(len(f), max_n, replace=False)]
    t = torch.from_numpy(f)
    d = torch.pdist(t)
    return float(d.mean())


def fidelity_coverage(real_feats, fake_feats, k: int = 5) -> dict[str, float]:
    """Precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020) on feature sets.

    Each real clip gets a ball reaching its k-th nearest real neighbour (the same for fakes, for recall).
    precision: share of fakes inside some real ball (do they sound like real clips?); recall: share of
    reals inside some fake ball; density: mean number of real balls holding a fake, over k (about 1 for
    data like the real, above 1 when fakes crowd the dense middle); coverage: share of real balls that
    hold at least one fake. KID and FD compare means and spreads, so a few bland clips near the real mean
    can score well; coverage falls for them, and for a model replaying a few clips, so read them together.
    """
    r, f = _feats(real_feats), _feats(fake_feats)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    if not 1 <= k < min(len(r), len(f)):
        raise ValueError(f"k must be between 1 and {min(len(r), len(f)) - 1} (the smaller set's size - 1), got {k}")
    rt, ft = torch.from_numpy(r), torch.from_numpy(f)
    d_rr, d_ff, d_rf = torch.cdist(rt, rt), torch.cdist(ft, ft), torch.cdist(rt, ft)
    r_rad = d_rr.kthvalue(k + 1, dim=1).values  # +1: a point is its own nearest neighbour
    f_rad = d_ff.kthvalue(k + 1, dim=1).values
    in_real = d_rf <= r_rad[:, None]  # [i, j]: fake j inside real i's ball
    return {
        "precision": float(in_real.any(0).double().mean()),
        "recall": float((d_rf <= f_rad[None, :]).any(1).double().mean()),
        "density": float(in_real.double().sum(0).mean() / k),
        "coverage": float(in_real.any(1).double().mean()),
        "k": k,
    }


def rhythm_stats(clips, sr: int, ioi_bins=None) -> dict:
    """Rhythm summary of a set of clips, using ``evaluate.rhythm`` and ``dsp.beat``.

    Returns {"onset_rate": (N,) onsets per second, "onset_rate_mean": float,
    "onset_contrast": (N,) ``rhythm.onset_contrast`` (~1 for stationary noise), "onset_contrast_median",
    "ioi_hist": pooled inter-onset-interval histogram (sums to 1, or all zeros when no clip has two
    onsets), "ioi_bins": its edges (s), "tempo": (N,) BPM (NaN where unknown), "tempo_median": float}.
    The IOI histogram pools the intervals of all clips, so clips with more onsets weigh more, as in
    the listening experience of the whole set.
    """
    from ..dsp.beat import estimate_tempo_batch
    from . import rhythm

    c = _to_tensor(clips).numpy().astype(np.float32)
    bins = rhythm.DEFAULT_IOI_BINS if ioi_bins is None else np.asarray(ioi_bins, dtype=np.float64)
    rates, iois = [], []
    for row in c:
        on = np.sort(np.asarray(rhythm.detect_onsets(row, sr), dtype=np.float64))
        rates.append(len(on) / (len(row) / sr) if len(row) else 0.0)
        if len(on) >= 2:
            iois.append(np.diff(on))
    counts = np.histogram(np.concatenate(iois) if iois else np.zeros(0), bins=bins)[0].astype(np.float64)
    hist = counts / counts.sum() if counts.sum() > 0 else counts
    tempo = np.asarray(estimate_tempo_batch(c, sr), dtype=np.float64)
    finite = tempo[np.isfinite(tempo)]
    rates = np.asarray(rates, dtype=np.float64)
    contrast = np.array([rhythm.onset_contrast(row, sr) for row in c], dtype=np.float64)
    return {
        "onset_rate": rates,
        "onset_rate_mean": float(rates.mean()) if len(rates) else float("nan"),
        "onset_contrast": contrast,
        "onset_contrast_median": float(np.nanmedian(contrast)) if np.isfinite(contrast).any() else float("nan"),
        "ioi_hist": hist,
        "ioi_bins": np.asarray(bins, dtype=np.float64),
        "tempo": tempo,
        "tempo_median": float(np.median(finite)) if len(finite) else float("nan"),
    }


def ioi_distance(hist_a, hist_b, bin_edges=None, method: str = "wasserstein") -> float:
    """Distance between two inter-onset-interval histograms over the same bins.

    method="wasserstein" (default): earth mover's distance in seconds with each bin's mass at its
    centre, sum |CDF_a - CDF_b| * centre spacing (bin_edges default: ``rhythm.DEFAULT_IOI_BINS`` when the length fits, else unit-width
    bins); it says how far the rhythm's timing is off, so 16ths vs 8ths differ by more than
    16ths vs slightly-fast 16ths. method="tv": total variation, 0.5 * sum |p_a - p_b| in [0, 1].
    Histograms are normalised to sum 1 first; an empty histogram against a non-empty one gives the
    maximum (tv 1, wasserstein the bins' span); two empty ones give 0.
    """
    a = np.asarray(hist_a, dtype=np.float64).reshape(-1)
    b = np.asarray(hist_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"histograms have different lengths: {a.shape[0]} vs {b.shape[0]}")
    if bin_edges is None:
        from .rhythm import DEFAULT_IOI_BINS

        bin_edges = DEFAULT_IOI_BINS if len(DEFAULT_IOI_BINS) == len(a) + 1 else np.arange(len(a) + 1.0)
    edges = np.asarray(bin_edges, dtype=np.float64)
    if len(edges) != len(a) + 1:
        raise ValueError(f"need {len(a) + 1} bin edges, got {len(edges)}")
    sa, sb = a.sum(), b.sum()
    if sa <= 0 and sb <= 0:
        return 0.0
    if sa <= 0 or sb <= 0:
        return 1.0 if method == "tv" else float(_w1_widths(edges).sum())
    a, b = a / sa, b / sb
    if method == "tv":
        return float(0.5 * np.abs(a - b).sum())
    if method == "wasserstein":
        return float(np.sum(np.abs(np.cumsum(a) - np.cumsum(b)) * _w1_widths(edges)))
    raise ValueError(f"method must be 'wasserstein' or 'tv', got {method!r}")


def _w1_widths(edges: np.ndarray) -> np.ndarray:
    """Weights for W1 from histogram CDFs: mass in bin i sits at its centre, so CDF_i holds between
    centre i and centre i+1 (distance between consecutive centres); the last CDF difference is 0."""
    centres = 0.5 * (edges[:-1] + edges[1:])
    return np.append(np.diff(centres), 0.0)


def spectral_shape_db(x, sr: int, n_mels: int = 64) -> np.ndarray:
    """The set's average spectrum as a timbre profile (n_mels,): 10 log10 of the mel power averaged over
    all clips and frames, minus its mean over bands, so loudness does not count, only the shape."""
    from .features import LOG_FLOOR, log_mel

    t = _to_tensor(x)
    power = np.zeros(n_mels)
    for i in range(0, len(t), 256):
        lm = log_mel(t[i:i + 256], sr, n_mels=n_mels).double()
        power += (torch.exp(lm) - LOG_FLOOR).clamp_min(0.0).sum((0, 2)).numpy()
    db = 10.0 * np.log10(power + 1e-20)
    return db - db.mean()


def shape_distance_db(shape_a, shape_b) -> float:
    """RMS difference (dB) between two ``spectral_shape_db`` profiles: 0 for the same timbre, a few dB
    for white noise against guitar riffs. Compare it with the same distance between two halves of the
    real clips."""
    a, b = np.asarray(shape_a, dtype=np.float64), np.asarray(shape_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"profiles have different lengths: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.mean((a - b) ** 2)))
