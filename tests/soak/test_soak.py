"""The soak, short: three minutes of chaos (every service killed and restarted, the publishers several
times, the broker once) through the whole pipeline, then the account (tools/soak/check.py).
`make soak` runs the same for ten minutes and puts its figures in the README."""

import json

import pytest

from tools.soak.__main__ import run

pytestmark = [pytest.mark.broker, pytest.mark.model, pytest.mark.faults]


@pytest.mark.timeout(1200)
def test_three_minutes_of_chaos_lose_overwrite_and_miscount_nothing(tmp_path, default_model, sample_video):
    summary = run(minutes=3.0, out=tmp_path, fps=4.0, seed=0)
    figures = summary["figures"]
    report = json.dumps({"checks": summary["checks"], "figures": figures}, indent=1, default=str)[:6000]
    assert summary["ok"], f"logs in {summary['logs']}:\n{report}"
    # The chaos really happened: every service was restarted, the publishers started new epochs.
    assert all(figures["restarts"][name] >= 1 for name in figures["restarts"]), report
    assert all(epochs >= 2 for epochs in figures["epochs"].values()), report
    assert figures["chaos"].get("broker restart") == 1, report
