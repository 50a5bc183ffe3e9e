"""The line benchmark: false alarms per 100 m, defect recall, localisation and grades on
simulated rolls, from maps whose truth is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fabricad.evaluation.line import (
    STRATEGIES,
    Frame,
    LineSettings,
    run_line_benchmark,
    truth_defects,
)
from fabricad.inference.operating_point import (
    OperatingPoint,
    per_frame_target,
    teach_zones,
)

H, W = 64, 256


def frame(k: int, defect: tuple[int, int, int, int] | None = None, speck: bool = False) -> Frame:
    rng = np.random.default_rng(k)
    amap = rng.uniform(0.0, 0.3, (H, W)).astype(np.float32)
    mask = np.zeros((H, W), bool)
    if speck:  # a one-pixel blip above any threshold: what the size rule is for
        amap[5, 7 + k] = 0.6
    if defect is not None:
        x, y, w, h = defect
        amap[y:y + h, x:x + w] = 0.9
        mask[y:y + h, x:x + w] = True
    return Frame(f"scan{k}", amap, truth_defects(mask, 2), defect is None)


def settings(**kw) -> LineSettings:
    return LineSettings(**{"mm_per_px": 1.0, "rolls": 6, "roll_length_m": 3.0, "teach_in_frames": 1, "zones": 4,
                           "min_area_mm2": 4, "min_length_mm": 2, **kw})


def test_truth_defects_merge_parts_within_the_tolerance():
    mask = np.zeros((40, 40), bool)
    mask[5:8, 5:8] = mask[5:8, 10:12] = True  # 2 px apart: one defect
    mask[30:35, 30:35] = True
    boxes = sorted(d.box for d in truth_defects(mask, 2))
    assert boxes == [(5, 5, 7, 3), (30, 30, 5, 5)]


def test_size_rule_removes_speck_alarms_and_keeps_every_defect():
    normals = [frame(k, speck=k > 0) for k in range(4)]  # frame 0 teaches: clean
    defects = [frame(10 + k, defect=(20 + 30 * k, 10, 12, 6)) for k in range(4)]
    result = run_line_benchmark(normals + defects, calibrated_threshold=0.5, settings=settings())
    plain, sized = result["strategies"]["calibrated threshold"], result["strategies"]["teach-in + size rule"]
    # every good frame after the teach-in carries a speck: one false alarm per 64 mm frame at most
    assert 0 < plain["false_alarms_per_100_m"] <= 100 / 0.064 + 1e-6
    assert sized["false_alarms_per_100_m"] == 0
    assert plain["defect_recall"] == sized["defect_recall"] == 1.0
    assert sized["localisation_mm_median"] == pytest.approx(0.0, abs=1.0)
    assert sized["grade_agreement"] == 1.0 and sized["points_error_mean"] == 0
    assert plain["points_error_mean"] > 0  # the specks were graded as defects
    json.dumps(result)  # what metrics.json stores


def test_the_ceiling_is_the_recall_with_no_false_alarm_on_the_good_scans():
    """Defects of two strengths, good scans whose brightest pixel lies between them: the ceiling
    finds the strong ones only and raises nothing on good fabric."""
    normals = [frame(k) for k in range(3)]
    normals[1].anomaly_map[30, 100] = 0.6
    strong = [frame(10 + k, defect=(40, 20, 30, 30)) for k in range(3)]
    faint = [frame(20 + k, defect=(150, 20, 30, 30)) for k in range(3)]
    for f in faint:
        f.anomaly_map[f.anomaly_map == 0.9] = 0.5
    ceiling = run_line_benchmark(normals + strong + faint, 0.1, settings(rolls=10))["strategies"][
        "ceiling: just above every good scan"]
    assert ceiling["false_alarms_per_100_m"] == 0
    assert 0 < ceiling["defect_recall"] < 1


def test_the_strict_ceiling_counts_the_healthy_parts_of_defective_scans_too():
    """A blip on a defective scan away from its defect, above every good scan and above the faint
    defects: the good-scan ceiling alarms on it and finds every defect; the strict ceiling raises
    no alarm anywhere and finds the strong defects only."""
    normals = [frame(k) for k in range(3)]
    strong = [frame(10 + k, defect=(40, 20, 30, 30)) for k in range(3)]
    faint = [frame(20 + k, defect=(150, 20, 30, 30)) for k in range(3)]
    for f in faint:
        f.anomaly_map[f.anomaly_map == 0.9] = 0.5
    faint[0].anomaly_map[50, 220:226] = 0.7  # far from its defect
    strategies = run_line_benchmark(normals + strong + faint, 0.1, settings(rolls=10))["strategies"]
    loose, strict = strategies["ceiling: just above every good scan"], strategies["ceiling: no false alarm anywhere"]
    assert loose["false_alarms_per_100_m"] > 0 and loose["defect_recall"] == 1.0
    assert strict["false_alarms_per_100_m"] == 0
    assert 0 < strict["defect_recall"] < 1


def test_the_selvedge_band_drops_alarms_at_the_fabric_edge_and_keeps_defects_inside():
    """Defective scans whose selvedge (just inside the bed) runs high: the teach-in alarms there
    on every such scan; with the band it raises none and still finds every defect."""
    background = np.zeros(W, bool)
    background[:20] = True
    normals = [frame(k) for k in range(3)]
    defects = [frame(10 + k, defect=(120, 20, 20, 10)) for k in range(4)]
    for f in normals + defects:
        f.anomaly_map[:, :20] = 0.0
        f.background = background
    for f in defects:
        f.anomaly_map[:, 22:30] = 0.95  # the selvedge of these scans, above their defects
    strategies = run_line_benchmark(normals + defects, 0.5, settings(rolls=10, selvedge_mm=12))["strategies"]
    plain, band = strategies["teach-in threshold"], strategies["teach-in + selvedge band"]
    assert plain["false_alarms_per_100_m"] > 0 and band["false_alarms_per_100_m"] == 0
    assert plain["defect_recall"] == band["defect_recall"] == 1.0
    assert plain["false_alarm_share_at_edges"] == 1.0 and band["false_alarm_share_at_edges"] is None
    strict = strategies["ceiling: no false alarm anywhere, selvedge band"]
    assert strict["defect_recall"] == 1.0 and strategies["ceiling: no false alarm anywhere"]["defect_recall"] == 0


def test_a_selvedge_threshold_finds_defects_in_the_band_that_the_band_leaves_out():
    """Every scan's selvedge runs at 0.5, above the faint defects in the middle (0.45); one
    defect lies in the selvedge (0.95). Taught with the selvedge, the threshold is above the
    faint defects; the band's teach-in leaves the selvedge out and finds them, but not the
    defect in the band; the band judged by a threshold of its own finds all four and raises no
    alarm on the selvedge's own weave."""
    background = np.zeros(W, bool)
    background[:20] = True
    normals = [frame(k) for k in range(3)]
    defects = [frame(10 + k, defect=(120, 20, 20, 10)) for k in range(3)] + [frame(13, defect=(23, 20, 5, 10))]
    for f in normals + defects:
        f.anomaly_map[:, :20] = 0.0
        f.background = background
        f.anomaly_map[:, 22:30] = np.maximum(f.anomaly_map[:, 22:30], 0.5)  # the selvedge's weave
    for f in defects[:3]:
        f.anomaly_map[f.anomaly_map == 0.9] = 0.45
    defects[3].anomaly_map[20:30, 23:28] = 0.95
    taught = [s for s in STRATEGIES if s.threshold == "teach-in" and not s.zones and not s.sizes]
    strategies = run_line_benchmark(normals + defects, 0.2, settings(rolls=10, selvedge_mm=12), taught)["strategies"]
    plain, band = strategies["teach-in threshold"], strategies["teach-in + selvedge band"]
    judged = strategies["teach-in + selvedge threshold"]
    assert 0 < plain["defect_recall"] < band["defect_recall"] < 1  # the band's teach-in finds the faint ones
    assert judged["defect_recall"] == 1.0
    assert plain["false_alarms_per_100_m"] == band["false_alarms_per_100_m"] == judged["false_alarms_per_100_m"] == 0


