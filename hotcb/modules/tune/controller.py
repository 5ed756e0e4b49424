"""HotTuneController: the observe → propose → apply → evaluate → accept/rollback loop.

Decisions happen at ``val_epoch_end`` (Lightning, bare loops) or ``eval_end`` (HF), outside
sanity checks (the adapter sees to that). At each one the controller closes the active
segment when its horizon is reached, tells the search its score, rolls back on reject, and —
in ``active`` mode, when no safety rule objects — proposes, validates, snapshots and applies
the next mutation. While a segment runs, ``train_batch_end`` watches for blockers (non-finite
loss, anomaly flags, grad-norm spikes) and rejects the segment at once instead of waiting for
the horizon.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Optional

from hotcb.actuators import state as training_state
from hotcb.actuators.base import ActuatorState
from hotcb.actuators.mutable_state import MutableState
from hotcb.config_errors import ConfigError
from hotcb.modules.tune import safety
from hotcb.modules.tune.evaluator import Point, SegmentEvaluator, Verdict, instability_penalty
from hotcb.modules.tune.recipe import startup_problems
from hotcb.modules.tune.replay import ReplaySource
from hotcb.modules.tune.schemas import Family, TuneRecipe, set_dotted
from hotcb.modules.tune.search import Proposal, make_search
from hotcb.modules.tune.storage import TuneStorage, read_mutations

log = logging.getLogger(__name__)


class TuneMode(str, Enum):
    OFF = "off"
    OBSERVE = "observe"
    SUGGEST = "suggest"
    ACTIVE = "active"
    REPLAY = "replay"

    @classmethod
    def parse(cls, value: Any) -> "TuneMode":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"tune mode {value!r} is not one of: {', '.join(m.value for m in cls)}") from None


class CommandRejected(ValueError):
    """A live command that cannot be applied; the message goes to the ledger."""


@dataclass
class Segment:
    id: str
    start_step: int  # global step at the decision point
    start_point: Point  # effective step (rollbacks rewound) and primary value
    pre_metrics: dict
    phase: str
    family: Optional[Family] = None
    proposal: Optional[Proposal] = None
    mutation_id: Optional[str] = None
    params_snapshot: Optional[dict] = None
    state_snapshot: Any = None
    decisions_seen: int = 0
    control: bool = False


@dataclass
class FamilyStats:
    tried: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    last_decision: int = -(10**9)
    cooldown_until: int = 0
    accepted_values: list = field(default_factory=list)  # [{value, score}]
    origin: Optional[list] = None  # the knob's values when the tuner first touched it

    def to_dict(self) -> dict:
        evaluated = self.accepted + self.rejected
        return {
            "tried": self.tried,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed": self.failed,
            "win_rate": self.accepted / evaluated if evaluated else None,
            "accepted_values": self.accepted_values,
        }


class HotTuneController:
    def __init__(
        self,
        recipe: TuneRecipe,
        mutable_state: MutableState,
        run_dir: str,
        mode: TuneMode | str = TuneMode.OFF,
        *,
        sampler_factory: Any = None,
        write_files: bool = True,
        replay_from: Optional[str] = None,
        kernel_status: Optional[Callable[[], dict]] = None,
    ):
        self.recipe = recipe
        self.kernel_status = kernel_status  # freeze, disabled modules, kernel errors: shown by `tune status`
        self.mutable_state = mutable_state
        self.storage = TuneStorage(run_dir, enabled=write_files)
        self.mode = TuneMode.parse(mode)
        self.evaluator = SegmentEvaluator(recipe.acceptance, recipe.objective)
        self._sampler_factory = sampler_factory
        self._search: Any = None
        self.segment: Optional[Segment] = None
        self.paused_reason = ""
        self.paused_until: Optional[int] = None  # decision count at which a timed pause lifts
        self._last_was_mutation = False  # the control baseline alternates mutation and control segments
        self._rng = random.Random(recipe.search.seed)  # values drawn inside the safety limits
        self.reject_streak = 0
        self.decisions = 0
        self.global_cooldown_until = 0
        self.rewound_steps = 0
        self.blocked_reason = ""
        self._interval_blocker = ""  # a blocker seen since the last decision point
        self.mutation_seq = 0  # numbers mutation ids; never reused, a resume included
        self.counts = {"proposed": 0, "applied": 0, "suggested": 0, "accepted": 0, "rejected": 0, "failed": 0,
                       "refused": 0, "cancelled": 0, "replayed": 0}
        self.family_stats: dict[str, FamilyStats] = {}
        self.watch = safety.GradNormWatch()
        self.last_metrics: dict = {}
        self.errors: list[str] = []
        self.replay = ReplaySource(replay_from, run_dir=run_dir)
        self._pending_cancel: Optional[dict] = None
        self.ended = False
        self._warned: set[str] = set()
        self._warned_state = False
        if self.mode is TuneMode.REPLAY and replay_from:
            try:
                self.replay.load()
            except ValueError as exc:
                raise ConfigError([f"tune.replay_from: {exc}"], "hotcb") from None
        if self.mode in (TuneMode.ACTIVE, TuneMode.SUGGEST):  # config errors, found before training
            problems = startup_problems(recipe, sampler_factory)  # every rank: all stop, none waits
            if problems:
                raise ConfigError([f"{path}: {message}" for path, message in problems], "recipe")
        self.storage.write_recipe(recipe.to_dict())

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def search(self):
        if self._search is None:
            spec = self.recipe.search
            if not self.storage.enabled:  # DDP ranks > 0 write no files, the study file included
                spec = spec.model_copy(update={"storage": "memory"})
            self._search = make_search(spec, self.storage.run_dir, self._sampler_factory)
        return self._search

    def families(self) -> dict[str, Family]:
        return {f.name: f for f in self.recipe.families()}

    def _stats(self, family: str) -> FamilyStats:
        return self.family_stats.setdefault(family, FamilyStats())

    def _step(self, env: dict) -> int:
        return int(env.get("step") or 0)

    def _effective(self, step: int) -> int:
        return step - self.rewound_steps

    def _phase(self, env: dict, step: int) -> str:
        max_steps = env.get("max_steps")
        frac = step / max_steps if max_steps else 0.0
        return self.recipe.phase_at(min(max(frac, 0.0), 1.0))

    def _read_metrics(self, env: dict) -> dict:
        metric = env.get("metric")
        names = [self.recipe.objective.primary, *self.recipe.objective.backup_metrics, "train/loss", "grad/norm"]
        out: dict[str, float] = {}
        if metric is None:
            return out
        for name in dict.fromkeys(names):
            try:
                value = metric(name, None)
            except Exception:  # noqa: BLE001
                value = None
            if value is not None:
                try:
                    out[name] = float(value)
                except (TypeError, ValueError):
                    pass
        return out

    def _warn_unusable(self, env: dict, problem: str) -> None:
        """Warn once per problem that the objective metric cannot be used, listing what exists."""
        name = self.recipe.objective.primary
        if problem in self._warned:
            return
        self._warned.add(problem)
        available = env.get("metric_names") or getattr(env.get("metric"), "names", None)
        try:
            names = sorted(available()) if callable(available) else []
        except Exception:  # noqa: BLE001
            names = []
        log.warning("hotcb tune: objective metric %r is %s; it never counts as a win. Available metrics: %s",
                    name, problem, ", ".join(names) or "(none reported)")

    # -- events -----------------------------------------------------------------------------
    def on_event(self, event: str, env: dict) -> None:
        if self._pending_cancel is not None:
            self._cancel_restored_segment(env)
        if event == "train_batch_end":
            self._watch(env)
            if self.mode is TuneMode.REPLAY and self.segment is None:
                self._replay(env)
        elif event in ("val_epoch_end", "eval_end"):
            self._decision(env)

    def _watch(self, env: dict) -> None:
        """Blockers: a segment they hit is rejected (and rolled back) at once; outside a
        segment they hold off the next proposal."""
        blocker = self.watch.blocker(env, self.recipe.safety)
        if not blocker:
            return
        self._interval_blocker = blocker
        if self.segment is not None and not self.segment.control:
            self._close_segment(env, self._step(env), {}, blocked=blocker)

    def _decision(self, env: dict) -> None:
        self.decisions += 1
        self._lift_timed_pause()
        step = self._step(env)
        metrics = self._read_metrics(env)
        self.last_metrics = dict(metrics, step=step)
        value = metrics.get(self.recipe.objective.primary)
        if value is None or not math.isfinite(value):
            self._warn_unusable(env, "missing" if value is None else f"not finite ({value})")
        self.blocked_reason, self._interval_blocker = self._interval_blocker, ""
        if value is not None and not math.isfinite(value) and self.recipe.safety.block_on_nan:
            self.blocked_reason = f"non-finite {self.recipe.objective.primary}"

        if self.segment is not None:
            self.segment.decisions_seen += 1
            kind, n = self.recipe.acceptance.horizon_parts()
            progress = self.segment.decisions_seen if kind == "val_epochs" else step - self.segment.start_step
            if progress >= n:
                self._close_segment(env, step, metrics)
        elif value is not None and self.mode is not TuneMode.OFF:
            self.evaluator.observe(self._effective(step), value)

        if self.segment is None:
            if self.mode in (TuneMode.ACTIVE, TuneMode.SUGGEST):
                self._maybe_propose(env, step, metrics)
            elif self.mode is TuneMode.REPLAY:
                self._replay(env)
        self.write_summary()

    # -- proposing --------------------------------------------------------------------------
    def why_not_propose(self) -> str:
        """Empty when a proposal may be made now, else the reason it may not."""
        if self.paused_reason:
            return f"paused: {self.paused_reason}"
        if self.blocked_reason:
            return f"blocked: {self.blocked_reason}"
        if self.decisions < self.global_cooldown_until:
            return "global cooldown after a reject"
        if not self.evaluator.ready():
            return "collecting the unmutated trajectory for the baseline"
        return ""

    def _eligible(self, env: dict) -> list[Family]:
        out = []
        for family in self.recipe.families():
            actuator = self.mutable_state.get(family.actuator)
            if actuator is None:
                self._warn_no_actuator(family)
                continue
            if getattr(actuator, "state", None) is ActuatorState.DISABLED:
                continue
            if family.mode == "mult" and self._stuck_at_zero(family, actuator, env):
                continue
            if self.decisions < self._stats(family.name).cooldown_until:
                continue
            if family.spec.risk == "medium" and self.reject_streak:
                continue  # medium-risk knobs move only after a clean (accepted) decision
            out.append(family)
        return sorted(out, key=lambda f: self._stats(f.name).last_decision)

    def _stuck_at_zero(self, family: Family, actuator: Any, env: dict) -> bool:
        """A multiplier cannot move a knob that is 0 (Adam's default weight decay): trying would
        score noise as a win or a loss. Skipped, and said once."""
        try:
            values = safety.origin_of(family, actuator, env)
        except Exception:  # noqa: BLE001 - unreadable here: its proposal will say why
            return False
        if not values or any(v != 0 for v in values):
            return False
        self._report_once(f"family {family.name}: {family.actuator} is 0, which a multiplier cannot move; it is "
                          f"skipped (to tune it from 0, give the family mode: set and absolute bounds)")
        return True

    def _report_once(self, problem: str) -> None:
        """A recipe problem found while training: in the log and in status, once."""
        if problem not in self._warned:
            self._warned.add(problem)
            self.errors.append(problem)
            log.warning("hotcb tune: %s", problem)

    def _warn_no_actuator(self, family: Family) -> None:
        """A family whose knob this run lacks (a misspelt ``lr_mul``, ``loss`` keys without loss
        weights) would be skipped forever in silence: say so once, in the log and in status."""
        self._report_once(f"family {family.name}: this run has no actuator {family.actuator!r} "
                          f"(it has: {', '.join(sorted(self.mutable_state)) or 'none'}); it is never proposed")

    def _maybe_propose(self, env: dict, step: int, metrics: dict) -> None:
        value = metrics.get(self.recipe.objective.primary)
        if value is None or not math.isfinite(value) or self.why_not_propose():
            return
        max_steps = env.get("max_steps")
        if max_steps and step >= max_steps:
            return  # training is over: no horizon left to judge a mutation in
        phase = self._phase(env, step)
        start = Point(self._effective(step), value)
        if self.evaluator.needs_control() or (
            self.recipe.acceptance.baseline == "control" and self._last_was_mutation
        ):
            self._last_was_mutation = False
            self.segment = Segment(f"s{self.decisions:05d}c", step, start, metrics, phase, control=True)
            return
        eligible = self._eligible(env)
        if not eligible:
            return
        family = eligible[0]
        stats = self._stats(family.name)
        stats.last_decision = self.decisions
        actuator = self.mutable_state[family.actuator]
        proposal, record, patch = self._propose(family, phase, step, env)
        problem = self._limit_problem(family, actuator, proposal, patch, env)
        if problem:
            # The sampler asked for more than safety allows: record that, then try a value
            # inside what is allowed, so that a knob at its limit is not stuck proposing it.
            self._fail(family, proposal, record, problem, status="refused")
            inside = safety.allowed_value(self.recipe.safety, family, actuator, env, stats.origin or [], self._rng)
            if inside is None:
                return
            proposal, record, patch = self._propose(family, phase, step, env, fixed=inside)
            problem = self._limit_problem(family, actuator, proposal, patch, env)
        if problem:
            self._fail(family, proposal, record, problem, status="refused")
            return
        check = actuator.validate(patch, env)
        if not check:
            self._fail(family, proposal, record, check.reason)
            return
        if self.mode is TuneMode.SUGGEST:
            self.counts["suggested"] += 1
            self.search.tell(proposal, None)
            self._log_mutation(record, "suggested", note="suggest mode: not applied; trial closed as FAIL")
            return
        params_snapshot = actuator.snapshot(env)
        try:
            state_snapshot = self._capture_state(env)
        except OSError as exc:  # snapshot_dir full or gone: this mutation could not be undone
            self._fail(family, proposal, record, f"state snapshot failed, so the mutation was not applied: {exc}")
            return
        result = actuator.apply(patch, env)
        if not result.ok:
            self._fail(family, proposal, record, result.detail)
            return
        stats.tried += 1
        self.counts["applied"] += 1
        self._last_was_mutation = True
        self._log_mutation(record, "applied", before=result.before, after=result.after)
        self.segment = Segment(
            f"s{self.decisions:05d}", step, start, metrics, phase, family=family, proposal=proposal,
            mutation_id=record["id"], params_snapshot=params_snapshot, state_snapshot=state_snapshot,
        )

    def _propose(self, family: Family, phase: str, step: int, env: dict, fixed: Optional[float] = None):
        """Ask the search for one proposal; returns it with its mutation record and patch."""
        proposal = self.search.ask(family, phase, fixed=fixed)
        self.counts["proposed"] += 1
        self.mutation_seq += 1
        patch = family.patch(proposal.value)
        record = {
            "id": f"m{self.mutation_seq:04d}", "step": step, "epoch": env.get("epoch"), "phase": phase,
            "family": family.name, "actuator": family.actuator, "patch": patch, "value": proposal.value,
            "study": proposal.study, "trial": proposal.trial, "ts": time.time(),
        }
        if fixed is not None:
            record["note"] = "drawn inside the safety limits after the sampler's value was refused"
        return proposal, record, patch

    def _limit_problem(self, family: Family, actuator: Any, proposal: Proposal, patch: dict, env: dict) -> str:
        """Why ``proposal`` breaks a safety limit, or "" (:mod:`hotcb.modules.tune.safety`)."""
        stats = self._stats(family.name)
        if stats.origin is None:
            stats.origin = safety.origin_of(family, actuator, env)
        return (safety.step_problem(self.recipe.safety, family, proposal.value)
                or safety.walk_problem(self.recipe.safety, family, actuator, patch, env, stats.origin))

    def _capture_state(self, env: dict):
        if self.recipe.acceptance.rollback != "state":
            return None
        if env.get("model") is None and not env.get("models"):
            if not self._warned_state:
                log.warning("hotcb tune: rollback=state needs env['model'] (and optimizer); falling back to params rollback")
                self._warned_state = True
            return None
        return training_state.capture(env, self.recipe.acceptance.snapshot_dir)

    def _fail(self, family: Family, proposal: Proposal, record: dict, reason: str, status: str = "failed") -> None:
        """Close a proposal that was not applied: ``failed`` (the actuator or a snapshot could
        not do it) or ``refused`` (a safety limit would not let it; never applied)."""
        self.counts[status] += 1
        if status == "failed":
            self._stats(family.name).failed += 1
        self.search.tell(proposal, None)
        self._log_mutation(record, status, reason=reason)
        log.log(logging.WARNING if status == "failed" else logging.INFO,
                "hotcb tune: mutation %s (%s=%s) %s: %s", record["id"], family.name, proposal.value, status, reason)

    def _log_mutation(self, record: dict, status: str, **extra: Any) -> None:
        self.storage.append_mutation({**record, "status": status, **extra})

    # -- evaluating -------------------------------------------------------------------------
    def _close_segment(self, env: dict, step: int, metrics: dict, blocked: str = "") -> None:
        seg = self.segment
        assert seg is not None
        self.segment = None
        value = metrics.get(self.recipe.objective.primary)
        post = Point(self._effective(step), value) if value is not None and math.isfinite(value) else None
        if post is not None and not blocked and step > seg.start_step and value == seg.start_point.value:
            self._warn_unusable(env, "stale (bit-identical to its value at the segment start)")
            post = None
        penalty = instability_penalty(
            seg.pre_metrics, metrics, self.recipe.objective.backup_metrics,
            self.recipe.acceptance.instability_weight, seg.start_point.value,
        )
        verdict = self.evaluator.judge(seg.start_point, post, penalty=penalty, blocked=blocked)
        record = {
            "segment": seg.id, "mutation_id": seg.mutation_id, "family": seg.family.name if seg.family else None,
            "value": seg.proposal.value if seg.proposal else None, "phase": seg.phase,
            "start_step": seg.start_step, "end_step": step,
            "pre": seg.pre_metrics, "post": metrics, "baseline": self.recipe.acceptance.baseline,
            **verdict.to_dict(),
        }
        if seg.control:
            if post is not None:
                self.evaluator.observe_control(seg.start_point, post)
                self.evaluator.observe(post.step, post.value)
            self.storage.append_segment({**record, "decision": "control"})
            return
        family = seg.family
        stats = self._stats(family.name)
        stats.cooldown_until = self.decisions + family.spec.cooldown + (0 if verdict.accepted else 1)
        if blocked:
            record["told_score"] = self.search.tell_blocked(seg.proposal, seg.start_point.value)
        else:
            self.search.tell(seg.proposal, verdict.score if post is not None else None)
        if verdict.accepted:
            self._accept(seg, verdict, post, stats)
            decision = "accept"
        else:
            decision = "reject"
            rollback = self._reject(seg, env, stats, post)
            record["rollback"] = rollback
        if seg.state_snapshot is not None:
            seg.state_snapshot.discard()
        self.storage.append_segment({**record, "decision": decision})

    def _accept(self, seg: Segment, verdict: Verdict, post: Point, stats: FamilyStats) -> None:
        self.counts["accepted"] += 1
        stats.accepted += 1
        stats.accepted_values.append({"value": seg.proposal.value, "score": verdict.score, "phase": seg.phase})
        self.reject_streak = 0
        actuator = self.mutable_state.get(seg.family.actuator)
        if hasattr(actuator, "mark_verified"):
            actuator.mark_verified()
        self.evaluator.observe(post.step, post.value)
        self._log_mutation({"id": seg.mutation_id, "family": seg.family.name, "value": seg.proposal.value,
                            "trial": seg.proposal.trial, "step": post.step + self.rewound_steps}, "accepted",
                           score=verdict.score)

    def _reject(self, seg: Segment, env: dict, stats: FamilyStats, post: Optional[Point]) -> str:
        self.counts["rejected"] += 1
        stats.rejected += 1
        self.reject_streak += 1
        self.global_cooldown_until = self.decisions + 1 + self.recipe.safety.global_cooldown
        rollback = "none"
        if self.recipe.acceptance.rollback_on_reject:
            rollback = self._rollback(seg, env)
        if rollback != "state" and post is not None:
            self.evaluator.observe(post.step, post.value, continuous=False)
        if self.reject_streak >= self.recipe.safety.max_global_reject_streak:
            self._pause(f"{self.reject_streak} consecutive rejects (safety.max_global_reject_streak)")
        self._log_mutation({"id": seg.mutation_id, "family": seg.family.name, "value": seg.proposal.value,
                            "trial": seg.proposal.trial, "step": self._step(env)}, "rejected", rollback=rollback)
        return rollback

    def _pause(self, reason: str) -> None:
        wait = self.recipe.safety.pause_decisions
        self.paused_until = None if wait is None else self.decisions + wait
        lifts = "`hotcb --dir RUN tune enable`" if wait is None else f"{wait} decision points or `tune enable`"
        self.paused_reason = f"{reason}; lifts after {lifts}"
        log.warning("hotcb tune: paused after %s", self.paused_reason)

    def _lift_timed_pause(self) -> None:
        if self.paused_reason and self.paused_until is not None and self.decisions >= self.paused_until:
            log.info("hotcb tune: pause lifted after %d decision points", self.recipe.safety.pause_decisions or 0)
            self.paused_reason, self.paused_until, self.reject_streak = "", None, 0

    def _rollback(self, seg: Segment, env: dict) -> str:
        actuator = self.mutable_state.get(seg.family.actuator)
        try:
            if seg.state_snapshot is not None:
                training_state.restore(seg.state_snapshot, env)
                if actuator.snapshot(env) != seg.params_snapshot:
                    # The knob lives outside the captured state (a loss weight, a custom
                    # actuator's attribute): its actuator puts it back.
                    result = actuator.restore(seg.params_snapshot, env)
                    if not result.ok:
                        raise RuntimeError(result.detail)
                elif hasattr(actuator, "reverted"):
                    actuator.reverted()
                self.rewound_steps += self._step(env) - seg.start_step
                return "state"
            result = actuator.restore(seg.params_snapshot, env)
            if not result.ok:
                raise RuntimeError(result.detail)
            return "params"
        except Exception as exc:  # noqa: BLE001 - a failed rollback is logged, training continues
            self.errors.append(f"rollback of {seg.mutation_id} failed: {exc}")
            log.warning("hotcb tune: rollback of %s failed: %s", seg.mutation_id, exc)
            return f"failed: {exc}"

    # -- replay -----------------------------------------------------------------------------
    def _replay(self, env: dict) -> None:
        step = self._step(env)
        for src in self.replay.due(step):
            actuator = self.mutable_state.get(src.get("actuator", ""))
            record = {"id": f"r-{src['id']}", "step": step, "family": src.get("family"), "actuator": src.get("actuator"),
                      "patch": src.get("patch"), "value": src.get("value"), "replayed_from": src["id"]}
            if actuator is None:
                self.counts["failed"] += 1
                self._log_mutation(record, "failed", reason=f"actuator {src.get('actuator')!r} is not registered")
                log.warning("hotcb tune: replay of %s failed: actuator %r is not registered", src["id"], src.get("actuator"))
                continue
            result = actuator.apply(src.get("patch") or {}, env)
            if result.ok:
                self.counts["replayed"] += 1
                self._log_mutation(record, "replayed", before=result.before, after=result.after)
            else:
                self.counts["failed"] += 1
                self._log_mutation(record, "failed", reason=result.detail)

    # -- commands ---------------------------------------------------------------------------
    def handle(self, op: str, args: dict, env: Optional[dict] = None) -> str:
        """Apply a live ``tune`` command; raises CommandRejected with the reason."""
        accepted = {"enable": {"mode", "from"}, "disable": set()}.get(op)
        unknown = sorted(set(args) - accepted) if accepted is not None else []
        if unknown:
            raise CommandRejected(f"tune {op}: unknown argument(s) {', '.join(map(repr, unknown))}; "
                                  f"accepted: {', '.join(sorted(accepted)) or 'none'}")
        if op == "enable":
            try:
                mode = TuneMode.parse(args.get("mode", "active"))
            except ValueError as exc:
                raise CommandRejected(str(exc)) from None
            if mode is TuneMode.REPLAY:
                source = args.get("from")
                if not source:
                    raise CommandRejected("replay mode needs --from RUN_DIR")
                same = str(source) == self.replay.source
                replay = ReplaySource(str(source), self.replay.done if same else (), self.storage.run_dir)
                try:
                    replay.load()
                except ValueError as exc:
                    raise CommandRejected(str(exc)) from None
                self.replay = replay
            resumed = bool(self.paused_reason)
            self.paused_reason, self.paused_until, self.reject_streak = "", None, 0
            self.mode = mode
            self.write_summary()
            return f"mode={mode.value}" + (" (resumed from pause)" if resumed else "")
        if op == "disable":
            cancelled = self._cancel_segment("tuning disabled") if self.segment is not None else ""
            self.mode = TuneMode.OFF
            self.write_summary()
            return "mode=off" + (f"; {cancelled}" if cancelled else "")
        if op == "set":
            return self._set(args, env or {})
        raise CommandRejected(f"unknown tune command {op!r}; accepted: enable, disable, set")

    def _set(self, args: dict, env: dict) -> str:
        if not args:
            raise CommandRejected("tune set needs at least one KEY=VALUE")
        data = self.recipe.to_dict()
        for key, value in args.items():
            if "_target_" in key or _mentions_target(value):
                raise CommandRejected(f"{key}: live commands cannot set a _target_")
            if key == "search" or key.startswith("search."):
                raise CommandRejected(f"{key}: the search cannot change while the run trains (its studies, "
                                      "sampler and storage are fixed when they open); set it in the recipe of the next run")
            data = set_dotted(data, key, value)
        try:
            recipe = TuneRecipe.from_dict(data)
        except ConfigError as exc:
            raise CommandRejected("; ".join(exc.problems)) from None
        problem = training_state.snapshot_dir_problem(recipe.acceptance.snapshot_dir)
        if problem and recipe.acceptance.snapshot_dir != self.recipe.acceptance.snapshot_dir:
            raise CommandRejected(f"acceptance.snapshot_dir: {problem}")
        self._check_live_families(recipe, env)
        self.recipe = recipe
        self.evaluator.acceptance, self.evaluator.objective = recipe.acceptance, recipe.objective
        self.storage.write_recipe(recipe.to_dict())
        self.write_summary()
        return ", ".join(f"{k}={v!r}" for k, v in args.items())

    def _check_live_families(self, recipe: TuneRecipe, env: dict) -> None:
        """What a live ``tune set`` may not do to a family, enabled or not: switch its scale (its
        study's trials are on one scale), or set a ``range`` its knob already lies outside
        (every proposal would fail)."""
        before = {f.name: f for f in self.recipe.families(include_disabled=True)}
        for family in recipe.families(include_disabled=True):
            old = before.get(family.name)
            if old is not None and old.mode != family.mode:
                raise CommandRejected(f"family {family.name}: mode {old.mode} -> {family.mode} would change the scale "
                                      "its study searches on; set it in the recipe of the next run")
            actuator = self.mutable_state.get(family.actuator)
            if family.spec.range is None or actuator is None or family.spec.range == (old and old.spec.range):
                continue
            try:
                values = safety.origin_of(family, actuator, env)
            except Exception:  # noqa: BLE001 - a knob that cannot be read here is checked at its proposals
                continue
            lo, hi = family.spec.range
            outside = [v for v in values if not lo <= v <= hi]
            if outside:
                raise CommandRejected(f"family {family.name}: range [{lo:g}, {hi:g}] excludes {family.actuator}'s current "
                                      f"value {outside[0]:g}, so every proposal would fail; move the knob first "
                                      f"(hotcb opt set / loss set), then set the range")

    def on_manual_change(self, actuators: list[str]) -> str:
        """A live ``opt``/``loss`` command moved a knob: a segment judging that knob can no
        longer be scored (its credit would go to the wrong change), so it is cancelled and the
        manual value stays."""
        if self._pending_cancel is not None and self._pending_cancel["actuator"] in actuators:
            self._cancel_restored_segment({}, restore=False)
            self.write_summary()
            return "the segment open at the checkpoint was cancelled"
        seg = self.segment
        if seg is None or seg.family is None or seg.family.actuator not in actuators:
            return ""
        note = self._cancel_segment(f"manual change of {seg.family.actuator} during the segment")
        self.write_summary()
        return note

    def _cancel_segment(self, why: str) -> str:
        seg = self.segment
        self.segment = None
        self.counts["cancelled"] += 1
        if seg.proposal is not None:
            self.search.tell(seg.proposal, None)
            self._log_mutation({"id": seg.mutation_id, "family": seg.family.name, "value": seg.proposal.value,
                                "trial": seg.proposal.trial}, "cancelled", reason=why)
        if seg.state_snapshot is not None:
            seg.state_snapshot.discard()
        return f"segment {seg.id} cancelled"

    # -- status, persistence --------------------------------------------------------------
    def summary(self) -> dict:
        evaluated = self.counts["accepted"] + self.counts["rejected"]
        return {
            "mode": self.mode.value,
            "paused": bool(self.paused_reason),
            "pause_reason": self.paused_reason,
            "ended": self.ended,
            "waiting_for": self.why_not_propose() if self.mode in (TuneMode.ACTIVE, TuneMode.SUGGEST) and not self.ended else "",
            "decisions": self.decisions,
            **self.counts,
            "accept_rate": self.counts["accepted"] / evaluated if evaluated else None,
            "reject_streak": self.reject_streak,
            "active_segment": self.segment.id if self.segment else None,
            "families": {name: s.to_dict() for name, s in self.family_stats.items()},
            "actuators": {name: _describe(a) for name, a in self.mutable_state.items()},
            "last_metrics": self.last_metrics,
            "errors": self.errors[-10:],
            "kernel": self.kernel_status() if self.kernel_status is not None else {},
            "search": getattr(self._search, "backend", None),
            "search_info": self._search.status() if self._search is not None else None,
            "updated": time.time(),
        }

    def write_summary(self) -> None:
        try:
            self.storage.write_summary(self.summary())
        except OSError as exc:
            log.warning("hotcb tune: could not write summary: %s", exc)

    def close(self, env: dict | None = None) -> None:
        self.ended = True  # the summary written now is the run's last
        if self.segment is not None:
            self._cancel_segment("run ended before the segment's horizon")
        if self._search is not None:
            self._search.close()
        self.write_summary()

    def state_dict(self) -> dict:
        seg = self.segment
        return {
            "mode": self.mode.value,
            "recipe": self.recipe.to_dict(),
            "paused_reason": self.paused_reason,
            "paused_until": self.paused_until,
            "reject_streak": self.reject_streak,
            "decisions": self.decisions,
            "global_cooldown_until": self.global_cooldown_until,
            "rewound_steps": self.rewound_steps,
            "counts": dict(self.counts),
            "mutation_seq": self.mutation_seq,
            "family_stats": {k: vars(v) | {} for k, v in self.family_stats.items()},
            "trajectory": [(p.step, p.value) for p in self.evaluator.trajectory],
            "control_rates": list(self.evaluator.control_rates),
            "last_was_mutation": self._last_was_mutation,
            "search": self._search.state_dict() if self._search is not None else None,
            "replay": self.replay.state_dict(),
            "open_segment": None if seg is None or seg.control else {
                "id": seg.id, "mutation_id": seg.mutation_id, "family": seg.family.name,
                "actuator": seg.family.actuator, "params_snapshot": seg.params_snapshot,
                "value": seg.proposal.value, "trial": seg.proposal.trial, "study": seg.proposal.study,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.mode = TuneMode.parse(state["mode"])
        self.recipe = TuneRecipe.from_dict(state["recipe"])
        self.evaluator = SegmentEvaluator(self.recipe.acceptance, self.recipe.objective)
        self.paused_reason = state["paused_reason"]
        self.paused_until = state.get("paused_until")
        self.reject_streak = state["reject_streak"]
        self.decisions = state["decisions"]
        self.global_cooldown_until = state["global_cooldown_until"]
        self.rewound_steps = state["rewound_steps"]
        self.counts.update(state["counts"])
        # Ids given out after the checkpoint (in a run that died later) stay taken.
        self.mutation_seq = max([state.get("mutation_seq", self.counts["proposed"]),
                                 *(_id_number(r.get("id")) for r in read_mutations(self.storage.run_dir))])
        self.family_stats = {k: FamilyStats(**v) for k, v in state["family_stats"].items()}
        self.evaluator.trajectory = [Point(s, v) for s, v in state["trajectory"]]
        self.evaluator.control_rates = list(state["control_rates"])
        self._last_was_mutation = state["last_was_mutation"]
        self.segment = None
        self._pending_cancel = state.get("open_segment")
        replay = state.get("replay") or {}
        self.replay = ReplaySource(replay.get("from") or self.replay.source, replay.get("done") or (), self.storage.run_dir)
        if state.get("search"):
            self.search.load_state_dict(state["search"])  # closes the open segment's trial as FAIL
        self.storage.write_recipe(self.recipe.to_dict())

    def _cancel_restored_segment(self, env: dict, *, restore: bool = True) -> None:
        """A segment open at checkpoint time cannot be judged after a restart: undo its change,
        unless a manual command (re-read from the log on resume) has set that knob since."""
        info, self._pending_cancel = self._pending_cancel, None
        actuator = self.mutable_state.get(info["actuator"])
        rollback = "none"
        if restore:
            rollback = "params" if actuator is not None and actuator.restore(info["params_snapshot"], env).ok else "failed"
        self.counts["cancelled"] += 1
        self._log_mutation({"id": info["mutation_id"], "family": info["family"], "value": info["value"],
                            "trial": info["trial"]}, "cancelled",
                           reason="run resumed mid-segment; the trial was closed as FAIL"
                                  + ("" if restore else "; the manual change since stands"),
                           rollback=rollback)


def _id_number(mutation_id: Any) -> int:
    text = str(mutation_id or "")
    return int(text[1:]) if text.startswith("m") and text[1:].isdigit() else 0


def _mentions_target(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k == "_target_" or _mentions_target(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions_target(v) for v in value)
    return False


def _describe(actuator: Any) -> dict:
    out: dict[str, Any] = {"state": getattr(getattr(actuator, "state", None), "value", None)}
    current = getattr(actuator, "current", None)
    if callable(current):
        try:
            out["value"] = current({})
        except Exception:  # noqa: BLE001
            pass
    return out
