"""ECG strip SVG: standard grid geometry (1 mm = 40 ms = 0.1 mV, bold every 5 mm)."""

from __future__ import annotations

import re

from emon_core.contracts import EcgStrip
from map_ui.strips import MM_PER_MV, MM_PER_S, strip_svg


def _strip(samples, fs=250.0, marks=()):
    return EcgStrip(fs_hz=fs, start_sample_index=1000, start_time_ms=0, samples_uv=list(samples), marks=list(marks))


def test_paper_speed_and_gain():
    assert MM_PER_S == 25.0 and MM_PER_MV == 10.0  # 1 mm = 40 ms, 1 mm = 0.1 mV


def test_trace_geometry_matches_grid():
    svg = strip_svg(_strip([0] * 250 + [1000] + [0] * 249))  # 2 s, a 1 mV spike at 1.0 s
    pts = re.search(r'class="trace" points="([^"]+)"', svg).group(1).split()
    xy = [tuple(map(float, p.split(","))) for p in pts]
    base = xy[0][1]
    spike = min(xy, key=lambda p: p[1])
    assert abs((base - spike[1]) - 10.0) < 1e-6  # 1 mV = 10 mm
    assert abs((spike[0] - xy[0][0]) - 25.0) < 1e-6  # 1 s = 25 mm
    w, h = map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    assert w % 5 == 0 and h % 5 == 0


def test_bold_lines_every_5_mm():
    svg = strip_svg(_strip([0] * 500))
    major = re.search(r'class="grid-major" d="([^"]+)"', svg).group(1)
    minor = re.search(r'class="grid-minor" d="([^"]+)"', svg).group(1)
    xs_major = {int(m) for m in re.findall(r"M(\d+) 0V", major)}
    xs_minor = {int(m) for m in re.findall(r"M(\d+) 0V", minor)}
    assert all(x % 5 == 0 for x in xs_major) and all(x % 5 for x in xs_minor)
    assert xs_major | xs_minor == set(range(max(xs_major | xs_minor) + 1))


def test_marks_relative_to_start_and_empty_strip():
    svg = strip_svg(_strip([0] * 500, marks=[1100, 99999]))
    assert svg.count('class="mark"') == 1
    assert "<svg" in strip_svg(_strip([]))


def test_long_strip_is_decimated_but_keeps_peaks():
    samples = [0] * 20000
    samples[10001] = 3000
    svg = strip_svg(_strip(samples, fs=1000.0))
    pts = re.search(r'class="trace" points="([^"]+)"', svg).group(1).split()
    assert len(pts) < 20000
    ys = [float(p.split(",")[1]) for p in pts]
    assert abs((max(ys) - min(ys)) - 30.0) < 1e-6
