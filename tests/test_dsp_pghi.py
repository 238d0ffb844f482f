"""dsp.pghi: a phase from the STFT magnitude alone, checked against phases known another way."""
import math

import torch

from djenerator.dsp.pghi import TIE, peak_of_bin, pghi_phase

SR, N_FFT, HOP = 22050, 1024, 256
WINDOW = torch.hann_window(N_FFT)


def stft(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, N_FFT, HOP, window=WINDOW, center=True, return_complex=True)


def resynth(mag: torch.Tensor, phase: torch.Tensor, n: int) -> torch.Tensor:
    return torch.istft(torch.polar(mag, phase), N_FFT, HOP, window=WINDOW, center=True, length=n)


def convergence(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spectral convergence of y's STFT magnitude against x's (0 = the same magnitude)."""
    a, b = stft(x).abs(), stft(y).abs()
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(a))


def test_peak_of_bin_climbs_the_magnitude():
    mag = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0, 0.5])
    assert peak_of_bin(mag).tolist() == [1, 1, 3, 3, 3, 3]
    rows = torch.rand(40, 64)
    for row, peaks in zip(rows.tolist(), peak_of_bin(rows).tolist()):  # against climbing, one step at a time
        for k in range(64):
            j = k
            while True:
                if j + 1 < 64 and row[j + 1] > row[j] + TIE:
                    j += 1
                elif j > 0 and row[j - 1] > row[j] + TIE:
                    j -= 1
                else:
                    break
            assert peaks[k] == j
    # neighbours closer than TIE are level, so float rounding (the same magnitude decoded in chunks) cannot turn a
    # climb: a near-plateau and the same nudged by 1e-6 reach the same peaks
    flat = torch.tensor([1.0, 1.0 + 0.5 * TIE, 1.0 + 0.2 * TIE, 0.5, 2.0])
    assert peak_of_bin(flat).tolist() == peak_of_bin(flat + torch.tensor([0, -1e-6, 1e-6, 0, 0])).tolist() == [0, 1, 2, 4, 4]


def test_a_sine_between_bins_turns_at_its_own_frequency_in_every_bin_of_its_lobe():
    """A sine at bin 40.3: each hop its phase turns by 2 pi f hop / sr, in the peak bin and its neighbours, and
    neighbouring bins are half a turn apart (a window centred in its frame), as in the true STFT."""
    f = 40.3 * SR / N_FFT
    t = torch.arange(SR, dtype=torch.float64) / SR
    true = stft(torch.sin(2 * math.pi * f * t).float())
    phase = pghi_phase(true.abs()[None], N_FFT, HOP)[0]
    turn = torch.tensor(2 * math.pi * f * HOP / SR)
    mid = slice(8, -8)  # away from the clip's edges
    for k in (39, 40, 41):
        step = phase[k, 1:] - phase[k, :-1]
        assert float(torch.cos(step - turn)[mid].min()) > 0.999
    across = phase[41] - phase[40]
    true_across = true[41].angle() - true[40].angle()
    assert float(torch.cos(across - true_across)[mid].min()) > 0.99


def kicks() -> torch.Tensor:
    """Four kick drums a second: a sine falling from ~460 Hz to 60 Hz, decaying in ~0.07 s."""
    x, t = torch.zeros(SR), torch.arange(4000) / SR
    hit = torch.sin(2 * math.pi * (60 * t + 400 * (1 - torch.exp(-30 * t)) / 30)) * torch.exp(-15 * t)
    for s in range(0, SR - 4000, SR // 4):
        x[s:s + 4000] = hit
    return x


def test_resynthesis_keeps_the_magnitude_of_a_chord_and_of_kicks():
    """The phase from the magnitude, put back under it, gives a signal with nearly that magnitude, for a chord
    and for kick drums (whose bins must line up at each hit); a random phase smears both (convergence ~0.65)."""
    t = torch.arange(SR) / SR
    chord = sum(torch.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6, 880.0)) / 4
    for x, bound in ((chord, 0.2), (kicks(), 0.35)):
        mag = stft(x).abs()
        y = resynth(mag, pghi_phase(mag[None], N_FFT, HOP)[0], SR)
        noise = resynth(mag, torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)) * 2 * math.pi, SR)
        assert convergence(x, y) < bound < 0.6 * convergence(x, noise)


def test_the_hand_over_continues_a_stream_exactly():
    """Given frame s-1's phase of the whole pass, a chunk starting at s draws what the whole pass drew."""
    mag = stft(torch.randn(SR // 2)).abs()[None]
    whole = pghi_phase(mag, N_FFT, HOP)
    s = 10
    part = pghi_phase(mag[..., 4:], N_FFT, HOP, whole[..., s - 1], start=s - 4)
    torch.testing.assert_close(torch.polar(torch.ones_like(part), part)[..., s - 4:],
                               torch.polar(torch.ones_like(whole), whole)[..., s:], atol=1e-4, rtol=0)


def test_the_phase_does_not_depend_on_the_block_of_frames_worked_through(monkeypatch):
    """Blocks are a speed-up only: one frame at a time, 7 or 32 give the same phase (a hand-over inside a block
    included)."""
    from djenerator.dsp import pghi

    logmag = torch.log(stft(torch.randn(2, SR // 2)).abs() + 1e-7).transpose(1, 2).contiguous()
    hand = torch.rand(2, logmag.shape[-1]) * 2 * math.pi
    out = []
    for block in (1, 7, 32):
        monkeypatch.setattr(pghi, "BLOCK", block)
        out.append(torch.polar(torch.ones_like(logmag), pghi.pghi_frames(logmag, N_FFT, HOP, hand, start=11)))
    for other in out[1:]:
        torch.testing.assert_close(other, out[0], atol=1e-4, rtol=0)
