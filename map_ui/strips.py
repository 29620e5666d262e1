"""ECG strip as SVG on the standard paper grid: 25 mm/s, 10 mm/mV (1 mm = 40 ms = 0.1 mV).

Coordinates are millimetres of paper (the SVG ``viewBox``), so the grid stays exact at any
zoom: thin lines every 1 mm, bold lines every 5 mm (200 ms, 0.5 mV), a 1 mV calibration
pulse at the start, beat marks on top.
"""

from __future__ import annotations

import math

from emon_core.contracts import EcgStrip

MM_PER_S = 25.0  # paper speed: 1 mm = 40 ms
MM_PER_MV = 10.0  # gain: 1 mm = 0.1 mV
CAL_MM = 5.0  # calibration pulse width (200 ms) plus margins
MAX_POINTS_PER_MM = 8


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def strip_svg(strip: EcgStrip, *, title: str = "ECG strip") -> str:
    """Render ``strip`` (microvolts at ``fs_hz``) as a standalone SVG element string.

    Example:
        >>> svg = strip_svg(EcgStrip(fs_hz=250, start_sample_index=0, start_time_ms=0, samples_uv=[0] * 250))
        >>> svg.startswith("<svg")
        True
    """
    samples = strip.samples_uv
    duration_s = len(samples) / strip.fs_hz if samples else 0.0
    lead_mm = CAL_MM + 3.0
    width_mm = max(25.0, math.ceil((lead_mm + duration_s * MM_PER_S + 2.0) / 5.0) * 5.0)
    mv = [s / 1000.0 for s in samples] or [0.0]
    hi = max(max(mv), 1.2)
    lo = min(min(mv), -0.8)
    top_mm = math.ceil(hi * MM_PER_MV / 5.0 + 0.4) * 5.0
    bottom_mm = math.ceil(-lo * MM_PER_MV / 5.0 + 0.4) * 5.0
    height_mm = top_mm + bottom_mm
    base_y = top_mm  # 0 mV line

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ecg-strip" role="img" aria-label="{title}" '
        f'viewBox="0 0 {_fmt(width_mm)} {_fmt(height_mm)}" preserveAspectRatio="xMinYMin meet" '
        f'data-mm-per-s="{MM_PER_S:g}" data-mm-per-mv="{MM_PER_MV:g}">',
        f'<rect x="0" y="0" width="{_fmt(width_mm)}" height="{_fmt(height_mm)}" fill="#fff7f7"/>',
    ]
    minor, major = [], []
    for i in range(int(width_mm) + 1):
        (major if i % 5 == 0 else minor).append(f"M{i} 0V{_fmt(height_mm)}")
    for j in range(int(height_mm) + 1):
        (major if j % 5 == 0 else minor).append(f"M0 {j}H{_fmt(width_mm)}")
    parts.append(f'<path class="grid-minor" d="{"".join(minor)}" stroke="#f3c4c4" stroke-width="0.08" fill="none"/>')
    parts.append(f'<path class="grid-major" d="{"".join(major)}" stroke="#e07a7a" stroke-width="0.22" fill="none"/>')
    # 1 mV calibration pulse, 200 ms wide
    cal_top = base_y - MM_PER_MV
    parts.append(
        f'<path class="calibration" d="M0.5 {_fmt(base_y)}H1.5V{_fmt(cal_top)}H{_fmt(1.5 + CAL_MM)}'
        f'V{_fmt(base_y)}H{_fmt(lead_mm)}" stroke="#111" stroke-width="0.3" fill="none"/>'
    )
    if samples:
        mm_per_sample = MM_PER_S / strip.fs_hz
        stride = max(1, int(math.floor((1.0 / mm_per_sample) / MAX_POINTS_PER_MM)))
        pts = []
        for i in range(0, len(samples), stride):
            chunk = mv[i:i + stride]
            x = lead_mm + i * mm_per_sample
            if stride == 1:
                pts.append(f"{_fmt(x)},{_fmt(base_y - chunk[0] * MM_PER_MV)}")
            else:  # keep peaks when decimating: min and max of each bucket
                a, b = min(chunk), max(chunk)
                first, second = (a, b) if chunk.index(a) < chunk.index(b) else (b, a)
                pts.append(f"{_fmt(x)},{_fmt(base_y - first * MM_PER_MV)}")
                pts.append(f"{_fmt(x + stride * mm_per_sample / 2)},{_fmt(base_y - second * MM_PER_MV)}")
        parts.append(f'<polyline class="trace" points="{" ".join(pts)}" stroke="#111" stroke-width="0.28" '
                     f'fill="none" stroke-linejoin="round" stroke-linecap="round"/>')
        for m in strip.marks:
            rel = m - strip.start_sample_index if m >= strip.start_sample_index else m
            if 0 <= rel < len(samples):
                x = lead_mm + rel * mm_per_sample
                parts.append(f'<path class="mark" d="M{_fmt(x - 0.9)} 0.6H{_fmt(x + 0.9)}L{_fmt(x)} 2.2Z" fill="#c0392b"/>')
    parts.append(
        f'<text x="{_fmt(width_mm - 1)}" y="{_fmt(height_mm - 1.2)}" text-anchor="end" font-size="2.6" '
        f'font-family="sans-serif" fill="#8a3b3b">25 mm/s · 10 mm/mV · {strip.fs_hz:g} Hz</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
