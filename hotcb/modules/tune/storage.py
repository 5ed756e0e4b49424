"""The tune artifacts of a run directory, under the seed's names.

Only the training process (rank 0) writes them; the CLI only reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hotcb.ledger import append_jsonl, read_json, read_jsonl, write_json_atomic, write_text_atomic

RECIPE_FILE = "hotcb.tune.recipe.yaml"
MUTATIONS_FILE = "hotcb.tune.mutations.jsonl"
SEGMENTS_FILE = "hotcb.tune.segments.jsonl"
SUMMARY_FILE = "hotcb.tune.summary.json"
STUDY_FILE = "hotcb.tune.study.sqlite"
JOURNAL_FILE = "hotcb.tune.study.journal"


class TuneStorage:
    """Paths and writers for one run's tune artifacts; ``enabled=False`` writes nothing (ranks > 0)."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def append_mutation(self, record: dict) -> None:
        if self.enabled:
            append_jsonl(self.path(MUTATIONS_FILE), record)

    def append_segment(self, record: dict) -> None:
        if self.enabled:
            append_jsonl(self.path(SEGMENTS_FILE), record)

    def write_summary(self, summary: dict) -> None:
        if self.enabled:
            write_json_atomic(self.path(SUMMARY_FILE), summary)

    def write_recipe(self, recipe_dict: dict) -> None:
        if self.enabled:
            write_text_atomic(self.path(RECIPE_FILE), dump_recipe_yaml(recipe_dict))


def dump_recipe_yaml(recipe_dict: dict, header: str = "") -> str:
    return header + yaml.safe_dump(recipe_dict, sort_keys=False)


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    return read_json(Path(run_dir) / SUMMARY_FILE)


def read_mutations(run_dir: str | os.PathLike) -> list[dict]:
    return read_jsonl(Path(run_dir) / MUTATIONS_FILE)

