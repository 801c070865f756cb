"""The demo's sampling rate (flag, DEMO_FPS, `source`), the tracker's rate, and its summary: frames
sampled out of the video's, the rate the annotated video is written at, latency up to the maximum, the
printed table."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from tools.demo import parse_args, print_table, sample_rate, sampling, tracker_frame_rate
from tools.harness.results import summarize


def test_sample_rate_is_a_positive_rate_or_source():
    assert sample_rate("10") == 10.0
    assert sample_rate("2.5") == 2.5
    assert sample_rate("source") is None
    assert sample_rate(" Source ") is None
    for bad in ("0", "-5", "1001", "fast", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            sample_rate(bad)


def test_fps_defaults_to_the_deployed_rate_and_follows_demo_fps(monkeypatch):
    monkeypatch.delenv("DEMO_FPS", raising=False)
    assert parse_args([]).fps == 10.0
    assert parse_args(["--fps", "source"]).fps is None
    monkeypatch.setenv("DEMO_FPS", "source")
    assert parse_args([]).fps is None
    monkeypatch.setenv("DEMO_FPS", "25")
    assert parse_args([]).fps == 25.0
    assert parse_args(["--fps", "5"]).fps == 5.0  # the flag wins over the environment


def test_tracker_runs_at_the_rate_sent():
    assert tracker_frame_rate(10.0, 25.0) == 10
    assert tracker_frame_rate(None, 25.0) == 25
    assert tracker_frame_rate(60.0, 25.0) == 25  # the publisher sends every frame: no faster than the source
    assert tracker_frame_rate(0.2, 25.0) == 1


def test_sampling_reports_frames_kept_and_the_rate_sent_at():
    published = {"frames_read": 250, "frames_published": 100, "frames_sampled_out": 150}
    assert sampling(published, 25.0, 10.0) == {
        "requested_fps": 10.0,
        "source_fps": 25.0,
        "fps": 10.0,
        "frames_read": 250,
        "frames_sampled": 100,
        "frames_sampled_out": 150,
    }
    every = sampling({"frames_read": 250, "frames_published": 250, "frames_sampled_out": 0}, 25.0, None)
    assert every["requested_fps"] == "source"
    assert every["fps"] == 25.0


def fake_collector(latencies_ms: list[float]) -> SimpleNamespace:
    t0 = 1_764_000_000_000_000
    keys = [("cam", seq) for seq in range(len(latencies_ms))]
    results = {k: {"capture_ts_us": t0 + k[1] * 100_000, "detections": []} for k in keys}
    received = {k: results[k]["capture_ts_us"] + int(ms * 1000) for k, ms in zip(keys, latencies_ms, strict=True)}
    return SimpleNamespace(results=results, received_us=received, duplicates=0)


def test_summary_latency_includes_the_maximum():
    latencies = [100.0 + i for i in range(99)] + [900.0]
    summary = summarize(100, 0, 0, fake_collector(latencies))  # type: ignore[arg-type]
    assert summary["latency_ms"]["p50"] == 150.0
    assert summary["latency_ms"]["p99"] == 198.0  # the one slow frame is past p99 of 100: only max shows it
    assert summary["latency_ms"]["max"] == 900.0
    assert summary["frames_processed"] == 100
    # 100 frames from the first capture (t=0) to the last result (t=9.9 s + 0.9 s)
    assert summary["fps"] == round(100 / 10.8, 2)


def test_table_shows_the_sampling_and_the_latency(capsys):
    summary = summarize(100, 0, 0, fake_collector([200.0] * 100))  # type: ignore[arg-type]
    summary["sampling"] = sampling({"frames_read": 250, "frames_published": 100, "frames_sampled_out": 150}, 25, 10)
    summary["analytics"] = {
        "counts": {"service": None, "replay": {"lines": {}, "zones": {}}},
        "track_continuity": {"continuity": 1.0},
        "consistent": None,
    }
    print_table(summary)
    table = capsys.readouterr().out
    assert "frames_sampled" in table and "100 of 250 (10.0 frames/s of the source's 25)" in table
    assert "latency max (ms)" in table
    assert "fps (effective)" in table
