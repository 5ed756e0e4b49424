"""Do hotcb's samplers learn from the scores they are told?

One mutation family (``lr_mult`` in [0.5, 2], log scale) is searched through hotcb's own
OptunaSearch, ask/tell, with a synthetic objective where a higher multiplier always wins:
score = 0.1 * ln(lr_mult) + noise, as a segment after an lr change would score when a larger lr
helps. The figure is the share of proposals above the (geometric) midpoint 1.0 after the
startup trials: about 0.5 for a sampler that ignores the scores, near 1 for one that learns.

    python -m examples.benchmarks.search_learning --seeds 5 --trials 40
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hotcb.modules.tune.schemas import SearchSpec, TuneRecipe  # noqa: E402
from hotcb.modules.tune.search import OptunaSearch  # noqa: E402

LR_MULT = TuneRecipe.from_dict({"actuators": {"opt": {"mutations": {"lr_mult": {"bounds": [0.5, 2.0]}}}}}).families()[0]


def above_midpoint_fraction(algorithm: str, seed: int, trials: int = 40, startup: int = 8) -> float:
    """Share of the proposals after ``startup`` that lie above lr_mult = 1."""
    search = OptunaSearch(SearchSpec(algorithm=algorithm, startup_trials=startup, seed=seed))
    noise = random.Random(seed)
    above = 0
    for i in range(trials):
        proposal = search.ask(LR_MULT, "mid")
        search.tell(proposal, 0.1 * math.log(proposal.value) + 0.005 * noise.gauss(0, 1))
        above += i >= startup and proposal.value > 1.0
    return above / (trials - startup)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--startup", type=int, default=8)
    parser.add_argument("--algorithms", default="tpe,random,qmc,cmaes,gp")
    args = parser.parse_args(argv)
    results = {}
    for algorithm in args.algorithms.split(","):
        start = time.perf_counter()
        fractions = [above_midpoint_fraction(algorithm, s, args.trials, args.startup) for s in range(args.seeds)]
        results[algorithm] = {"above_midpoint": sum(fractions) / len(fractions), "per_seed": fractions,
                              "seconds_per_trial": (time.perf_counter() - start) / (args.seeds * args.trials)}
        print(f"{algorithm:>7}: above midpoint {results[algorithm]['above_midpoint']:.2f} "
              f"({results[algorithm]['seconds_per_trial'] * 1000:.0f} ms per trial)", flush=True)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