def test_a_threshold_above_the_defects_finds_none_and_grades_wrong():
    normals = [frame(k) for k in range(3)]
    defects = [frame(10 + k, defect=(40, 20, 30, 30)) for k in range(6)]
    result = run_line_benchmark(normals + defects, calibrated_threshold=0.95, settings=settings(rolls=10))
    calibrated = result["strategies"]["calibrated threshold"]
    assert calibrated["defect_recall"] == 0 and calibrated["false_alarms_per_100_m"] == 0
    failing = result["rolls"] - result["rolls_passing_truth"]
    assert failing > 0 and calibrated["grade_agreement"] == pytest.approx(result["rolls_passing_truth"] / result["rolls"])


def test_rolls_need_good_scans_beyond_the_teach_in():
    with pytest.raises(ValueError, match="normal test scans"):
        run_line_benchmark([frame(0), frame(1, defect=(0, 0, 5, 5))], 0.5, settings())


def test_the_selvedge_band_lies_on_the_fabric_side_of_each_edge():
    background = np.zeros(40, bool)
    background[:10] = background[35:] = True
    band = OperatingPoint(mm_per_px=0.5, selvedge_mm=2).selvedge_columns(background)  # 4 px
    assert np.flatnonzero(band).tolist() == [10, 11, 12, 13, 31, 32, 33, 34]
    assert not OperatingPoint(selvedge_mm=0).selvedge_columns(background).any()
    assert not OperatingPoint(selvedge_mm=5).selvedge_columns(np.zeros(40, bool)).any()  # no edge in view


def test_zone_teach_in_and_per_frame_target():
    edge = np.zeros((H, W), np.float32)
    edge[:, :W // 4] = 0.8  # a bright selvedge band
    maps = [edge + k * 0.01 for k in range(5)]
    zones = teach_zones(maps, 4, 0.01)
    assert zones[0] >= 0.8 and max(zones[1:]) < 0.1
    assert per_frame_target(2, 0.064) == pytest.approx(0.00128)
