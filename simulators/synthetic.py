"""Deterministic synthetic ECG (seeded numpy): Gaussian P-QRS-T beats, HRV, scripted events.

Each beat is a sum of Gaussian waves (in the spirit of McSharry's ECGSYN): a narrow QRS
with P and T waves for sinus (N) and supraventricular premature (S) beats, a wide QRS
with a discordant T wave and no P for ventricular (V) beats. The beat schedule is built
lazily, so a source is endless and costs memory only for the beats it has scheduled;
any window of samples can be rendered on demand and is identical however it is chunked.

Example:
    >>> ecg = generate(60.0, SyntheticConfig(fs_hz=250, seed=7), parse_scenario("vt@20:k=8"))
    >>> ecg.classes.count("V")
    8
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from emon_core.contracts import MAX_FS_HZ, MIN_FS_HZ, EventKind
from emon_core.errors import ConfigError
from simulators.scenario import Scenario, Scripted
from simulators.source import Chunk, TruthEvent

# (centre s relative to R, width s, amplitude mV); T centre is scaled by sqrt(RR).
_WAVES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "N": ((-0.20, 0.025, 0.12), (-0.03, 0.010, -0.12), (0.0, 0.011, 1.0), (0.03, 0.010, -0.25), (0.28, 0.060, 0.30)),
    "S": ((-0.15, 0.020, -0.08), (-0.03, 0.010, -0.12), (0.0, 0.011, 1.0), (0.03, 0.010, -0.25), (0.28, 0.060, 0.25)),
    "V": ((-0.04, 0.020, -0.20), (0.0, 0.032, 1.30), (0.075, 0.035, -0.55), (0.34, 0.070, -0.45)),
}
_T_WAVE = {"N": 4, "S": 4, "V": 3}
_BEFORE_S, _AFTER_S = 0.35, 0.75  # support of a beat around its R peak
_TEMPLATES: dict[tuple[float, str, float], npt.NDArray[np.float64]] = {}  # shared beat shapes
_NOISE_LEN = 65_521  # prime: a shared table of unit white noise, ~3 min at 360 Hz
_NOISE = np.random.default_rng(20_240_601).standard_normal(_NOISE_LEN)
_WANDER_HZ = (0.22, 0.05)  # baseline wander components (breathing, slow drift); the second at half amplitude


@functools.lru_cache(maxsize=64)
def _rotation(fs_hz: float, freq_hz: float, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """cos and sin of 2 pi f k / fs for k < n, shared by all patients of that rate and frame length."""
    a = 2 * np.pi * freq_hz * np.arange(n) / fs_hz
    return np.cos(a), np.sin(a)


@dataclass(frozen=True)
class SyntheticConfig:
    """Patient and device parameters. Amplitudes in mV, times in s, rates in bpm."""

    fs_hz: float = 360.0
    hr_bpm: float = 72.0
    hrv_sd_s: float = 0.02  # beat-to-beat RR jitter
    rsa_fraction: float = 0.04  # respiratory sinus arrhythmia, fraction of RR
    noise_mv: float = 0.01
    wander_mv: float = 0.06
    gain_adu_per_mv: float = 200.0
    baseline_adu: float = 1024.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not MIN_FS_HZ <= self.fs_hz <= MAX_FS_HZ:
            raise ConfigError(f"synthetic fs_hz must be {MIN_FS_HZ:g}..{MAX_FS_HZ:g} Hz, got {self.fs_hz}")
        if not 20.0 <= self.hr_bpm <= 250.0:
            raise ConfigError(f"synthetic hr_bpm must be 20..250, got {self.hr_bpm}")


class SyntheticSource:
    """An endless synthetic patient implementing :class:`simulators.source.EcgSource`."""

    def __init__(self, config: SyntheticConfig | None = None, scenario: Scenario | None = None) -> None:
        self.config = cfg = config or SyntheticConfig()
        self.fs_hz = cfg.fs_hz
        self.gain_adu_per_mv = cfg.gain_adu_per_mv
        self.baseline_adu = cfg.baseline_adu
        self._scenario = sorted(scenario or [], key=lambda e: e.at_s)
        self._rng = np.random.default_rng([cfg.seed, 0])
        self._scale = float(self._rng.uniform(0.8, 1.4))
        self._phase = self._rng.uniform(0, 2 * math.pi, size=3)
        self._noise_offset = [int(x) for x in self._rng.integers(0, _NOISE_LEN, size=2)]
        # beat schedule
        self._t: list[float] = []  # R time, s
        self._idx: list[int] = []  # R sample index
        self._cls: list[str] = []
        self._rr: list[float] = []  # preceding RR, s
        self._pending = [e for e in self._scenario if e.kind in ("vt", "svt", "pause")]
        self._events: list[TruthEvent] = []
        self._rate_events = [e for e in self._scenario if e.kind in ("brady", "tachy")]
        self._intervals = {
            kind: [(self._sample(e.at_s), self._sample(e.end_s), e) for e in self._scenario if e.kind == kind]
            for kind in ("noise", "leadoff", "silent")
        }
        for start, end, _ in self._intervals["leadoff"] + self._intervals["silent"]:
            self._events.append(TruthEvent(EventKind.SIGNAL_LOSS, start, end))
        self._add_beat(0.3 + float(self._rng.uniform(0, 0.5)), "N", 60.0 / cfg.hr_bpm)

    # --- schedule ----------------------------------------------------------
    def _sample(self, t_s: float) -> int:
        return int(round(t_s * self.fs_hz))

    def _add_beat(self, t: float, cls: str, rr: float) -> None:
        self._t.append(t)
        self._idx.append(self._sample(t))
        self._cls.append(cls)
        self._rr.append(rr)

    def _sinus_rr(self, t: float) -> float:
        cfg = self.config
        hr = cfg.hr_bpm
        for e in self._rate_events:
            if e.at_s <= t < e.end_s:
                hr = e["rate"]
        rr = 60.0 / hr
        rr *= 1.0 + cfg.rsa_fraction * math.sin(2 * math.pi * 0.25 * t + self._phase[0])
        rr *= 1.0 + 0.5 * cfg.rsa_fraction * math.sin(2 * math.pi * 0.1 * t + self._phase[1])
        rr += float(self._rng.normal(0.0, cfg.hrv_sd_s))
        return max(rr, 0.25)

    def _extend(self, until_s: float) -> None:
        while self._t[-1] < until_s:
            t = self._t[-1]
            rr = self._sinus_rr(t)
            nxt = self._pending[0] if self._pending else None
            if nxt is not None and t + rr >= nxt.at_s:
                self._pending.pop(0)
                self._scripted(nxt, t, rr)
            else:
                self._add_beat(t + rr, "N", rr)
            self._close_rate_events()

    def _scripted(self, e: Scripted, t: float, rr: float) -> None:
        if e.kind == "pause":
            self._add_beat(t + rr, "N", rr)
            first = len(self._idx) - 1
            self._add_beat(self._t[-1] + e["s"], "N", e["s"])
            self._events.append(
                TruthEvent(EventKind.PAUSE, self._idx[first], self._idx[-1], detail=f"{e['s']:g} s")
            )
            return
        cls = "V" if e.kind == "vt" else "S"
        step = 60.0 / e["rate"]
        k = int(e["k"])
        t0 = max(e.at_s, t + min(step, 0.7 * rr))
        first = len(self._idx)
        for i in range(k):
            self._add_beat(t0 + i * step, cls, t0 - t if i == 0 else step)
        if k >= 3:
            kind = EventKind.V_RUN if cls == "V" else EventKind.S_RUN
            self._events.append(
                TruthEvent(kind, self._idx[first], self._idx[-1] + 1, beat_count=k, rate_bpm=e["rate"])
            )
        pause = 1.25 * rr if cls == "V" else rr  # compensatory pause after ventricular beats
        self._add_beat(self._t[-1] + pause, "N", pause)

    def _close_rate_events(self) -> None:
        while self._rate_events and self._t[-1] >= self._rate_events[0].end_s:
            e = self._rate_events.pop(0)
            lo = bisect.bisect_left(self._t, e.at_s)
            hi = bisect.bisect_left(self._t, e.end_s)
            if hi - lo >= 2:
                kind = EventKind.BRADYCARDIA if e.kind == "brady" else EventKind.TACHYCARDIA
                self._events.append(
                    TruthEvent(kind, self._idx[lo], self._idx[hi - 1] + 1, beat_count=hi - lo, rate_bpm=e["rate"])
                )

    # --- EcgSource ---------------------------------------------------------
    def _in(self, kind: str, start: int, stop: int) -> list[tuple[int, int]]:
        return [(max(a, start), min(b, stop)) for a, b, _ in self._intervals[kind] if a < stop and b > start]

    def read(self, start: int, n: int) -> Chunk:
        """Render samples ``start .. start+n-1`` in ADC units (rounded to integers)."""
        fs = self.fs_hz
        stop = start + n
        self._extend((stop / fs) + _BEFORE_S + 1.0)
        mv = self._beats_mv(start, n) + self._wander_mv(start, n) + self._noise_mv(start, n)
        adu = np.rint(self.baseline_adu + self.gain_adu_per_mv * mv)
        off = self._in("leadoff", start, stop)
        for a, b in off:
            adu[a - start : b - start] = self.baseline_adu
        return Chunk(start, adu, lead_off=bool(off))

    def _beat_wave(self, b: int) -> tuple[int, npt.NDArray[np.float64]]:
        """Beat ``b`` over its support: (first sample index, unscaled mV template).

        Templates depend only on (fs, class, RR rounded to 10 ms) and are shared by all
        patients, so rendering a frame is slicing and adding, not evaluating Gaussians.
        """
        cls, r = self._cls[b], self._idx[b]
        rr = round(min(max(self._rr[b], 0.3), 1.5), 2)
        key = (self.fs_hz, cls, rr)
        wave = _TEMPLATES.get(key)
        if wave is None:
            fs = self.fs_hz
            t = np.arange(-int(_BEFORE_S * fs), int(_AFTER_S * fs) + 1) / fs
            wave = np.zeros(len(t))
            for w, (mu, sigma, amp) in enumerate(_WAVES[cls]):
                if w == _T_WAVE[cls]:
                    mu *= math.sqrt(rr)
                d = (t - mu) / sigma
                wave += amp * np.exp(-0.5 * d * d)
            _TEMPLATES[key] = wave
        return r - int(_BEFORE_S * self.fs_hz), wave

    def _beats_mv(self, start: int, n: int) -> npt.NDArray[np.float64]:
        fs = self.fs_hz
        out = np.zeros(n)
        lo = bisect.bisect_left(self._idx, start - int(_AFTER_S * fs))
        hi = bisect.bisect_right(self._idx, start + n + int(_BEFORE_S * fs))
        for b in range(lo, hi):
            first, wave = self._beat_wave(b)
            a, z = max(first, start), min(first + len(wave), start + n)
            if a < z:
                out[a - start : z - start] += wave[a - first : z - first]
        return out * self._scale

    def _wander_mv(self, start: int, n: int) -> npt.NDArray[np.float64]:
        # sin(theta0 + a_k) = sin(theta0) cos(a_k) + cos(theta0) sin(a_k): two shared tables and
        # two scalars per component instead of evaluating sin on every sample (1/5 of the cost)
        out = np.zeros(n)
        for amp, freq, phase in ((1.0, _WANDER_HZ[0], self._phase[2]), (0.5, _WANDER_HZ[1], 0.0)):
            cos_k, sin_k = _rotation(self.fs_hz, freq, n)
            theta0 = 2 * math.pi * freq * start / self.fs_hz + phase
            out += (amp * math.sin(theta0)) * cos_k
            out += (amp * math.cos(theta0)) * sin_k
        out *= self.config.wander_mv
        return out

    def _white(self, stream: int, start: int, n: int) -> npt.NDArray[np.float64]:
        """Unit white noise at device samples ``start..start+n-1`` (a per-patient window onto a
        shared seeded table, so it is deterministic and does not depend on chunking)."""
        pos = (self._noise_offset[stream] + start) % _NOISE_LEN
        if pos + n <= _NOISE_LEN:
            return _NOISE[pos : pos + n]
        return _NOISE[(pos + np.arange(n)) % _NOISE_LEN]  # wraps, as often as a long read needs

    def _noise_mv(self, start: int, n: int) -> npt.NDArray[np.float64]:
        out = self.config.noise_mv * self._white(0, start, n)
        bursts = self._in("noise", start, start + n)
        if bursts:
            extra = self._white(1, start, n)
            for a, b in bursts:
                level = next(e["mv"] for x, y, e in self._intervals["noise"] if x <= a < y)
                out[a - start : b - start] += level * extra[a - start : b - start]
        return out

    def silent(self, start: int, n: int) -> bool:
        return bool(self._in("silent", start, start + n))

    def beats(self, start: int, stop: int) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Truth beats in ``[start, stop)``; beats hidden by lead-off are not observable."""
        self._extend(stop / self.fs_hz + 2.0)
        lo = bisect.bisect_left(self._idx, start)
        hi = bisect.bisect_left(self._idx, stop)
        off = self._in("leadoff", start, stop)
        keep = [b for b in range(lo, hi) if not any(a <= self._idx[b] < e for a, e in off)]
        return np.asarray([self._idx[b] for b in keep], dtype=np.int64), [self._cls[b] for b in keep]

    def events(self, start: int, stop: int) -> list[TruthEvent]:
        # a rate event is known once the schedule has passed its end: schedule that far
        # as soon as its onset may fall into the window
        need = stop / self.fs_hz
        for e in self._scenario:
            if e.kind in ("brady", "tachy") and e.at_s <= need + 2.0:
                need = max(need, e.end_s)
        self._extend(need + 2.0)
        return sorted(
            (e for e in self._events if start <= e.onset_index < stop), key=lambda e: e.onset_index
        )


