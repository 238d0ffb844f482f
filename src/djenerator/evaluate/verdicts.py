"""The words ``evaluate`` prints beside its numbers, as pure functions of those numbers.

No verdict reads one number alone: onset rate and the inter-onset-interval histogram say nothing when
the onsets are chance peaks of a stationary sound (white or pink noise has an onset rate and an IOI
histogram much like a riff's), so the rhythm verdict first asks whether the onsets stand out
(``rhythm.onset_contrast``), and the timbre verdict combines spectral flatness, high-frequency energy,
onset contrast and the shape of the average spectrum. Pitch has its own verdict (harmonic lines), since
a wash of noisy pulses can pass every one of those.
"""
from __future__ import annotations

import math

# onset contrast (95th percentile / median of the onset envelope) below this: no real onsets. Stationary
# white and pink noise read ~1.2; the built-in riffs ~6 on 1-s clips at 8 kHz, a click track 100s.
NOISE_CONTRAST = 2.0
# a timbre profile (metrics.shape_distance_db) this many times the real-vs-real value, and at least
# SHAPE_MIN_DB, is unlike the real clips' timbre (riffs vs riffs ~0.3 dB; white noise vs riffs ~6 dB)
SHAPE_FACTOR, SHAPE_MIN_DB = 3.0, 3.0


def _ok(*v: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)


def noisier(flat_g: float, flat_r: float, hf_g: float, hf_r: float) -> bool:
    """Flatter spectrum (Welch flatness > 2x real and > real + 0.1) or more energy up high than the real clips."""
    return (_ok(flat_g, flat_r) and flat_g > max(2 * flat_r, flat_r + 0.1)) or \
        (_ok(hf_g, hf_r) and hf_g > max(2 * hf_r, hf_r + 0.05))


def steady(contrast_g: float, contrast_r: float) -> bool:
    """True when the generated clips' onsets do not stand out (stationary sound) while the real ones do."""
    return _ok(contrast_g) and contrast_g < NOISE_CONTRAST and not (_ok(contrast_r) and contrast_r < NOISE_CONTRAST)


def noise_verdict(flat_g: float, flat_r: float, hf_g: float, hf_r: float, contrast_g: float = float("nan"),
                  contrast_r: float = float("nan"), shape_db: float = float("nan"),
                  shape_base_db: float = float("nan")) -> str:
    """'noise' (noisier spectrum and no onsets that stand out), 'noisier than real', 'timbre unlike real'
    (the average spectrum's shape is far from the real one's) or 'like real'."""
    if noisier(flat_g, flat_r, hf_g, hf_r):
        return "noise" if steady(contrast_g, contrast_r) else "noisier than real"
    if _ok(shape_db) and shape_db > max(SHAPE_FACTOR * (shape_base_db if _ok(shape_base_db) else 0.0), SHAPE_MIN_DB):
        return "timbre unlike real"
    return "like real"


DRONE_MARGIN = 0.25  # drone share (metrics.drone_share) above real's that reads as held tones


def pitch_verdict(tonal_g: float, tonal_r: float, drone_g: float = float("nan"), drone_r: float = float("nan")) -> str:
    """Harmonic lines (``metrics.tonal_share``) beside the real clips': 'a wash (few harmonic lines)' under half
    of real; 'held tones (a drone)' when the share of line energy held all clip long (``metrics.drone_share``) is
    ``DRONE_MARGIN`` above real's (without a drone share: lines over 1.5x real's); 'like real' within 25 %, else
    fewer or more than real."""
    if not _ok(tonal_g, tonal_r) or tonal_r <= 0:
        return "n/a"
    ratio = tonal_g / tonal_r
    if ratio < 0.5:
        return "a wash (few harmonic lines)"
    if drone_g > drone_r + DRONE_MARGIN if _ok(drone_g, drone_r) else ratio > 1.5:
        return "held tones (a drone)"
    if 0.75 <= ratio <= 1.25:
        return "like real"
    return "fewer harmonic lines than real" if ratio < 1 else "more harmonic lines than real"


def partials_verdict(own: float, others: float) -> str:
    """A reconstruction's fine structure against its own recording's (``metrics.fine_structure_match``): 'one
    texture for every clip' when it matches its own recording no better than another (within 0.1), 'partials in
    place' from 0.5, else 'partly in place'."""
    if not _ok(own, others):
        return "n/a"
    if own < others + 0.1:
        return "one texture for every clip"
    return "partials in place" if own >= 0.5 else "partly in place"


def rhythm_verdict(rate_g: float, rate_r: float, ioi: float, ioi_base: float, contrast_g: float = float("nan"),
                   contrast_r: float = float("nan"), timbre: str = "like real") -> str:
    """'noise' / 'no rhythm (steady sound)' when the onsets are chance peaks; 'rhythmic, timing unlike real'
    when onset rate (outside 0.5-2x) or IOI histogram (> 3x the real-vs-real distance) differ;
    'rhythmic, timbre unlike real' when the timing matches but ``timbre`` (``noise_verdict``) does not;
    else 'like real'."""
    if steady(contrast_g, contrast_r):
        return "noise" if timbre in ("noise", "noisier than real") else "no rhythm (steady sound)"
    far = (_ok(ioi, ioi_base) and ioi > 3 * max(ioi_base, 0.005)) or \
        (_ok(rate_g, rate_r) and rate_r > 0 and not 0.5 <= rate_g / rate_r <= 2.0)
    if far:
        return "rhythmic, timing unlike real"
    return "like real" if timbre == "like real" else "rhythmic, timbre unlike real"


def kid_text(value: float, se: float, scale: float = 1.0) -> str:
    """KID as the summary shows it (times ``scale``): '~0 (unbiased estimate, within its error)' when it is below
    zero or within one standard error of it (an unbiased estimate of 0 scatters around 0), else 'v ± se'."""
    if not _ok(value):
        return "n/a"
    if value < 0 or (_ok(se) and abs(value) <= se):
        return "~0 (unbiased estimate, within its error)"
    return f"{scale * value:.3g} ± {scale * se:.2g}" if _ok(se) else f"{scale * value:.3g}"


def tempo_text(median: float, estimable: int, n: int, clip_s: float, source: str = "") -> str:
    """The tempo column: the median, how many clips gave one, and in plain words why none did."""
    if estimable == 0:
        if n == 0:
            return "n/a"
        if clip_s < 2.0:
            return f"n/a: {clip_s:.3g}-s clips are too short (tempo needs 2 s, two beats at 60 BPM)"
        return f"n/a: no steady beat found in {n} clips"
    return f"{median:.3g} ({estimable}/{n} {source or 'estimable'})"


def structure_verdict(bar_g: float, bar_r: float, cycle_g: float, cycle_r: float) -> str:
    """Bar repetition of generated pieces beside real ones (``structure.bar_repetition``: ~0 for drones and
    unrelated bars, ~1 for a bar played again). Odd-time riffs come round on their own cycle, not the bar,
    so the riff cycle's similarity counts as well."""
    if not _ok(bar_g, bar_r, cycle_g, cycle_r):
        return "n/a"
    if max(bar_g - bar_r, cycle_g - cycle_r) > 0.25:
        return "repeats more than real (a loop)"
    if bar_g >= 0.75 * bar_r and cycle_g >= 0.75 * cycle_r:
        return "repeats like real"
    if cycle_g < 0.5 * cycle_r and bar_g < 0.5 * max(bar_r, 0.1):
        return "no riff that comes round"
    return "repeats less than real"
