"""Proposals by Optuna ask/tell, one trial per applied mutation.

Every mutation family gets its own study (and one per training phase when
``search.phase_conditioned``), with a fixed one-dimensional space built once from the recipe:
log-scale for multiplicative families. Families are searched apart because they are applied
one at a time: a joint space would force every trial to name a value for knobs it never
touched. ``ask`` opens a trial; ``tell`` closes it with the segment's score, or as FAIL when
the segment could not be evaluated; a blocked segment (NaN, gradient spike) is told a score
worse than any seen, so the sampler learns to stay away. A trial is never left PRUNED without a value, and a trial
is told at most once.

Studies live in the run's ``hotcb.tune.study.sqlite`` (an ordinary Optuna RDB storage that
optuna-dashboard opens), or Optuna's journal file with ``search.storage: journal``. Storage
trouble — a locked or corrupt file — degrades to in-memory studies with a warning; training
never stops for it. ``search.warm_start`` seeds new studies with the completed trials of
earlier runs, only where the space is the same. Without optuna installed,
:class:`RandomSearch` proposes uniformly (log-uniformly for multiplicative families) and the
kernel logs an install hint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from hotcb.modules.tune.schemas import Family, SearchSpec, TuneRecipe
from hotcb.modules.tune.storage import JOURNAL_FILE, STUDY_FILE

log = logging.getLogger(__name__)
INSTALL_HINT = 'optuna is not installed; hottune falls back to random proposals. Install it with: pip install "hotcb[tune]"'
PARAM = "value"  # the one parameter of every study
SQLITE_TIMEOUT_S = 5.0  # how long a write waits on a lock (e.g. a reader) before the storage degrades


@dataclass(frozen=True)
class Proposal:
    family: str
    value: float
    study: str
    trial: Optional[int] = None


def _autograd_on():
    """Decisions run inside the trainer's validation, under ``torch.no_grad`` or
    ``torch.inference_mode``; Optuna's GP sampler fits its kernel with autograd, so the sampler
    gets autograd back while it asks."""
    torch = sys.modules.get("torch")
    if torch is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.enable_grad())
    return stack


def study_name(family: Family, phase: str, phase_conditioned: bool) -> str:
    return f"{family.name}@{phase}" if phase_conditioned else family.name


def study_names(recipe: TuneRecipe) -> dict[str, Family]:
    """Every study the recipe can open, by name."""
    phases = list(recipe.phases) if recipe.search.phase_conditioned else [""]
    return {study_name(f, p, recipe.search.phase_conditioned): f for f in recipe.families() for p in phases}


def distribution(family: Family):
    """The fixed space of a family's study: its bounds, on a log scale when multiplicative."""
    from optuna.distributions import FloatDistribution

    lo, hi = family.spec.bounds
    return FloatDistribution(lo, hi, log=family.log_scale)


class RandomSearch:
    """Uniform proposals within bounds; the first proposal of a family is its prior_center."""

    backend = "random"

    def __init__(self, spec: SearchSpec):
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._asked: set[str] = set()

    def ask(self, family: Family, phase: str, fixed: Optional[float] = None) -> Proposal:
        name = study_name(family, phase, self.spec.phase_conditioned)
        lo, hi = family.spec.bounds
        if fixed is not None:
            value = fixed
        elif family.spec.prior_center is not None and name not in self._asked:
            value = family.spec.prior_center
        elif family.log_scale:
            value = math.exp(self._rng.uniform(math.log(lo), math.log(hi)))
        else:
            value = self._rng.uniform(lo, hi)
        self._asked.add(name)
        return Proposal(family.name, float(value), name)

    def tell(self, proposal: Proposal, score: Optional[float]) -> None:
        """Random search learns nothing."""

    def tell_blocked(self, proposal: Proposal, metric_at_start: Optional[float]) -> Optional[float]:
        """Random search learns nothing."""
        return None

    def close(self) -> None:
        pass

    def status(self) -> dict:
        return {"notes": [INSTALL_HINT]}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Random search keeps no history worth restoring."""


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


# Modules a sampler imports only when it first samples; checked before training instead.
SAMPLER_NEEDS = {"GPSampler": ("scipy", "torch"), "QMCSampler": ("scipy",), "CmaEsSampler": ("cmaes",)}
SAMPLER_OF_ALGORITHM = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                        "qmc": "QMCSampler"}


def sampler_problems(spec: SearchSpec, factory: Callable[[], Any]) -> list[tuple[str, str]]:
    """(path, message) for a sampler that cannot be built: optional modules not installed,
    arguments its constructor does not take, or values it refuses. ``factory`` builds one
    here, before training, instead of failing at the first proposal."""
    import importlib.util
    import inspect

    target = (spec.sampler or {}).get("_target_") or SAMPLER_OF_ALGORITHM[spec.algorithm]
    short = str(target).rsplit(".", 1)[-1]
    missing = [m for m in SAMPLER_NEEDS.get(short, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return [("search", f"{target} needs {', '.join(missing)}, which is not installed "
                           f'(pip install "hotcb[tune]"; torch: the build for your hardware)')]
    if spec.sampler:
        from hydra.utils import get_class

        try:
            params = inspect.signature(get_class(target)).parameters
        except Exception as exc:  # noqa: BLE001 - an unimportable target is the problem itself
            return [("search.sampler._target_", f"cannot import {target!r}: {exc}")]
        unknown = sorted(k for k in spec.sampler if k not in params and not k.startswith("_"))
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            accepted = ", ".join(n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
            return [(f"search.sampler.{k}", f"{short} takes no argument {k!r}; accepted: {accepted}") for k in unknown]
    try:
        factory()
    except Exception as exc:  # noqa: BLE001 - whatever the constructor refuses, said before training
        cause = exc.__cause__ or exc  # hydra wraps the constructor's own error
        return [("search.sampler", f"{short} cannot be built from these arguments: {type(cause).__name__}: {cause}")]
    return []


def storage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the storage, not hotcb, is at fault."""
    import sqlite3

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    return (StorageInternalError, SQLAlchemyError, sqlite3.Error, OSError)


