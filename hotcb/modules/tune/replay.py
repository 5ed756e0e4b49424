"""Replay: another run's accepted mutations, re-applied when training reaches their steps.

The source's mutation log says what was applied and what was kept: its accepted mutations, and
those it replayed itself when it was a replay, are re-applied in step order, without any
search. The ids already handled are part of the tuner's state, so a run resumed from a
checkpoint replays none of them twice. A run cannot replay itself: its changes are in effect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional

from hotcb.modules.tune.storage import MUTATIONS_FILE, RECIPE_FILE, read_mutations

log = logging.getLogger(__name__)


class ReplaySource:
    def __init__(self, source: Optional[str] = None, done: Iterable[str] = (), run_dir: Optional[str] = None):
        self.source = source
        self.done: list[str] = list(done)  # source mutation ids handled (replayed or failed)
        self.run_dir = run_dir  # the replaying run's own directory, which it may not replay
        self._queue: Optional[list[dict]] = None

    def load(self) -> None:
        """Read what the source kept; ValueError when it is not a tuned run, is this run, or
        kept nothing."""
        source = self.source
        if not source:
            raise ValueError("replay mode needs a run to replay from (tune enable --mode replay --from RUN)")
        if not any((Path(source) / name).is_file() for name in (MUTATIONS_FILE, RECIPE_FILE)):
            raise ValueError(f"replay source {source} has no {MUTATIONS_FILE} or {RECIPE_FILE} (is it a tuned run directory?)")
        if self.run_dir is not None and Path(source).resolve() == Path(self.run_dir).resolve():
            raise ValueError(f"replay source {source} is this run's own directory: its accepted mutations are in effect already")
        records = read_mutations(source)
        accepted = {r["id"] for r in records if r.get("status") == "accepted"}
        kept = [r for r in records if (r.get("status") == "applied" and r["id"] in accepted) or r.get("status") == "replayed"]
        if not kept:
            raise ValueError(f"replay source {source} kept no mutation (none accepted or replayed): nothing to replay")
        done = set(self.done)
        self._queue = [r for r in kept if r["id"] not in done]

    def due(self, step: int) -> list[dict]:
        """The source's mutations made at or before ``step`` and not handled yet."""
        if self._queue is None:
            try:
                self.load()
            except ValueError as exc:
                self._queue = []
                log.warning("hotcb tune: %s", exc)
        out = []
        while self._queue and int(self._queue[0].get("step", 0)) <= step:
            record = self._queue.pop(0)
            self.done.append(record["id"])
            out.append(record)
        return out

    def state_dict(self) -> dict:
        return {"from": self.source, "done": list(self.done)}
