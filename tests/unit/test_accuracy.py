"""The accuracy gate's arithmetic: detections matched by class at IoU 0.5, F1, score differences."""

from __future__ import annotations

import pytest

from inference_service.agreement import Agreement, iou


def det(class_id, score, box):
    return {"class_id": class_id, "score": score, "box": box}


def test_iou():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_matching_is_by_class_at_the_iou_and_one_to_one():
    agreement = Agreement()
    reference = [det(0, 0.9, [0, 0, 10, 10]), det(1, 0.8, [50, 50, 60, 60]), det(2, 0.5, [100, 100, 110, 110])]
    tested = [
        det(0, 0.88, [0, 0, 10, 10]),  # kept (the best overlap of its class)
        det(0, 0.70, [0, 0, 10, 11]),  # a duplicate of the same object: added, not matched twice
        det(3, 0.80, [50, 50, 60, 60]),  # right box, wrong class: added (and class 1 lost)
        det(2, 0.45, [104, 100, 114, 110]),  # IoU 0.43 < 0.5: added (and class 2 lost)
    ]
    agreement.add_frame(reference, tested)
    summary = agreement.summary()
    assert (summary["kept"], summary["lost"], summary["added"]) == (1, 2, 3)
    assert summary["f1"] == pytest.approx(2 * 1 / 7, abs=1e-4)
    assert summary["score_diff_mean"] == pytest.approx(0.02) and summary["score_diff_max"] == pytest.approx(0.02)


def test_f1_over_frames_and_empty_runs():
    agreement = Agreement()
    assert agreement.f1 == 1.0  # nothing detected by either
    for _ in range(3):
        agreement.add_frame([det(0, 0.5, [0, 0, 10, 10])], [det(0, 0.6, [0, 0, 10, 10])])
    agreement.add_frame([det(0, 0.5, [0, 0, 10, 10])], [])
    assert agreement.f1 == pytest.approx(6 / 7)
    assert agreement.summary()["score_diff_max"] == pytest.approx(0.1)


def test_set_up_mode_skips_the_gate_where_it_cannot_or_need_not_run(tmp_path, monkeypatch, capsys):
    """make model runs the gate with --if-needed: nothing on a CPU without bf16, nothing twice per model."""
    import json

    import tools.accuracy.__main__ as gate
    from vidpipe.storage import sha256_file

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not loaded in this test")
    loads: list[str] = []
    monkeypatch.setattr(gate, "gate_report", lambda *args, **kwargs: loads.append("load"))
    monkeypatch.setattr(gate, "bf16_flags", lambda: [])
    assert gate.main(["--model", str(model), "--write", "--if-needed"]) == 0
    assert "nothing to gate" in capsys.readouterr().err and loads == []

    monkeypatch.setattr(gate, "bf16_flags", lambda: ["amx_bf16"])
    (tmp_path / "m.onnx.accuracy.json").write_text(
        json.dumps({"model_sha256": sha256_file(model), "asked_precision": "bf16", "f1": 0.98})
    )
    assert gate.main(["--model", str(model), "--write", "--if-needed"]) == 0
    assert "already holds" in capsys.readouterr().err and loads == []
