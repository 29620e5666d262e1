"""Rhythm events at the edge, pure logic: runs, pause/asystole, brady/tachycardia, ectopy, signal loss.

Everything works in device sample indices (``fs_hz`` is the device rate), so event ids
(``device:kind:onset_sample_index``) do not depend on frame boundaries or wall time and a
replay of the same stream yields the same events. No I/O, no clock: the caller feeds

* :meth:`RhythmTracker.on_detection` every detected R peak, in order (pauses, heart rate);
* :meth:`RhythmTracker.on_beat` every classified beat, in order (runs, frequent ectopy);
* :meth:`RhythmTracker.advance` how far the detector has looked without finding a beat
  (an open pause/asystole is raised while it is still going on);
* :meth:`RhythmTracker.signal` signal-loss sources going bad or good (lead-off flag,
  detector flat/saturated/gap state, a silent device).

Each returns :class:`EventUpdate` records: an event is sent when first confirmed
(``revision`` 0), again every ``run_update_beats`` beats while it grows (and once when a run
reaches ``run_confirm_beats``), and a final revision when it ends (only if it changed since
the last one).

Rules (thresholds in :class:`gateway.settings.RhythmSettings`):

* V run / S run: >= ``run_min_beats`` consecutive V (S) beats; rate from the run's RR
  intervals; ``detail`` says VT/SVT when the rate is >= ``vt_rate_bpm``. A V run at
  >= ``vt_rate_bpm`` one beat short of ``run_confirm_beats`` takes the next beat's
  provisional class, if that beat's previous RR is within :data:`PROVISIONAL_RR_TOLERANCE`
  of the run's mean RR
  (:meth:`RhythmTracker.on_provisional_beat`, the beat classified with its next RR assumed
  equal to its previous one) to send the ``run_confirm_beats`` revision one RR and one
  detector release earlier; the beat's own classification then confirms it (a revision
  without the "provisional" note) or takes it back (a final revision without that beat).
* pause: no R peak for >= ``pause_s``; asystole (a separate event at the same onset):
  >= ``asystole_s``. Not raised when the signal was lost during the gap.
* brady/tachycardia: heart rate as bedside monitors compute it, 60 / mean of the last
  ``rate_rr_count`` RR intervals (at least 4), below ``brady_bpm`` / above ``tachy_bpm``
  continuously for ``sustain_s``.
* frequent ectopy: more than ``ectopy_per_min`` V beats within the last 60 s, counting
  singles and couplets only (the beats of a V run are reported by the run).
* signal loss: any source bad for >= ``signal_loss_min_s`` (a silent device immediately).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from emon_core.contracts import BeatClass, EventKind
from gateway.settings import RhythmSettings

ECTOPY_WINDOW_S = 60.0
MIN_RATE_RR = 4
# a provisional beat counts only inside a regular run: its previous RR within this fraction of
# the run's mean RR (the next RR it is classified with is that previous RR)
PROVISIONAL_RR_TOLERANCE = 0.25


@dataclass(frozen=True)
class EventUpdate:
    """One revision of a rhythm event (device sample indices at the device rate)."""

    kind: EventKind
    onset_index: int
    end_index: int
    revision: int
    beat_count: int = 0
    rate_bpm: float | None = None
    detail: str = ""
    final: bool = False
    marks: tuple[int, ...] = ()


@dataclass
class _Open:
    """An event being tracked (maybe not yet confirmed/sent)."""

    kind: EventKind
    onset: int
    end: int
    beats: list[int] = field(default_factory=list)
    sent_revision: int = -1
    sent_state: tuple = ()
    detail: str = ""
    rate: float | None = None

    def update(self, final: bool = False) -> EventUpdate | None:
        state = (self.end, len(self.beats), self.detail, self.rate)
        if self.sent_revision >= 0 and state == self.sent_state:
            return None
        self.sent_revision += 1
        self.sent_state = state
        return EventUpdate(
            self.kind, self.onset, self.end, self.sent_revision, len(self.beats),
            None if self.rate is None else round(self.rate, 1), self.detail, final, tuple(self.beats[-200:]),
        )


def _open_to_dict(ev: _Open | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {"kind": ev.kind.value, "onset": ev.onset, "end": ev.end, "beats": list(ev.beats),
            "rev": ev.sent_revision, "sent": list(ev.sent_state), "detail": ev.detail, "rate": ev.rate}


def _open_from_dict(d: dict[str, Any] | None) -> _Open | None:
    if d is None:
        return None
    return _Open(EventKind(d["kind"]), int(d["onset"]), int(d["end"]), [int(b) for b in d["beats"]],
                 int(d["rev"]), tuple(d["sent"]), str(d["detail"]), None if d["rate"] is None else float(d["rate"]))


class RhythmTracker:
    """Rhythm state of one device. See the module docstring for the rules.

    Example:
        >>> t = RhythmTracker(360.0)
        >>> ups = [u for i in range(6) for u in t.on_beat(1000 + 120 * i, BeatClass.V)]
        >>> [(u.kind.value, u.beat_count) for u in ups]
        [('v_run', 3)]
    """

    def __init__(self, fs_hz: float, config: RhythmSettings | None = None) -> None:
        self.fs = float(fs_hz)
        self.cfg = config or RhythmSettings()
        self._last_det: int | None = None
        self._rr: deque[int] = deque(maxlen=self.cfg.rate_rr_count)
        self._gap_lost = False  # signal lost since the last detection
        self._blind_end = -1  # end of the last unobserved span: no pause from a beat before it
        self._pause: _Open | None = None
        self._asystole: _Open | None = None
        self._run: _Open | None = None
        self._run_cls: BeatClass | None = None
        self._provisional: int | None = None  # a provisional V beat appended to the run
        self._provisional_tried: int | None = None  # last run beat a provisional was asked after
        self._rate: dict[EventKind, _Open] = {}
        self._rate_since: dict[EventKind, int] = {}
        self._v_times: deque[int] = deque()  # V beats outside runs (singles, couplets)
        self._v_pending: list[int] = []  # V beats of the current V sequence
        self._ectopy: _Open | None = None
        self._loss_sources: dict[str, tuple[int, str]] = {}
        self._loss: _Open | None = None
        self._loss_confirmed = False

    # -- checkpoint --------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Everything the tracker carries between calls, as plain JSON-able values."""
        return {
            "last_det": self._last_det, "rr": list(self._rr), "gap_lost": self._gap_lost, "blind_end": self._blind_end,
            "pause": _open_to_dict(self._pause), "asystole": _open_to_dict(self._asystole),
            "run": _open_to_dict(self._run), "run_cls": None if self._run_cls is None else self._run_cls.value,
            "provisional": self._provisional, "provisional_tried": self._provisional_tried,
            "rate": {k.value: _open_to_dict(v) for k, v in self._rate.items()},
            "rate_since": {k.value: v for k, v in self._rate_since.items()},
            "v_times": list(self._v_times), "v_pending": list(self._v_pending),
            "ectopy": _open_to_dict(self._ectopy),
            "loss_sources": {k: [i, d] for k, (i, d) in self._loss_sources.items()},
            "loss": _open_to_dict(self._loss), "loss_confirmed": self._loss_confirmed,
        }

    def import_state(self, d: dict[str, Any]) -> None:
        """Continue from :meth:`export_state`'s output (same ``fs_hz`` and settings)."""
        self._last_det = None if d["last_det"] is None else int(d["last_det"])
        self._rr = deque((int(v) for v in d["rr"]), maxlen=self.cfg.rate_rr_count)
        self._gap_lost = bool(d["gap_lost"])
        self._blind_end = int(d.get("blind_end", -1))
        self._pause, self._asystole = _open_from_dict(d["pause"]), _open_from_dict(d["asystole"])
        self._run = _open_from_dict(d["run"])
        self._run_cls = None if d["run_cls"] is None else BeatClass(d["run_cls"])
        self._provisional = None if d.get("provisional") is None else int(d["provisional"])
        self._provisional_tried = None if d.get("provisional_tried") is None else int(d["provisional_tried"])
        self._rate = {EventKind(k): ev for k, v in d["rate"].items() if (ev := _open_from_dict(v)) is not None}
        self._rate_since = {EventKind(k): int(v) for k, v in d["rate_since"].items()}
        self._v_times = deque(int(v) for v in d["v_times"])
        self._v_pending = [int(v) for v in d["v_pending"]]
        self._ectopy = _open_from_dict(d["ectopy"])
        self._loss_sources = {k: (int(v[0]), str(v[1])) for k, v in d["loss_sources"].items()}
        self._loss = _open_from_dict(d["loss"])
        self._loss_confirmed = bool(d["loss_confirmed"])

    @property
    def last_detection(self) -> int | None:
        """Device sample index of the last R peak seen (None before the first)."""
        return self._last_det

    @property
    def has_open_event(self) -> bool:
        """A pause, asystole or a run of two beats or more is being tracked (losing it would lose an event)."""
        return self._pause is not None or self._asystole is not None or (
            self._run is not None and len(self._run.beats) >= 2)

    # -- helpers ---------------------------------------------------------------------------

    def _s(self, seconds: float) -> int:
        return int(round(seconds * self.fs))

    @property
    def heart_rate_bpm(self) -> float | None:
        """60 / mean of the last ``rate_rr_count`` RR intervals (None with fewer than 4)."""
        if len(self._rr) < MIN_RATE_RR:
            return None
        return 60.0 * self.fs * len(self._rr) / sum(self._rr)

    @property
    def signal_lost(self) -> bool:
        return bool(self._loss_sources)

    # -- R peaks: pauses and rate --------------------------------------------------------

    def on_detection(self, index: int) -> list[EventUpdate]:
        """A detected R peak at device sample ``index`` (strictly increasing)."""
        out: list[EventUpdate] = []
        if self._last_det is not None and index <= self._last_det:
            return out
        # nothing between the last peak and this one: a gap long enough is a pause even when
        # advance() never saw that far before this peak was reported (early release)
        out += self.advance(index)
        for ev_name in ("_pause", "_asystole"):
            ev: _Open | None = getattr(self, ev_name)
            if ev is not None:
                ev.end = index
                ev.detail = f"{(index - ev.onset) / self.fs:.1f} s without a beat"
                if ev.sent_revision >= 0:
                    self._emit(out, ev, final=True)
                setattr(self, ev_name, None)
        if self._last_det is not None and not self._gap_lost:
            self._rr.append(index - self._last_det)
        elif self._gap_lost:
            self._rr.clear()
        self._last_det = index
        self._gap_lost = bool(self._loss_sources) or index < self._blind_end
        self._check_rate(index, out)
        return out

    def advance(self, horizon: int) -> list[EventUpdate]:
        """The detector has seen everything before ``horizon`` (no R peak after the last one)."""
        out: list[EventUpdate] = []
        self._check_loss(horizon, out)
        if self._last_det is None or self._gap_lost or self._loss_sources or self._last_det < self._blind_end:
            return out
        gap = horizon - self._last_det
        for name, kind, limit in (("_pause", EventKind.PAUSE, self.cfg.pause_s),
                                  ("_asystole", EventKind.ASYSTOLE, self.cfg.asystole_s)):
            if gap >= self._s(limit):
                ev = getattr(self, name)
                if ev is None:
                    ev = _Open(kind, self._last_det, horizon)
                    ev.beats = [self._last_det]
                    ev.detail = f"no beat for >= {limit:g} s"
                    setattr(self, name, ev)
                    self._emit(out, ev)
        return out

    def _check_rate(self, index: int, out: list[EventUpdate]) -> None:
        hr = self.heart_rate_bpm
        for kind, bad in ((EventKind.BRADYCARDIA, hr is not None and hr < self.cfg.brady_bpm),
                          (EventKind.TACHYCARDIA, hr is not None and hr > self.cfg.tachy_bpm)):
            ev = self._rate.get(kind)
            if bad:
                since = self._rate_since.setdefault(kind, index)
                if ev is None and index - since >= self._s(self.cfg.sustain_s):
                    ev = self._rate[kind] = _Open(kind, since, index)
                if ev is not None:
                    ev.end = index
                    ev.beats.append(index)
                    ev.rate = hr if ev.rate is None else (
                        min(ev.rate, hr) if kind is EventKind.BRADYCARDIA else max(ev.rate, hr))  # type: ignore[type-var]
                    ev.detail = f"{'lowest' if kind is EventKind.BRADYCARDIA else 'highest'} rate over {self.cfg.rate_rr_count} RR"
                    if ev.sent_revision < 0 or len(ev.beats) % max(self.cfg.run_update_beats * 3, 1) == 0:
                        self._emit(out, ev)
            else:
                self._rate_since.pop(kind, None)
                if ev is not None:
                    self._emit(out, ev, final=True)
                    del self._rate[kind]

    # -- classified beats: runs and ectopy -------------------------------------------------

    @property
    def wants_provisional(self) -> bool:
        """True when a V run is one beat short of ``run_confirm_beats`` and the beat after it
        has not been provisionally classified yet (see :meth:`on_provisional_beat`)."""
        run = self._run
        return (
            self.cfg.run_confirm_provisional and run is not None and self._run_cls is BeatClass.V
            and self._provisional is None and len(run.beats) + 1 == self.cfg.run_confirm_beats
            and self.cfg.run_confirm_beats >= self.cfg.run_min_beats and self._provisional_tried != run.beats[-1]
            and run.rate is not None and run.rate >= self.cfg.vt_rate_bpm  # only a VT needs the speed
        )

    def on_provisional_beat(self, index: int, cls: BeatClass) -> list[EventUpdate]:
        """The beat after the run, classified before its next R peak is known (next RR taken as
        its previous RR). When :attr:`wants_provisional` and ``cls`` is V, the run is sent with
        this beat, ``detail`` noting it is provisional; :meth:`on_beat` of the same beat then
        confirms or removes it. Otherwise nothing happens (the beat waits for its own class), as
        when the run is slower than ``vt_rate_bpm`` or the beat's previous RR is not within
        :data:`PROVISIONAL_RR_TOLERANCE` of the run's mean RR (the assumed next RR would be a guess)."""
        out: list[EventUpdate] = []
        run = self._run
        if not self.wants_provisional or run is None or index <= run.beats[-1]:
            return out
        self._provisional_tried = run.beats[-1]
        mean_rr = (run.beats[-1] - run.beats[0]) / (len(run.beats) - 1)
        if cls is not BeatClass.V or abs(index - run.beats[-1] - mean_rr) > PROVISIONAL_RR_TOLERANCE * mean_rr:
            return out
        self._provisional = index
        self._grow_run(run, index, BeatClass.V)
        run.detail += f" (beat {len(run.beats)} provisional)"
        self._emit(out, run)
        return out

    def _drop_provisional(self) -> None:
        """Take the provisional beat out of the run before its own classification is applied."""
        run, p = self._run, self._provisional
        self._provisional = None
        if run is not None and p is not None and run.beats and run.beats[-1] == p:
            run.beats.pop()
            run.end = run.beats[-1]
            self._describe_run(run, self._run_cls)

    def _describe_run(self, run: _Open, run_cls: BeatClass | None) -> None:
        n = len(run.beats)
        if n >= 2:
            run.rate = 60.0 * self.fs * (n - 1) / (run.beats[-1] - run.beats[0])
            fast = run.rate >= self.cfg.vt_rate_bpm
            name = ("VT" if fast else "slow ventricular run") if run_cls is BeatClass.V else (
                "SVT" if fast else "slow supraventricular run")
            run.detail = f"{name}, {n} beats"

    def _grow_run(self, run: _Open, index: int, run_cls: BeatClass) -> None:
        run.beats.append(index)
        run.end = index
        self._describe_run(run, run_cls)

    def on_beat(self, index: int, cls: BeatClass) -> list[EventUpdate]:
        """A classified beat (in order)."""
        out: list[EventUpdate] = []
        if self._provisional is not None:
            self._drop_provisional()
        run_cls = cls if cls in (BeatClass.V, BeatClass.S) else None
        if self._run is not None and run_cls is not self._run_cls:
            self._close_run(out)
        if run_cls is not None:
            if self._run is None:
                kind = EventKind.V_RUN if run_cls is BeatClass.V else EventKind.S_RUN
                self._run, self._run_cls = _Open(kind, index, index), run_cls
            run = self._run
            self._grow_run(run, index, run_cls)
            n = len(run.beats)
            if n == self.cfg.run_min_beats or (n > self.cfg.run_min_beats and (
                n == self.cfg.run_confirm_beats or (n - self.cfg.run_min_beats) % self.cfg.run_update_beats == 0
            )):
                self._emit(out, run)
        if self._run is None or self._run_cls is not BeatClass.V:
            self._v_pending.clear()
        if cls is BeatClass.V:
            self._v_pending.append(index)
            if len(self._v_pending) < self.cfg.run_min_beats:
                self._v_times.append(index)
            elif len(self._v_pending) == self.cfg.run_min_beats:  # a run, not ectopy: take its beats back
                for i in self._v_pending[:-1]:
                    if i in self._v_times:
                        self._v_times.remove(i)
        window = self._s(ECTOPY_WINDOW_S)
        while self._v_times and self._v_times[0] <= index - window:
            self._v_times.popleft()
        self._check_ectopy(index, out)
        return out

    def _close_run(self, out: list[EventUpdate]) -> None:
        run = self._run
        if run is not None and len(run.beats) >= self.cfg.run_min_beats:
            self._emit(out, run, final=True)
        self._run, self._run_cls = None, None

    def _check_ectopy(self, index: int, out: list[EventUpdate]) -> None:
        count = len(self._v_times)
        ev = self._ectopy
        if count > self.cfg.ectopy_per_min:
            if ev is None:
                ev = self._ectopy = _Open(EventKind.FREQUENT_ECTOPY, self._v_times[0], index)
                ev.beats = list(self._v_times)
                ev.detail = f"{count} PVC in 60 s"
                self._emit(out, ev)
            else:
                for t in self._v_times:
                    if t > ev.beats[-1]:
                        ev.beats.append(t)
                ev.end = index
        elif ev is not None:
            ev.end = index
            ev.detail = f"{len(ev.beats)} PVC, ended"
            self._emit(out, ev, final=True)
            self._ectopy = None

    # -- restarts ----------------------------------------------------------------------------

    def unobserved(self, start: int, end: int) -> list[EventUpdate]:
        """Signal ``[start, end)`` was never seen (frames lost in a gateway restart).

        Nothing is claimed across it: an open pause/asystole or run ends at ``start`` (final
        revision if it was sent, with the gap in its detail), consecutive V beats and the
        rate's RR history restart after it, and the next R peak does not close a pause that
        began before it. It is not the patient's signal loss, so no signal_loss event.
        """
        out: list[EventUpdate] = []
        note = f"{(end - start) / self.fs:.1f} s not observed (gateway restart)"
        for name in ("_pause", "_asystole"):
            ev: _Open | None = getattr(self, name)
            if ev is not None and ev.sent_revision >= 0:
                ev.end = start
                ev.detail = f"{(start - ev.onset) / self.fs:.1f} s without a beat, then {note}"[:200]
                self._emit(out, ev, final=True)
            setattr(self, name, None)
        if self._run is not None and len(self._run.beats) >= self.cfg.run_min_beats:
            self._run.detail = f"{self._run.detail}; {note}"[:200]
        self._close_run(out)
        self._v_pending.clear()
        self._gap_lost = True
        self._blind_end = max(self._blind_end, end)
        return out

    # -- signal loss -----------------------------------------------------------------------

    def signal(self, source: str, index: int, lost: bool, detail: str = "", immediate: bool = False) -> list[EventUpdate]:
        """Loss ``source`` (``lead_off``, ``detector``, ``silent``) turned bad/good at ``index``."""
        out: list[EventUpdate] = []
        if lost:
            if source not in self._loss_sources:
                self._loss_sources[source] = (index, detail or source)
            self._gap_lost = True
            if self._loss is None:
                self._loss = _Open(EventKind.SIGNAL_LOSS, index, index)
                self._loss.detail = detail or source
                self._loss_confirmed = False
                for name in ("_pause", "_asystole"):  # a lost signal is not a pause
                    ev = getattr(self, name)
                    if ev is not None and ev.sent_revision >= 0:
                        ev.end = index
                        self._emit(out, ev, final=True)
                    setattr(self, name, None)
            if immediate:
                self._confirm_loss(index, out)
            else:
                self._check_loss(index, out)
        else:
            self._loss_sources.pop(source, None)
            if not self._loss_sources and self._loss is not None:
                self._loss.end = max(index, self._loss.end)
                if self._loss_confirmed:
                    self._emit(out, self._loss, final=True)
                self._loss = None
        return out

    def _check_loss(self, horizon: int, out: list[EventUpdate]) -> None:
        if self._loss is not None and not self._loss_confirmed and self._loss_sources:
            if horizon - self._loss.onset >= self._s(self.cfg.signal_loss_min_s):
                self._confirm_loss(horizon, out)

    def _confirm_loss(self, index: int, out: list[EventUpdate]) -> None:
        assert self._loss is not None
        if not self._loss_confirmed:
            self._loss_confirmed = True
            self._loss.end = max(index, self._loss.end)
            self._loss.detail = ", ".join(sorted({d for _, d in self._loss_sources.values()}))[:200]
            self._emit(out, self._loss)

    # -- end of stream -----------------------------------------------------------------------

    def close(self, index: int) -> list[EventUpdate]:
        """The device left: final revisions of every confirmed open event."""
        out: list[EventUpdate] = []
        if self._provisional is not None:
            self._drop_provisional()
        self._close_run(out)
        for ev in [self._pause, self._asystole, self._ectopy, *self._rate.values()]:
            if ev is not None and ev.sent_revision >= 0:
                self._emit(out, ev, final=True)
        self._pause = self._asystole = self._ectopy = None
        self._rate.clear()
        if self._loss is not None and self._loss_confirmed:
            self._loss.end = max(self._loss.end, index)
            self._loss.detail = f"{self._loss.detail}; stream closed"[:200]
            self._emit(out, self._loss, final=True)
        self._loss = None
        return out

    @staticmethod
    def _emit(out: list[EventUpdate], ev: _Open, final: bool = False) -> None:
        up = ev.update(final)
        if up is not None:
            out.append(up)