class OptunaSearch:
    """Ask/tell over Optuna studies kept in one storage (the run's sqlite file by default)."""

    backend = "optuna"

    def __init__(self, spec: SearchSpec, storage: Any = None, sampler_factory: Callable[[], Any] | None = None,
                 *, storage_label: str = "memory"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.storage = storage if storage is not None else optuna.storages.InMemoryStorage()
        self.storage_label = storage_label
        self._sampler_factory = sampler_factory or default_sampler_factory(spec)
        self._studies: dict[str, Any] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self.notes: list[str] = []

    # -- studies ----------------------------------------------------------------------------
    def study(self, family: Family, phase: str):
        name = study_name(family, phase, self.spec.phase_conditioned)
        if name not in self._studies:
            self._guarded(self._open_study, name, family)
        return self._studies[name]

    def _open_study(self, name: str, family: Optional[Family]):
        import optuna

        study = optuna.create_study(study_name=name, storage=self.storage, sampler=self._sampler_factory(),
                                    direction="maximize", load_if_exists=True)
        _fail_stale_trials(study)
        if family is not None and not study.get_trials(deepcopy=False):
            self._seed(study, family)
        self._studies[name] = study
        return study

    def _seed(self, study: Any, family: Family) -> None:
        """A new study starts from earlier runs' trials (warm start), else from the prior_center."""
        if self.spec.warm_start:
            trials, problems, notes = warm_start_trials(self.spec.warm_start, study.study_name, distribution(family))
            for problem in [*problems, *notes]:
                self._note(f"search.warm_start: {problem}")
            study.add_trials(trials)
        if family.spec.prior_center is not None and not study.get_trials(deepcopy=False):
            study.enqueue_trial({PARAM: family.spec.prior_center})

    # -- ask / tell -------------------------------------------------------------------------
    def ask(self, family: Family, phase: str, fixed: Optional[float] = None) -> Proposal:
        """Open a trial; with ``fixed``, the trial takes that value (enqueued) instead of the
        sampler's, which is how a proposal is kept inside the safety limits."""
        def ask_once() -> Proposal:
            study = self.study(family, phase)
            if fixed is not None:
                study.enqueue_trial({PARAM: fixed}, skip_if_exists=False)
            with _autograd_on():
                trial = study.ask({PARAM: distribution(family)})
            self._open[(study.study_name, trial.number)] = study
            return Proposal(family.name, float(trial.params[PARAM]), study.study_name, trial.number)

        return self._guarded(ask_once)

    def tell(self, proposal: Proposal, score: Optional[float]) -> None:
        """Close the proposal's trial: COMPLETE with ``score``, or FAIL when ``score`` is None.

        A proposal whose trial is not open here (told already, or lost when the storage
        degraded) is ignored, so nothing is told twice."""
        from optuna.trial import TrialState

        study = self._open.pop((proposal.study, proposal.trial), None)
        if study is None:
            return
        if score is None or not math.isfinite(score):
            self._guarded(study.tell, proposal.trial, state=TrialState.FAIL, retry=False)
        else:
            self._guarded(study.tell, proposal.trial, float(score), retry=False)

    def tell_blocked(self, proposal: Proposal, metric_at_start: Optional[float]) -> Optional[float]:
        """Close the trial of a mutation that tripped a blocker (NaN loss, gradient spike) as
        COMPLETE with a score below any its study has seen: min(scores, -|metric at the
        decision point|) less their spread; returns that score. A FAIL would teach the sampler
        nothing, and it would propose the same catastrophe again."""
        from optuna.trial import TrialState

        study = self._open.get((proposal.study, proposal.trial))
        if study is None:
            return None
        try:
            scores = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        except storage_errors():
            scores = []  # tell() below meets the same storage and degrades it
        floor = min([*scores, -abs(metric_at_start)]) if metric_at_start is not None and math.isfinite(metric_at_start) \
            else min(scores, default=-1.0)
        spread = max(scores) - min(scores) if len(scores) > 1 else 0.0
        score = floor - (spread or abs(floor) or 1.0)
        self.tell(proposal, score)
        return score

    def close(self) -> None:
        """Fail any trial still open (the run ends mid-segment)."""
        from optuna.trial import TrialState

        for (_, number), study in list(self._open.items()):
            self._guarded(study.tell, number, state=TrialState.FAIL, retry=False)
        self._open.clear()

    # -- storage trouble --------------------------------------------------------------------
    def _guarded(self, operation: Callable[..., Any], *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        """``operation(*args, **kwargs)``; if the storage fails, switch to memory and (if
        ``retry``: the operation does not hold on to the failed storage) run it again."""
        try:
            return operation(*args, **kwargs)
        except storage_errors() as exc:
            self._degrade(exc)
            return operation(*args, **kwargs) if retry else None

    def _degrade(self, exc: BaseException) -> None:
        import optuna

        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self._note(f"search: study storage {self.storage_label!r} failed ({reason}); "
                   "continuing with in-memory studies (trials from now on are not saved)")
        self.storage, self.storage_label = optuna.storages.InMemoryStorage(), "memory (degraded)"
        self._studies.clear()
        self._open.clear()

    def _note(self, note: str) -> None:
        if note and note not in self.notes:
            self.notes.append(note)
            log.warning("hotcb tune: %s", note)

    # -- status and resume ------------------------------------------------------------------
    def status(self) -> dict:
        """Storage, sampler and per-study trial counts, for the run summary."""
        studies = {}
        for name, study in list(self._studies.items()):
            counts: dict[str, int] = {}
            for trial in self._guarded(study.get_trials, deepcopy=False, retry=False) or []:
                counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
            studies[name] = counts
        sampler = next(iter(self._studies.values())).sampler if self._studies else None
        return {"storage": self.storage_label,
                "sampler": type(sampler).__name__ if sampler is not None else None,
                "studies": studies, "notes": list(self.notes)}

    def state_dict(self) -> dict:
        """Every trial of the studies this run opened, so that a resume into a fresh storage
        (a new run directory, or in-memory studies) continues them with the same numbers."""
        out = {}
        for name, study in list(self._studies.items()):
            trials = self._guarded(study.get_trials, deepcopy=False, retry=False) or []
            out[name] = [_trial_record(t) for t in trials]
        return {"studies": out}

    def load_state_dict(self, state: dict) -> None:
        """Continue the saved studies. A trial open at save time is closed as FAIL; trials the
        storage already holds (a resume in the same run directory) are not added again."""
        self.close()
        for name, records in (state.get("studies") or {}).items():
            study = self._guarded(self._open_study, name, None)
            have = len(study.get_trials(deepcopy=False))
            self._guarded(study.add_trials, [_frozen_trial(r) for r in records[have:]], retry=False)


def _trial_record(trial: Any) -> dict:
    from optuna.distributions import distribution_to_json

    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": dict(trial.params),
            "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": dict(trial.user_attrs)}


def _frozen_trial(record: dict) -> Any:
    """A saved trial as Optuna can add it; one that was still running is closed as FAIL."""
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    state = TrialState[record["state"]]
    if state is TrialState.RUNNING:
        state = TrialState.FAIL
    distributions = {k: json_to_distribution(d) for k, d in record["distributions"].items()}
    params = record["params"] if state is not TrialState.WAITING else {}
    return create_trial(state=state, value=record["value"] if state is TrialState.COMPLETE else None,
                        params=params, distributions=distributions if params else {},
                        user_attrs=record.get("user_attrs") or {})


def _fail_stale_trials(study: Any) -> None:
    """A RUNNING trial found at start belongs to a process that died: close it as FAIL."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001
            log.warning("hotcb: could not close stale trial %d of %s", trial.number, study.study_name)


# -- storages ---------------------------------------------------------------------------------
def sqlite_storage(path: str | os.PathLike) -> Any:
    import optuna

    url = "sqlite:///" + os.path.abspath(path)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})


def journal_storage(path: str | os.PathLike) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(os.fspath(path)))


def open_storage(spec: SearchSpec, run_dir: str | os.PathLike) -> tuple[Any, str]:
    """(storage, label) as the recipe asks; a locked or broken file degrades to memory."""
    import optuna

    if spec.storage == "memory":
        return optuna.storages.InMemoryStorage(), "memory"
    path = Path(run_dir) / (JOURNAL_FILE if spec.storage == "journal" else STUDY_FILE)
    try:
        opener = journal_storage if spec.storage == "journal" else sqlite_storage
        storage = opener(path)
        optuna.study.get_all_study_names(storage)  # touch it: a locked/corrupt file fails here, not mid-run
        return storage, f"{spec.storage}: {path}"
    except Exception as exc:  # noqa: BLE001 - storage trouble must not stop training
        log.warning("hotcb tune: study storage %s unavailable (%s: %s); using in-memory studies",
                    path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return optuna.storages.InMemoryStorage(), f"memory (degraded: {path} unavailable: {type(exc).__name__})"


def source_storage(source: str | os.PathLike) -> Any:
    """An earlier run's study storage: its run directory, a sqlite file, or a journal file;
    ValueError, saying what is accepted, for anything else."""
    path = Path(source)
    if path.is_dir():
        for name, opener in ((STUDY_FILE, sqlite_storage), (JOURNAL_FILE, journal_storage)):
            if (path / name).is_file():
                return opener(path / name)
        raise ValueError(f"{path} holds no study ({STUDY_FILE} or {JOURNAL_FILE})")
    if not path.is_file():
        raise ValueError(f"no run directory or study file at {path}")
    if path.suffix in (".sqlite", ".sqlite3", ".db"):
        return sqlite_storage(path)
    if path.suffix in (".journal", ".log"):
        return journal_storage(path)
    accepted = "a run directory, .sqlite/.sqlite3/.db, .journal/.log"
    raise ValueError(f"{path} is not a study file (accepted: {accepted})")


def warm_start_trials(sources: Iterable[str], name: str, space: Any) -> tuple[list[Any], list[str], list[str]]:
    """Completed trials of study ``name`` in ``sources`` that were searched over ``space``; trials
    over another space are refused, never mixed in. Also returns one problem per source whose
    trials were all refused, and one note per source that gave only some (a run whose bounds a
    live ``tune set`` changed)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    trials, problems, notes = [], [], []
    for source in sources:
        storage = source_storage(source)
        if name not in optuna.study.get_all_study_names(storage):
            continue
        done = optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.COMPLETE,))
        same = [t for t in done if t.distributions.get(PARAM) == space]
        other = sorted({repr(t.distributions.get(PARAM)) for t in done if t not in same})
        if other:
            (notes if same else problems).append(
                f"{source}: study {name!r} was searched over {', '.join(other)} but this run searches "
                f"{space!r}; {len(done) - len(same)} of its {len(done)} trials are refused (a changed space is not mixed in)")
        trials += [create_trial(value=t.value, params=t.params, distributions=t.distributions,
                                user_attrs={**t.user_attrs, "warm_start": f"{source}#{t.number}"}) for t in same]
    return trials, problems, notes


