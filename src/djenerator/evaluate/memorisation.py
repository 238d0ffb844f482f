"""Memorisation: did the generator copy its training data?

Two checks: the highest normalised cross-correlation of each generated clip with every training clip over
all time shifts (a copy scores ~1 whatever its gain, polarity or position; FFTs, the training set read in
chunks so memory stays bounded), and the nearest training clip in feature space against how close
training clips are to one another. The formulas: docs/how-it-works.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["max_normalized_xcorr", "nearest_feature_neighbour", "memorisation_report", "copy_alarm",
           "data_copying_z", "fast_fft_size"]

_ENERGY_FLOOR = 1e-3  # overlap energies are floored at this share of the clip's total energy


def fast_fft_size(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n (sizes pocketfft and cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _prefix_energy(x: torch.Tensor) -> torch.Tensor:
    """(n, T) -> (n, T+1) float64 with P[:, k] = sum_{t<k} x[t]^2."""
    p = torch.cumsum(x.double().square(), dim=-1)
    return torch.nn.functional.pad(p, (1, 0))


def _lag_inv_norm(p: torch.Tensor, lags: torch.Tensor, valid: torch.Tensor, T: int, shifted: bool) -> torch.Tensor:
    """1/sqrt(energy of the overlapping part) for every lag, (n, L) float32; 0 where not ``valid``.

    For lag l a generated sample t meets training sample t+l. The generated clip's overlap is
    [max(0,-l), min(T, T-l)) (shifted=False); the training clip's is [max(0,l), min(T, T+l))
    (shifted=True). Energies are floored at a small share of the clip's total energy so that an
    almost silent overlap cannot produce a large ratio from rounding noise.
    """
    lags = lags.clamp(-T, T)
    if shifted:
        lo, hi = lags.clamp_min(0), (T + lags).clamp_max(T)
    else:
        lo, hi = (-lags).clamp_min(0), (T - lags).clamp_max(T)
    e = p[:, hi] - p[:, lo]
    total = p[:, -1:]
    e = torch.maximum(e, _ENERGY_FLOOR * total).clamp_min(1e-20)
    return (e.rsqrt() * valid).float()


@torch.no_grad()
def max_normalized_xcorr(gen, train, batch: int = 8, device: str | torch.device = "cpu",
                         min_overlap: float = 0.5, progress: bool = False):
    """For each generated clip, the training clip, lag and value of the highest |normalised xcorr|.

    gen: (G, T) and train: (N, T) arrays or tensors (train may be a np.memmap; it is read ``batch``
    clips at a time). Returns numpy arrays (best_idx (G,) int64, best_corr (G,) float32 in [0, 1],
    best_lag (G,) int64). best_lag = l means gen[t] ~ a * train[best_idx, t + l] for some gain a
    (possibly negative), i.e. the generated clip starts l samples after the training clip's start.
    Lags range over |l| <= T - ceil(min_overlap * T). See the module docstring for the formula.
    An all-zero clip scores 0 against everything. Cost: G*N inverse FFTs of size ~(2 - min_overlap)*T.
    """
    device = torch.device(device)
    g = gen if isinstance(gen, torch.Tensor) else torch.from_numpy(np.array(gen, dtype=np.float32))
    g = g.to(device=device, dtype=torch.float32)
    if g.ndim != 2 or len(train.shape) != 2 or train.shape[1] != g.shape[1]:
        raise ValueError(f"gen (G, T) and train (N, T) must share T; got {tuple(g.shape)} and {tuple(train.shape)}")
    if not 0.0 < min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    G, T = g.shape
    N = train.shape[0]
    if G == 0 or N == 0:
        raise ValueError(f"need at least one generated and one training clip, got {G} and {N}")
    max_lag = T - math.ceil(min_overlap * T)
    L = fast_fft_size(T + max_lag)  # circular correlation of size L has no wrap-around for |lag| <= max_lag
    # the circular correlation's index k holds lag k (k <= max_lag) or k - L (k >= L - max_lag);
    # indices in between are not valid lags and get a zero weight, so no copy is needed to drop them
    k = torch.arange(L, device=device)
    lags = torch.where(k <= max_lag, k, k - L)
    valid = (lags.abs() <= max_lag).double()
    lags = torch.where(valid > 0, lags, torch.zeros_like(lags))

    g = g - g.mean(dim=1, keepdim=True)
    g_inv = _lag_inv_norm(_prefix_energy(g), lags, valid, T, shifted=False)  # (G, L)
    g_spec = torch.fft.rfft(g, n=L).conj_physical()  # (G, F)

    best_corr = torch.full((G,), -1.0, device=device)
    best_idx = torch.zeros(G, dtype=torch.long, device=device)
    best_lag = torch.zeros(G, dtype=torch.long, device=device)
    starts = range(0, N, batch)
    if progress:
        try:
            from tqdm import tqdm
            starts = tqdm(starts, desc="xcorr", unit="chunk")
        except ImportError:  # pragma: no cover
            pass
    for s in starts:
        chunk = train[s:s + batch]
        x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk, dtype=np.float32))
        x = x.to(device=device, dtype=torch.float32)
        x = x - x.mean(dim=1, keepdim=True)
        x_inv = _lag_inv_norm(_prefix_energy(x), lags, valid, T, shifted=True)  # (n, L)
        x_spec = torch.fft.rfft(x, n=L)  # (n, F)
        c = torch.fft.irfft(g_spec[:, None, :] * x_spec[None, :, :], n=L)  # (G, n, L): c[l] = sum g[t] x[t+l]
        c.mul_(g_inv[:, None, :]).mul_(x_inv[None, :, :]).abs_()
        vals, where = c.view(G, -1).max(dim=1)  # over (train clip, lag)
        better = vals > best_corr
        best_corr = torch.where(better, vals, best_corr)
        best_idx = torch.where(better, s + torch.div(where, c.shape[-1], rounding_mode="floor"), best_idx)
        best_lag = torch.where(better, lags[where % c.shape[-1]], best_lag)
    best_corr = best_corr.clamp(0.0, 1.0)
    return best_idx.cpu().numpy(), best_corr.cpu().numpy(), best_lag.cpu().numpy()


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min(0.0)


@torch.no_grad()
def nearest_feature_neighbour(gen_feats, train_feats, standardise: bool = True, max_reference: int = 2000,
                              seed: int = 0, chunk: int = 4096) -> dict:
    """Nearest training clip of every generated clip in feature space, relative to real-real spacing.

    Returns {"index": (G,) int, "distance": (G,) float, "ratio": (G,) float, "real_nn_distance": float}.
    real_nn_distance is the median distance from a training clip (up to ``max_reference`` of them,
    drawn with ``seed``) to its nearest *other* training clip; ratio = distance / real_nn_distance.
    A ratio well below 1 means a generated clip sits closer to one training clip than training clips
    sit to each other, a hint of copying (datasets cut with overlapping windows have a small
    real_nn_distance, which keeps this honest). Features are z-scored with the training statistics
    first (standardise=True) so no feature dominates by its units.
    """
    a = torch.as_tensor(np.asarray(gen_feats, dtype=np.float64))
    b = torch.as_tensor(np.asarray(train_feats, dtype=np.float64))
    if b.shape[0] < 2:
        raise ValueError("need at least 2 training clips for the real-real reference distance")
    if standardise:
        mu, sd = b.mean(0), b.std(0)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        a, b = (a - mu) / sd, (b - mu) / sd
    best_d = torch.full((a.shape[0],), float("inf"), dtype=torch.float64)
    best_i = torch.zeros(a.shape[0], dtype=torch.long)
    for s in range(0, b.shape[0], chunk):
        d, i = _sq_dists(a, b[s:s + chunk]).min(dim=1)
        better = d < best_d
        best_d = torch.where(better, d, best_d)
        best_i = torch.where(better, i + s, best_i)
    rng = np.random.default_rng(seed)
    ref = rng.choice(b.shape[0], size=min(max_reference, b.shape[0]), replace=False)
    ref_t = torch.as_tensor(ref)
    ref_d = torch.full((len(ref),), float("inf"), dtype=torch.float64)
    for s in range(0, b.shape[0], chunk):
        d = _sq_dists(b[ref_t], b[s:s + chunk])
        own = (ref_t[:, None] == torch.arange(s, s + d.shape[1])[None, :])
        d = d.masked_fill(own, float("inf"))
        ref_d = torch.minimum(ref_d, d.min(dim=1).values)
    real_nn = float(torch.median(ref_d.sqrt()))
    dist = best_d.sqrt().numpy()
    return {
        "index": best_i.numpy(),
        "distance": dist,
        "ratio": dist / max(real_nn, 1e-12),
        "real_nn_distance": real_nn,
    }


def memorisation_report(gen, train_clips, manifest_clips: list[dict], sr: int, threshold: float = 0.8,
                        gen_feats=None, train_feats=None, feature_check: bool = True, batch: int = 8,
                        device: str = "cpu", min_overlap: float = 0.5, progress: bool = False) -> dict:
    """JSON-ready memorisation summary of generated clips against the training clips.

    gen (G, T), train_clips (N, T) (a memmap is fine), manifest_clips[i] = {"file", "start" (s)} for
    training clip i. Each generated clip gets nearest_index, corr, lag_s, source_file and
    source_time_s (where in the source file the generated clip's start lines up: start + lag/sr)
    and flagged (corr >= threshold). With feature_check, a nearest neighbour in ``clip_features``
    space is added per clip (feature_index, feature_distance, feature_ratio) plus the real-real
    reference distance; train_feats can be passed in to avoid recomputing them.
    """
    if len(manifest_clips) != train_clips.shape[0]:
        raise ValueError(f"manifest has {len(manifest_clips)} clips but the training array has {train_clips.shape[0]}")
    idx, corr, lag = max_normalized_xcorr(gen, train_clips, batch=batch, device=device,
                                          min_overlap=min_overlap, progress=progress)
    clips = []
    for k in range(len(idx)):
        m = manifest_clips[int(idx[k])]
        clips.append({
            "nearest_index": int(idx[k]),
            "corr": float(corr[k]),
            "lag_s": float(lag[k]) / sr,
            "source_file": str(m.get("file", "")),
            "source_time_s": float(m.get("start", 0.0)) + float(lag[k]) / sr,
            "flagged": bool(corr[k] >= threshold),
        })
    report = {
        "threshold": float(threshold),
        "min_overlap": float(min_overlap),
        "n_generated": len(clips),
        "n_train": int(train_clips.shape[0]),
        "n_flagged": int(sum(c["flagged"] for c in clips)),
        "max_corr": float(corr.max()) if len(corr) else 0.0,
        "mean_corr": float(corr.mean()) if len(corr) else 0.0,
        "clips": clips,
    }
    if feature_check:
        from .features import clip_features

        if gen_feats is None:
            gen_feats = clip_features(gen, sr)
        if train_feats is None:
            train_feats = np.concatenate([clip_features(np.asarray(train_clips[s:s + 1024], dtype=np.float32), sr)
                                          for s in range(0, train_clips.shape[0], 1024)])
        nn = nearest_feature_neighbour(gen_feats, train_feats)
        for k, c in enumerate(clips):
            c["feature_index"] = int(nn["index"][k])
            c["feature_distance"] = float(nn["distance"][k])
            c["feature_ratio"] = float(nn["ratio"][k])
        report["feature_real_nn_distance"] = nn["real_nn_distance"]
        report["feature_min_ratio"] = float(nn["ratio"].min()) if len(clips) else float("nan")
    return report


def copy_alarm(gen, train_clips, manifest_clips: list[dict], sr: int, threshold: float = 0.8,
               device: str | torch.device = "cpu") -> tuple[int, str | None]:
    """How many generated clips copy a training clip (corr >= threshold), and one sentence on them (None if 0).

    Cheap enough for the training loop to run on its fixed-latent samples, so that a run with a few
    files says when it starts replaying them instead of the user finding out by ear.
    """
    rep = memorisation_report(gen, train_clips, manifest_clips, sr, threshold=threshold, feature_check=False,
                              device=device)
    n = rep["n_flagged"]
    if n == 0:
        return 0, None
    k, c = max(enumerate(rep["clips"]), key=lambda kc: kc[1]["corr"])
    return n, (f"{n} of {len(rep['clips'])} samples copy training clips (sample {k} replays {c['source_file']} at "
               f"{c['source_time_s']:.2f} s, correlation {c['corr']:.2f} >= {threshold})")


def data_copying_z(gen_dist, held_dist) -> float:
    """Meehan et al. 2020's data-copying statistic (one cell): z-scored Mann-Whitney U of the generated
    clips' distances to the training set against held-back real clips' distances to it.

    Both are distances to the *nearest training clip* (e.g. 1 - max_normalized_xcorr). Held-back clips
    show how close new music of the same kind sits to the training set; a generator that generalises
    matches that (z ~ 0), one that copies sits closer (z << 0: -3 is already unlikely by chance), one
    that has not learnt the data sits farther (z >> 0). Unlike a distribution distance to held-back
    data, which a replay of real clips scores well on, this separates copying from generalising.
    """
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(gen_dist, dtype=np.float64), np.asarray(held_dist, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("need at least one generated and one held-back distance")
    u = mannwhitneyu(a, b, alternative="two-sided").statistic  # pairs with a > b, ties count 1/2
    m, n = len(a), len(b)
    return float((u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12))
