"""Training set builder: WFDB records -> the gateway's own conditioner and beat features, labelled by AAMI class.

NumPy only (no TensorFlow): the same functions the gateway runs produce every example.
Each record contributes its beats twice: at the reference annotation positions and at the
positions the gateway's QRS detector found (matched to a reference beat within 150 ms,
labelled with its class), so the model sees the R-position jitter it meets in service.
Per-record results are cached as ``.npz`` (outside the repository).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.evaluation.aami import labels_of
from gateway.evaluation.evaluate import beats_for, run_chain
from gateway.evaluation.scoring import beat_annotations, load_record, match_beats
from gateway.signal.beats import BeatConfig
from gateway.signal.constants import MODEL_FS_HZ
from gateway.signal.filters import ConditionerConfig
from gateway.signal.resample import input_to_output_index

CACHE_VERSION = "beats-v1"


@dataclass(frozen=True)
class BeatSet:
    """Examples: windows (n, L, 2), rr (n, 11), labels (n,), record names (n,), source (n,) 0=reference 1=detected."""

    windows: npt.NDArray[np.float32]
    rr: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    records: npt.NDArray[np.str_]
    source: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, mask: npt.NDArray[np.bool_]) -> BeatSet:
        return BeatSet(self.windows[mask], self.rr[mask], self.labels[mask], self.records[mask], self.source[mask])


def default_cache_dir() -> Path:
    base = os.environ.get("EMON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "emon")
    key = hashlib.sha256(repr((CACHE_VERSION, BeatConfig(), ConditionerConfig())).encode()).hexdigest()[:10]
    return Path(base) / f"{CACHE_VERSION}-{key}"


def record_examples(directory: str | Path, name: str) -> dict[str, np.ndarray]:
    """All labelled examples of one record (reference and detected positions)."""
    x, fs, ann, sym = load_record(directory, name)
    ref, ref_sym = beat_annotations(ann, sym)
    ref360 = np.asarray(input_to_output_index(ref, fs, MODEL_FS_HZ), dtype=np.int64).reshape(-1)
    labels = labels_of(ref_sym)
    uniq, first = np.unique(ref360, return_index=True)
    chain = run_chain(x, fs)
    br = beats_for(chain, uniq)
    parts_w, parts_r, parts_y, parts_s = [br.windows], [br.rr], [labels[first]], [np.zeros(uniq.size, np.int8)]
    m = match_beats(uniq, chain.r_detected, MODEL_FS_HZ, 0.150, 0.0)
    if m.pairs.size:
        bd = beats_for(chain, chain.r_detected)
        parts_w.append(bd.windows[m.pairs[:, 1]])
        parts_r.append(bd.rr[m.pairs[:, 1]])
        parts_y.append(labels[first][m.pairs[:, 0]])
        parts_s.append(np.ones(m.pairs.shape[0], np.int8))
    return {
        "windows": np.concatenate(parts_w), "rr": np.concatenate(parts_r),
        "labels": np.concatenate(parts_y), "source": np.concatenate(parts_s),
    }


def build(directory: str | Path, records: list[str], cache_dir: Path | None = None, progress: bool = True) -> BeatSet:
    """Examples of ``records`` (cached per record)."""
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="features", unit="rec")
    ws, rs, ys, ns, ss = [], [], [], [], []
    for name in it:
        path = cache / f"{name}.npz"
        if path.exists():
            d = dict(np.load(path))
        else:
            d = record_examples(directory, name)
            np.savez(path, **d)
        ws.append(d["windows"])
        rs.append(d["rr"])
        ys.append(d["labels"])
        ss.append(d["source"])
        ns.append(np.full(d["labels"].size, name))
    return BeatSet(np.concatenate(ws), np.concatenate(rs), np.concatenate(ys), np.concatenate(ns), np.concatenate(ss))
