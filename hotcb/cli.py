"""The ``hotcb`` console script: steer a running job from another terminal.

Commands are only appended to the run's command log; the training process applies them at its
next safe point and records each outcome in ``hotcb.applied.jsonl``. ``--wait`` waits for that
outcome. Reading commands (``tune status``, ``export-recipe``, ``compare``) only read run files;
``config validate|schema`` check configurations before a run. Nothing here imports torch,
lightning or optuna.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hotcb import __version__
from hotcb.channel import APPLIED_FILE, COMMANDS_FILE, Command, send
from hotcb.ledger import DamagedFile, iter_jsonl


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def parse_value(text: str) -> Any:
    """JSON first (so ``1e-4`` is a number), then YAML (``[0.5, 2]``, ``true``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    except ValueError as exc:  # an integer of thousands of digits
        raise CLIError(f"cannot read {text[:40]}...: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"expected KEY=VALUE, got {item!r}")
        parsed = parse_value(value.strip())
        if _non_finite(parsed):
            raise CLIError(f"{key.strip()}={value.strip()}: not a finite number; values must be finite")
        out[key.strip()] = parsed
    return out


def _non_finite(value: Any) -> bool:
    """NaN or infinity, also spelt as a string (``nan`` is not a YAML number, ``NaN`` is JSON's),
    inside lists too: a command log cannot carry them, and no knob takes them."""
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def _seconds(text: str) -> float:
    """``--wait``: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _run_dir(args: argparse.Namespace, must_exist: bool = True) -> Path:
    if not args.dir:
        raise CLIError("--dir RUN_DIR is required for this command")
    path = Path(args.dir)
    if must_exist and not path.is_dir():
        raise CLIError(f"no run directory at {path}")
    return path


def _send(args: argparse.Namespace, module: str, op: str, payload: dict) -> int:
    run_dir = _run_dir(args)
    fresh = not any(p.name.startswith("hotcb.") and not p.name.startswith(COMMANDS_FILE) for p in run_dir.iterdir())
    command = send(run_dir, Command(module=module, op=op, args=payload))
    print(f"sent {module} {op} {json.dumps(payload) if payload else ''}".rstrip() + f" (id {command.id})")
    if fresh:  # a mistyped --dir (the sweep folder, not the job's) would otherwise wait silently
        print(f"hotcb: warning: {run_dir} holds no hotcb run yet; the command waits for a job started there",
              file=sys.stderr)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        for record in iter_jsonl(run_dir / APPLIED_FILE):
            if record.get("id") == command.id:
                status = record.get("status")
                detail = record.get("detail") or record.get("reason") or ""
                print(f"{status} at step {record.get('step')}: {detail}")
                return 0 if status == "applied" else 1
        time.sleep(0.1)
    print(f"no outcome within {args.wait:g}s (is the job running?)", file=sys.stderr)
    return 3


# -- tune ---------------------------------------------------------------------------------------
def cmd_tune_enable(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"mode": args.mode}
    if args.source:
        payload["from"] = str(Path(args.source).resolve())
    return _send(args, "tune", "enable", payload)


def cmd_tune_disable(args: argparse.Namespace) -> int:
    return _send(args, "tune", "disable", {})


def cmd_tune_set(args: argparse.Namespace) -> int:
    return _send(args, "tune", "set", parse_assignments(args.assignments))


def cmd_tune_status(args: argparse.Namespace) -> int:
    from hotcb.modules.tune.storage import read_summary
    from hotcb.report import format_counts

    run_dir = _run_dir(args)
    summary = read_summary(run_dir)
    if summary is None:
        raise CLIError(f"{run_dir} has no tune summary yet (tuning never enabled, or the job has not reached a safe point)")
    if not isinstance(summary, dict) or "mode" not in summary:
        raise CLIError(f"{run_dir}: the tune summary is not one hotcb wrote (no 'mode')")
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"run: {run_dir}")
    if isinstance(summary.get("updated"), (int, float)):
        age = time.time() - summary["updated"]
        stale = " (no safe point since: is the job still running?)" if age > 600 and not summary.get("ended") else ""
        print(f"updated: {age:.0f} s ago{stale}")
    if summary.get("ended"):
        print("ended: the job has finished; this is its final summary")
    state = summary["mode"] + (f", PAUSED: {summary['pause_reason']}" if summary.get("paused") else "")
    print(f"mode: {state}")
    if summary.get("waiting_for"):
        print(f"waiting: {summary['waiting_for']}")
    kernel = summary.get("kernel") or {}
    if kernel.get("freeze", "off") != "off":
        print(f"freeze: {kernel['freeze']} (`hotcb freeze --mode off` lifts it)")
    rate = summary.get("accept_rate")
    print(f"decisions={summary.get('decisions', 0)} {format_counts(summary)} "
          f"accept_rate={'-' if rate is None else f'{rate:.0%}'}")
    for name, fam in (summary.get("families") or {}).items():
        win = fam.get("win_rate")
        print(f"  {name}: tried {fam['tried']}, accepted {fam['accepted']}, win rate {'-' if win is None else f'{win:.0%}'}")
    for name, act in (summary.get("actuators") or {}).items():
        print(f"  {name} = {act.get('value')} [{act.get('state')}]")
    if summary.get("last_metrics"):
        print("last metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["last_metrics"].items()))
    search = summary.get("search_info") or {}
    if summary.get("search"):
        studies = ", ".join(f"{name} {sum(c.values())} trials" for name, c in (search.get("studies") or {}).items())
        print(f"search: {summary['search']} {search.get('sampler') or ''} [{search.get('storage', '')}] {studies}".replace("  ", " "))
    for note in search.get("notes") or []:
        print(f"note: {note}")
    for module, why in (kernel.get("disabled") or {}).items():
        print(f"disabled: {module} ({why})")
    for err in [*(summary.get("errors") or []), *(kernel.get("errors") or [])]:
        print(f"error: {err}")
    return 0


def cmd_tune_export_recipe(args: argparse.Namespace) -> int:
    from hotcb.modules.tune.recipe import load_recipe
    from hotcb.modules.tune.storage import RECIPE_FILE

    run_dir = _run_dir(args)
    source = run_dir / RECIPE_FILE
    if not source.exists():
        raise CLIError(f"{run_dir} has no {RECIPE_FILE}")
    _write_recipe(load_recipe(source).to_dict(), Path(args.out), f"Exported from {run_dir.resolve()} by `hotcb tune export-recipe`.")
    return 0


def cmd_tune_evolve(args: argparse.Namespace) -> int:
    from hotcb.modules.tune.recipe import describe_evolution, evolve_recipe, load_recipe
    from hotcb.modules.tune.storage import RECIPE_FILE, read_summary

    runs = [Path(r) for r in args.runs]
    summaries = []
    for run in runs:
        summary = read_summary(run)
        if summary is None:
            raise CLIError(f"{run} has no tune summary (hotcb.tune.summary.json); is it a tuned run directory?")
        summaries.append(summary)
    base_path = Path(args.base) if args.base else runs[0] / RECIPE_FILE
    base = load_recipe(base_path)
    try:
        evolved = evolve_recipe(base, summaries, alpha=args.alpha)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for line in describe_evolution(base, evolved) or ["no family changed (no winners, and not enough tries to disable any)"]:
        print(line)
    sources = ", ".join(str(r.resolve()) for r in runs)
    _write_recipe(evolved.to_dict(), Path(args.out),
                  f"Evolved from {base_path} by `hotcb tune evolve` (alpha={args.alpha}) over: {sources}.")
    return 0


def _write_recipe(recipe: dict, out: Path, origin: str) -> None:
    """YAML usable as a ``recipe=`` option (or JSON, by extension)."""
    from hotcb.modules.tune.storage import dump_recipe_yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        out.write_text(json.dumps(recipe, indent=2) + "\n")
    else:
        out.write_text(dump_recipe_yaml(recipe, f"# @package hotcb.recipe\n# {origin}\n"))
    print(f"wrote {out}")


# -- config ------------------------------------------------------------------------------------
def cmd_config_validate(args: argparse.Namespace) -> int:
    """Compose like the job would (the app's config dir, or hotcb's entry option alone), validate."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    from hotcb.config_errors import ConfigError
    from hotcb.config_origin import ConfigOrigin
    from hotcb.modules.tune.recipe import load_recipe
    from hotcb.schema import validate_config, validate_hotcb

    if args.recipe:
        try:  # as a tuned run would take it: the sampler's target, warm-start sources, snapshot_dir
            validate_config({"recipe": load_recipe(args.recipe).to_dict(), "tune": {"mode": "active"}}, args.recipe)
        except ConfigError as exc:
            raise ConfigError([p.replace("hotcb.recipe.", "recipe.", 1) for p in exc.problems], args.recipe) from None
        print(f"hotcb: recipe {args.recipe} is valid")
        return 0
    if args.config_dir:
        config_dir = Path(args.config_dir).resolve()
        if not config_dir.is_dir():
            raise CLIError(f"--config-dir: no directory at {config_dir}")
        context = initialize_config_dir(config_dir=str(config_dir), version_base="1.3")
        name = args.config_name or "config"
    else:
        context = initialize_config_module("hotcb.conf", version_base="1.3")
        name = args.config_name or "hotcb/default"
    with context:
        cfg = compose(config_name=name, overrides=list(args.overrides), return_hydra_config=True)
        try:
            origin = ConfigOrigin.from_hydra(cfg.hydra)
        except Exception:  # noqa: BLE001 - the origin label is a courtesy; validation goes on without it
            origin = None
        validate_hotcb(cfg, origin)
        choices = sorted(f"{k}={v}" for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra/"))
    print(f"hotcb: configuration is valid ({' '.join(choices)})")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from hotcb.modules.tune.schemas import TuneRecipe

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **TuneRecipe.model_json_schema()}
    schema["title"] = "hotcb tune recipe"
    text = json.dumps(schema, indent=2) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


# -- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from hotcb.report import compare_jobs, format_comparison, load_jobs, plot_comparison

    sweep = Path(args.sweep_dir)
    if not sweep.is_dir():
        raise CLIError(f"no multirun directory at {sweep}")
    jobs = load_jobs(sweep)
    if not jobs:
        raise CLIError(f"{sweep} holds no Hydra jobs (no */.hydra/overrides.yaml)")
    rows = compare_jobs(jobs, args.metric, args.score, tuple(args.seed_key))
    print(format_comparison(rows, args.metric, args.score))
    for job in jobs:
        if job.status == "failed":
            print(f"failed: {job.path} ({' '.join(job.overrides)})")
    if args.plot != "none":
        try:
            out = plot_comparison(rows, args.plot or sweep / "compare.png", args.metric)
        except ImportError:
            print('no plot: matplotlib is not installed (pip install "hotcb[report]")', file=sys.stderr)
        else:
            print(f"plot: {out}")
    return 0


# -- other modules ------------------------------------------------------------------------------
def cmd_freeze(args: argparse.Namespace) -> int:
    return _send(args, "freeze", "set", {"mode": args.mode})


def cmd_module_set(args: argparse.Namespace) -> int:
    return _send(args, args.module, args.op, parse_assignments(args.assignments))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotcb", description="Steer a running hotcb job and read its record.")
    parser.add_argument("--dir", help="the run directory (printed by the job at start)")
    parser.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                        help="after sending, wait this long for the job's outcome and print it")
    parser.add_argument("--version", action="version", version=f"hotcb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # --dir and --wait may also follow the subcommand (`hotcb tune disable --dir RUN --wait 30`)
    reads = argparse.ArgumentParser(add_help=False)
    reads.add_argument("--dir", default=argparse.SUPPRESS, help="the run directory")
    sends = argparse.ArgumentParser(add_help=False, parents=[reads])
    sends.add_argument("--wait", type=_seconds, default=argparse.SUPPRESS, metavar="SECONDS",
                       help="wait this long for the job's outcome and print it")

    tune = sub.add_parser("tune", help="online hyperparameter tuning").add_subparsers(dest="tune_command", required=True)
    p = tune.add_parser("enable", parents=[sends], help="enable tuning (default mode: active); also resumes after a pause")
    p.add_argument("--mode", default="active", choices=["active", "observe", "suggest", "replay"])
    p.add_argument("--from", dest="source", help="with --mode replay: the run whose accepted mutations to replay")
    p.set_defaults(func=cmd_tune_enable)
    tune.add_parser("disable", parents=[sends], help="stop tuning (the current values stay)").set_defaults(func=cmd_tune_disable)
    p = tune.add_parser("status", parents=[reads], help="show tune status and summary")
    p.add_argument("--json", action="store_true", help="print the raw summary")
    p.set_defaults(func=cmd_tune_status)
    p = tune.add_parser("set", parents=[sends], help="change recipe fields, e.g. acceptance.epsilon=0.002")
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_tune_set)
    p = tune.add_parser("export-recipe", parents=[reads], help="write the run's current recipe (YAML, or JSON by extension)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_tune_export_recipe)
    p = tune.add_parser("evolve", help="a new recipe whose priors and bounds follow what won in earlier runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="tuned run directories (their hotcb.tune.summary.json)")
    p.add_argument("--base", help="the recipe to evolve (default: the first run's hotcb.tune.recipe.yaml)")
    p.add_argument("--out", required=True, help="where to write the evolved recipe (.yaml, or .json)")
    p.add_argument("--alpha", type=float, default=0.3, help="how far each prior moves toward the winners (0..1)")
    p.set_defaults(func=cmd_tune_evolve)

    config = sub.add_parser("config", help="check configurations before a run").add_subparsers(dest="config_command", required=True)
    p = config.add_parser("validate", help="compose a config as the job would and validate cfg.hotcb (exit 2 if invalid)")
    p.add_argument("--config-dir", help="the app's config directory (default: hotcb's own groups only)")
    p.add_argument("--config-name", help="the primary config (default: config, or hotcb/default without --config-dir)")
    p.add_argument("--recipe", help="validate this recipe file alone instead")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, e.g. tune=active recipe=lr_only")
    p.set_defaults(func=cmd_config_validate)
    p = config.add_parser("schema", help="write the JSON Schema of a recipe file (for editor completion)")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("compare", help="compare the jobs of a Hydra multirun: table + PNG plot")
    p.add_argument("sweep_dir", metavar="MULTIRUN_DIR")
    p.add_argument("--metric", default="val/loss", help="the metric to tabulate and plot (default: val/loss)")
    p.add_argument("--score", default="val/score", help="a second final metric for the table (default: val/score)")
    p.add_argument("--seed-key", action="append", default=None,
                   help="override keys that repeat a configuration rather than change it (default: seed)")
    p.add_argument("--plot", help="PNG path (default: MULTIRUN_DIR/compare.png; 'none' to skip)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("freeze", parents=[sends], help="prod: ignore every external command; off: accept them again")
    p.add_argument("--mode", required=True, choices=["off", "prod", "replay"])
    p.set_defaults(func=cmd_freeze)

    for module, what in (("opt", "optimizer hyperparameters, e.g. lr=1e-3"), ("loss", "loss weights, e.g. aux=0.5")):
        mod = sub.add_parser(module, help=f"set or scale {what}").add_subparsers(dest="op", required=True)
        for op in ("set", "scale"):
            p = mod.add_parser(op, parents=[sends], help=f"{op} {what}")
            p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
            p.set_defaults(func=cmd_module_set, module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is cmd_compare and not args.seed_key:
        args.seed_key = ["seed"]
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"hotcb: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hotcb ... | head`: the reader left; that is not an error
        sys.stderr.close()
        return 0
    except DamagedFile as exc:
        print(f"hotcb: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a run directory or output path that cannot be read or written
        print(f"hotcb: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - config errors and the like: one readable line
        from hotcb.config_errors import ConfigError

        if isinstance(exc, ConfigError) or _is_hydra_error(exc):
            print(f"hotcb: error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_hydra_error(exc: Exception) -> bool:
    """Hydra's own errors (a missing config option, a bad override) are user errors too."""
    module = sys.modules.get("hydra.errors")
    return module is not None and isinstance(exc, module.HydraException)


if __name__ == "__main__":
    sys.exit(main())
