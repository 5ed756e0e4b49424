"""Proposals by Optuna ask/tell, one trial per applied mutation.

Every mutation family gets its own study (and one per training phase when
``search.phase_conditioned``), with a fixed one-dimensional space built once from the recipe:
log-scale for multiplicative families. ``ask`` opens a trial; ``tell`` closes it with the
segment's score, or as FAIL when the segment could not be evaluated. A trial is never left
PRUNED without a value. Without optuna installed, :class:`RandomSearch` proposes uniformly
(log-uniformly for multiplicative families) and the kernel logs an install hint.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Optional

from hotcb.modules.tune.schemas import Family, SearchSpec

log = logging.getLogger(__name__)
INSTALL_HINT = 'optuna is not installed; hottune falls back to random proposals. Install it with: pip install "hotcb[tune]"'


@dataclass(frozen=True)
class Proposal:
    family: str
    value: float
    study: str
    trial: Optional[int] = None


def study_name(family: Family, phase: str, phase_conditioned: bool) -> str:
    return f"{family.name}@{phase}" if phase_conditioned else family.name


class RandomSearch:
    """Uniform proposals within bounds; the first proposal of a family is its prior_center."""

    backend = "random"

    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._asked: set[str] = set()

    def ask(self, family: Family, phase: str) -> Proposal:
        name = study_name(family, phase, self.spec.phase_conditioned)
        lo, hi = family.spec.bounds
        if family.spec.prior_center is not None and name not in self._asked:
            value = family.spec.prior_center
        elif family.log_scale:
            value = math.exp(self._rng.uniform(math.log(lo), math.log(hi)))
        else:
            value = self._rng.uniform(lo, hi)
        self._asked.add(name)
        return Proposal(family.name, float(value), name)

    def tell(self, proposal: Proposal, score: Optional[float]) -> None:
        """Random search learns nothing."""

    def close(self) -> None:
        pass


def sampler_spec(spec: SearchSpec) -> dict:
    """``spec.sampler`` with ``search.seed`` and ``search.startup_trials`` filled in where the
    sampler takes them and the spec leaves them unset."""
    import inspect

    from hydra.utils import get_class

    out = dict(spec.sampler or {})
    params = inspect.signature(get_class(out["_target_"])).parameters
    if "seed" in params and out.get("seed") is None and spec.seed is not None:
        out["seed"] = spec.seed
    if "n_startup_trials" in params and out.get("n_startup_trials") is None:
        out["n_startup_trials"] = spec.startup_trials
    return out


def default_sampler_factory(spec: SearchSpec, allowed: tuple[str, ...] = ()) -> Callable[[], Any]:
    """A fresh Optuna sampler per study, from ``spec.sampler`` (a ``_target_``) or ``spec.algorithm``."""
    import optuna

    if spec.sampler:
        from hotcb._instantiate import instantiate

        target = sampler_spec(spec)
        return lambda: instantiate(target, allowed=allowed, where="recipe.search.sampler")
    samplers = optuna.samplers
    seed, startup = spec.seed, spec.startup_trials
    factories: dict[str, Callable[[], Any]] = {
        "tpe": lambda: samplers.TPESampler(n_startup_trials=startup, seed=seed),
        "random": lambda: samplers.RandomSampler(seed=seed),
        "cmaes": lambda: samplers.CmaEsSampler(n_startup_trials=startup, seed=seed, warn_independent_sampling=False),
        "gp": lambda: samplers.GPSampler(n_startup_trials=startup, seed=seed),
        "qmc": lambda: samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    }
    return factories[spec.algorithm]


class OptunaSearch:
    """Ask/tell over Optuna studies kept in one storage (the run's sqlite file by default)."""

    backend = "optuna"

    def __init__(self, spec: SearchSpec, storage: Any = None, sampler_factory: Callable[[], Any] | None = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.storage = storage if storage is not None else optuna.storages.InMemoryStorage()
        self._sampler_factory = sampler_factory or default_sampler_factory(spec)
        self._studies: dict[str, Any] = {}
        self._open: dict[tuple[str, int], Any] = {}

    def study(self, family: Family, phase: str):
        import optuna

        name = study_name(family, phase, self.spec.phase_conditioned)
        study = self._studies.get(name)
        if study is None:
            study = optuna.create_study(
                study_name=name,
                storage=self.storage,
                sampler=self._sampler_factory(),
                direction="maximize",
                load_if_exists=True,
            )
            _fail_stale_trials(study)
            if family.spec.prior_center is not None and not study.trials:
                study.enqueue_trial({"value": family.spec.prior_center})
            self._studies[name] = study
        return study

    def distribution(self, family: Family):
        from optuna.distributions import FloatDistribution

        lo, hi = family.spec.bounds
        return FloatDistribution(lo, hi, log=family.log_scale)

    def ask(self, family: Family, phase: str) -> Proposal:
        study = self.study(family, phase)
        trial = study.ask({"value": self.distribution(family)})
        self._open[(study.study_name, trial.number)] = study
        return Proposal(family.name, float(trial.params["value"]), study.study_name, trial.number)

    def tell(self, proposal: Proposal, score: Optional[float]) -> None:
        """Close the proposal's trial: COMPLETE with ``score``, or FAIL when ``score`` is None."""
        from optuna.trial import TrialState

        study = self._open.pop((proposal.study, proposal.trial), None)
        if study is None:
            study = self._studies.get(proposal.study)
        if study is None or proposal.trial is None:
            return
        if score is None or not math.isfinite(score):
            study.tell(proposal.trial, state=TrialState.FAIL)
        else:
            study.tell(proposal.trial, float(score))

    def close(self) -> None:
        """Fail any trial still open (the run ends mid-segment)."""
        from optuna.trial import TrialState

        for (_, number), study in list(self._open.items()):
            try:
                study.tell(number, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - already finished
                pass
        self._open.clear()


def _fail_stale_trials(study: Any) -> None:
    """A RUNNING trial found at start belongs to a process that died: close it as FAIL."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001
            log.warning("hotcb: could not close stale trial %d of %s", trial.number, study.study_name)


def open_storage(spec: SearchSpec, run_dir: str | os.PathLike, study_file: str, journal_file: str) -> Any:
    """The study storage the recipe asks for; a locked or broken file degrades to memory."""
    import optuna

    if spec.storage == "memory":
        return optuna.storages.InMemoryStorage()
    try:
        if spec.storage == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(os.path.join(run_dir, journal_file)))
        url = "sqlite:///" + os.path.abspath(os.path.join(run_dir, study_file))
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 5}})
    except Exception as exc:  # noqa: BLE001 - storage trouble must not stop training
        log.warning("hotcb: study storage %r unavailable (%s); using in-memory storage", spec.storage, exc)
        return optuna.storages.InMemoryStorage()


def make_search(spec: SearchSpec, run_dir: str | os.PathLike, study_file: str, journal_file: str,
                sampler_factory: Callable[[], Any] | None = None):
    """OptunaSearch when optuna imports, else RandomSearch with a logged install hint."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        log.warning("hotcb: %s", INSTALL_HINT)
        return RandomSearch(spec)
    storage = open_storage(spec, run_dir, study_file, journal_file)
    return OptunaSearch(spec, storage=storage, sampler_factory=sampler_factory)
