"""The seed's bare-PyTorch quick start, shipped as examples/bare_torch.py."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples import bare_torch  # noqa: E402
from hotcb.ledger import read_json, read_jsonl  # noqa: E402


def test_bare_torch_example_tunes(tmp_path):
    metrics = bare_torch.main(["--run-dir", str(tmp_path), "--epochs", "8", "--tune", "active"])
    summary = read_json(tmp_path / "hotcb.tune.summary.json")
    assert summary["applied"] >= 2
    assert summary["applied"] == sum(m["status"] == "applied" for m in read_jsonl(tmp_path / "hotcb.tune.mutations.jsonl"))
    assert metrics["val/loss"] < 2.3  # better than chance on 10 classes


def test_bare_torch_example_off_by_default(tmp_path):
    bare_torch.main(["--run-dir", str(tmp_path), "--epochs", "2"])
    assert not (tmp_path / "hotcb.tune.mutations.jsonl").exists()
