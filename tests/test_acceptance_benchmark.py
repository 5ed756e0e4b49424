"""The decision-quality benchmark runs (tiny settings) and its oracle is a real counterfactual."""

from __future__ import annotations

from examples.benchmarks import decision_quality


def test_decision_quality_benchmark_runs(tmp_path, capsys):
    out = tmp_path / "dq.json"
    summary = decision_quality.main(["--seeds", "1", "--epochs", "7", "--out", str(out)])
    assert summary["decisions"] >= 3
    for name in decision_quality.VARIANTS:
        assert 0.0 <= summary[name]["agreement"] <= 1.0
    import json

    records = json.loads(out.read_text())["records"]
    # Both branches start from one snapshot: a multiplier of exactly 1 would tie, any other differs.
    assert all(r["mutated"] != r["unmutated"] for r in records)
    assert '"pre"' in capsys.readouterr().out