def warm_start_problems(recipe: TuneRecipe) -> list[tuple[str, str]]:
    """(path, message) for warm-start sources that are missing, share no study with this
    recipe, or searched a study over another space."""
    import optuna

    problems: list[tuple[str, str]] = []
    names = study_names(recipe)
    readable = []
    for source in recipe.search.warm_start:
        try:
            found = set(optuna.study.get_all_study_names(source_storage(source)))
        except ValueError as exc:
            problems.append(("search.warm_start", str(exc)))
            continue
        readable.append(source)
        if not found & set(names):
            problems.append(("search.warm_start", f"{source} shares no study with this recipe "
                                                  f"(it has {sorted(found) or 'none'}; this run opens {sorted(names)})"))
    for name, family in names.items():
        problems += [("search.warm_start", p) for p in warm_start_trials(readable, name, distribution(family))[1]]  # all refused
    return problems


def search_problems(recipe: TuneRecipe, factory: Optional[Callable[[], Any]] = None) -> list[tuple[str, str]]:
    """Everything about ``recipe.search`` that would fail once training runs, as (path under
    the recipe, message); empty without optuna (random search needs nothing). ``factory``:
    the sampler factory the run will use (default: the recipe's, with the default allowlist)."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        return []  # make_search logs the install hint and falls back to random proposals
    factory = factory or (lambda: default_sampler_factory(recipe.search)())
    return sampler_problems(recipe.search, factory) + (warm_start_problems(recipe) if recipe.search.warm_start else [])


def make_search(spec: SearchSpec, run_dir: str | os.PathLike, sampler_factory: Callable[[], Any] | None = None):
    """OptunaSearch when optuna imports, else RandomSearch with a logged install hint."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        log.warning("hotcb: %s", INSTALL_HINT)
        return RandomSearch(spec)
    storage, label = open_storage(spec, run_dir)
    return OptunaSearch(spec, storage=storage, sampler_factory=sampler_factory, storage_label=label)