@dataclass(frozen=True)
class SyntheticEcg:
    """A finite synthetic recording with its ground truth (see :func:`generate`)."""

    fs_hz: float
    samples: npt.NDArray[np.float64]  # ADC units
    lead_off: npt.NDArray[np.bool_]  # per sample
    beat_indices: npt.NDArray[np.int64]
    classes: list[str]
    events: list[TruthEvent]
    silent: npt.NDArray[np.bool_]  # per sample: the device sends nothing
    gain_adu_per_mv: float
    baseline_adu: float


def generate(duration_s: float, config: SyntheticConfig | None = None, scenario: Scenario | None = None) -> SyntheticEcg:
    """Render ``duration_s`` seconds of a synthetic patient with its ground truth in one call."""
    src = SyntheticSource(config, scenario)
    n = int(round(duration_s * src.fs_hz))
    if n <= 0:
        raise ConfigError(f"duration must be > 0 s, got {duration_s}")
    chunk = src.read(0, n)
    lead_off = np.zeros(n, dtype=bool)
    for a, b in src._in("leadoff", 0, n):
        lead_off[a:b] = True
    silent = np.zeros(n, dtype=bool)
    for a, b in src._in("silent", 0, n):
        silent[a:b] = True
    idx, cls = src.beats(0, n)
    return SyntheticEcg(
        src.fs_hz, chunk.samples, lead_off, idx, cls, src.events(0, n), silent,
        src.gain_adu_per_mv, src.baseline_adu,
    )
