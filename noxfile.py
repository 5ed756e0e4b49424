"""Developer sessions. `nox -s demo` runs the main job, `nox -s tests` the test suite.

Every session builds its own virtualenv and installs torch *first*, so that pip never
resolves an unpinned ``torch`` to a multi-GB CUDA build on a CPU machine. Override the
torch requirement with ``HOTCB_TORCH`` (e.g. ``HOTCB_TORCH="torch --index-url ..."``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

CPU_TORCH = "torch==2.13.0"


def _torch_requirement() -> list[str]:
    spec = os.environ.get("HOTCB_TORCH")
    if spec:
        return shlex.split(spec)
    return ["torch"] if shutil.which("nvidia-smi") else [CPU_TORCH]


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install(*_torch_requirement())
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default suite: everything not marked slow (about 10 minutes on 2 cores)."""
    _install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(default=False)
def slow(session: nox.Session) -> None:
    """Slow tests: multirun sweeps, DDP on CPU, resume across processes."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The main job: a Lightning MLP on sklearn digits, tuned online by hottune."""
    _install(session, "all")
    args = session.posargs or ["tune=active", "recipe=lr_only"]
    session.run("python", "examples/train.py", *args)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: tuning quality against baselines and per-step overhead (`-- --quick`)."""
    _install(session)
    session.run("python", "-m", "examples.benchmarks", *session.posargs)


@nox.session(default=False)
def packaging(session: nox.Session) -> None:
    """Build the wheel, install it in this fresh environment, and run a standalone app from a
    copy outside the repository: it composes `tune=active recipe=lr_only search=gp` through
    the installed search-path plugin."""
    session.install(*_torch_requirement())
    session.install("build")
    outside = tempfile.mkdtemp(prefix="hotcb-packaging-")  # not under the repo: nothing of it on sys.path
    session.run("python", "-m", "build", "--wheel", "--outdir", outside)
    wheel = next(p for p in os.listdir(outside) if p.endswith(".whl"))
    session.install(f"{os.path.join(outside, wheel)}[tune]", "scipy", "pytest")
    session.install("--force-reinstall", "--no-deps", os.path.join(outside, wheel))  # a reused venv gets this build
    tests = os.path.join(outside, "packaging")
    shutil.copytree("tests/packaging", tests)
    session.chdir(outside)
    session.run("pytest", "-p", "no:cacheprovider", "--rootdir", tests, "-o", "addopts=",
                "-o", "markers=slow: slow", tests, *session.posargs)
    shutil.rmtree(outside, ignore_errors=True)
