"""dsp.contrast: the spectral contrast a two-stage decoder adds, checked against numbers computed another way."""
import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter1d

from djenerator.dsp.contrast import INNER, MAX_AMOUNT, WIDTH, fit_amount, moving_average, parse_setting, sharpen


def _frames(seed: int = 0) -> torch.Tensor:
    """(2, 3, 513) log-magnitudes: harmonic lobes over a sloping noise floor."""
    rng = np.random.default_rng(seed)
    k = np.arange(513)
    floor = -2.0 - k / 100 + 0.5 * rng.standard_normal((2, 3, 513))
    lobes = sum(np.exp(-0.5 * ((k - 12.3 * h) / 1.2) ** 2) * 4.0 / h for h in range(1, 20))
    return torch.from_numpy(np.log(np.exp(floor) + lobes)).float()


def test_moving_average_is_scipys_uniform_filter_with_the_edges_repeated():
    x = _frames()
    for k in (INNER, WIDTH, 7):
        want = uniform_filter1d(x.numpy().astype(np.float64), k, axis=-1, mode="nearest")
        np.testing.assert_allclose(moving_average(x, k).numpy(), want, atol=1e-5)


def test_sharpen_scales_the_structure_between_a_lobe_and_the_envelope_only():
    """As the difference of two uniform filters (scipy) scaled, then each frame scaled back to its own power; 1
    leaves the frame as it is, a straight line over the bins (an envelope with nothing on it) keeps its shape away
    from the edges, and finer detail than INNER bins passes as it was."""
    x = _frames()
    assert sharpen(x, 1.0) is x
    u = lambda k: uniform_filter1d(x.numpy().astype(np.float64), k, axis=-1, mode="nearest")
    want = x.numpy() + 1.5 * (u(INNER) - u(WIDTH))
    power = lambda lm: np.log(np.exp(2 * lm).sum(-1, keepdims=True))
    want -= (power(want) - power(x.numpy().astype(np.float64))) / 2
    np.testing.assert_allclose(sharpen(x, 2.5).numpy(), want, atol=1e-4)
    np.testing.assert_allclose(power(sharpen(x, 3.0).numpy().astype(np.float64)), power(x.numpy()), atol=1e-4)
    line = torch.linspace(-3.0, 2.0, 513)[None]
    shape = (sharpen(line, 3.0) - line)[:, WIDTH:-WIDTH]
    torch.testing.assert_close(shape, shape[:, :1].expand_as(shape), atol=1e-5, rtol=0)
    detail = torch.zeros(1, 513)
    detail[0, 200] = 1.0  # a one-bin spike: a third of it reaches the 3-bin mean, a 31st the envelope
    out = sharpen(detail, 2.0)
    assert float(out[0, 200] - out[0, 100]) == pytest.approx(1.0 + (1 / 3 - 1 / 31), abs=1e-6)


def test_more_contrast_is_a_less_flat_frame():
    """Spectral flatness (geometric over arithmetic mean power) of tonal frames falls with the amount."""
    def flatness(lm):
        p = torch.exp(2 * lm.double())
        return float((torch.exp(torch.log(p).mean(-1)) / p.mean(-1)).mean())

    x = _frames(1)
    values = [flatness(sharpen(x, a)) for a in (1.0, 1.5, 2.0, 3.0)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_fit_amount_finds_where_the_ratio_crosses_the_target():
    calls = []

    def ratio(a):
        calls.append(a)
        return 2.0 / a

    assert fit_amount(ratio) == pytest.approx(2.0, abs=0.01)
    assert fit_amount(lambda a: 0.9 / a) == 1.0  # already as flat as the data: nothing added
    assert fit_amount(lambda a: 9.0 / a) == MAX_AMOUNT  # never there: the most it may add
    assert len(calls) == 10  # the two ends, then eight halvings


@pytest.mark.parametrize("text,want", [("none", 1.0), ("fit", None), ("2.5", 2.5), ("1", 1.0)])
def test_parse_setting_reads_the_three_kinds(text, want):
    assert parse_setting(text) == want


@pytest.mark.parametrize("text,match", [("sharp", "none"), ("0.5", "from 1 to 4"), ("5", "from 1 to 4")])
def test_parse_setting_names_a_bad_value(text, match):
    with pytest.raises(ValueError, match=match):
        parse_setting(text)
