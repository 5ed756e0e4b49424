"""``import hotcb`` and the ``hotcb`` CLI stay light: no torch, lightning or optuna until needed."""

from __future__ import annotations

import json

import pytest
from conftest import run_python

HEAVY = ("torch", "lightning", "optuna", "matplotlib")
PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


# Validating a tuned config builds its Optuna sampler once, to check the sampler's arguments
# before any training: optuna is needed there, torch and lightning are not.
@pytest.mark.parametrize(("code", "needed"), [
    ("import hotcb", []),
    ("import hotcb.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass", []),
    ("import hotcb.cli as c\nc.main(['config', 'schema', '--out', '/dev/null'])", []),
    ("import hotcb.cli as c\nc.main(['config', 'validate', 'tune=off', 'recipe=full'])", []),
    ("import hotcb.cli as c\nc.main(['config', 'validate', 'tune=active', 'recipe=full', 'search=gp'])", ["optuna"]),
    ("from hydra_plugins.hotcb_searchpath import HotcbSearchPathPlugin", []),
    ("import runpy\nsys.argv = ['train.py', 'hotcb.validate_only=true', 'tune=active', 'hydra.run.dir=/tmp/hotcb-unused']\n"
     "try:\n    runpy.run_path('examples/train.py', run_name='__main__')\nexcept SystemExit:\n    pass", ["optuna"]),
], ids=["import", "help", "config-schema", "config-validate-untuned", "config-validate-tuned", "searchpath-plugin",
        "train-validate-only"])
def test_no_heavy_imports(code, needed):
    proc = run_python("-c", PROBE.format(code=code, heavy=HEAVY))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == needed
