"""The core without torch (issue 20): data, splits, evaluation, baselines, tuning, tracking and the CLI.

torch is the ``neural`` extra. These tests run reprorec in a subprocess where ``import torch`` fails
(a ``sitecustomize`` puts ``None`` in ``sys.modules``, as an interpreter without torch would answer);
``make wheel-check`` (CI) goes further and installs the wheel without the extra in a fresh venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NO_TORCH = "import sys\nsys.modules['torch'] = None  # any 'import torch' now raises ModuleNotFoundError\n"


def run_without_torch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPROREC_CONF")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_baseline_sweep_evaluates_and_is_tracked_without_torch(tmp_path: Path) -> None:
    check = run_without_torch(tmp_path, "-c", "import torch")
    assert check.returncode != 0 and "ModuleNotFoundError" in check.stderr  # the blocker works
    proc = run_without_torch(
        tmp_path,
        "-m",
        "benchmark.cli.sweep",
        "experiment=smoke",
        "model=ease",
        "seed=0",
        "tracking.uri=sqlite:///mlflow.db",
        "progress=false",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The cell ran to the end: its tuned test NDCG@10 is in the store (a value, not just a run).
    code = (
        "from mlflow import MlflowClient\n"
        "c = MlflowClient('sqlite:///mlflow.db')\n"
        "e = c.get_experiment_by_name('reprorec')\n"
        "r = [r for r in c.search_runs([e.experiment_id]) if 'test/ndcg_at_10' in r.data.metrics]\n"
        "print(len(r), r[0].data.metrics['test/ndcg_at_10'])\n"
        "import sys; assert sys.modules.get('torch') is None\n"
    )
    out = run_without_torch(tmp_path, "-c", code)
    assert out.returncode == 0, out.stderr[-4000:]
    n, ndcg = out.stdout.split()
    assert int(n) == 1 and 0.0 < float(ndcg) <= 1.0


def test_a_neural_model_without_torch_names_the_extra_to_install(tmp_path: Path) -> None:
    code = "from benchmark.registry import model_specs\nmodel_specs()['neumf'].build()\n"
    proc = run_without_torch(tmp_path, "-c", code)
    assert proc.returncode != 0
    assert "needs torch, which is not installed: pip install 'reprorec[neural]'" in proc.stderr
    assert "neumf.yaml" in proc.stderr  # names the file
