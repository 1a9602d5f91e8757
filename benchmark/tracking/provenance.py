"""Provenance of a run: code version, packages, hardware, configuration hash, command line.

Computed by reprorec itself rather than taken from MLflow's automatic ``mlflow.source.*`` tags,
which point at the launcher's entry file and working directory under Hydra / joblib / submitit.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.fingerprint import sha256_json
from benchmark.registry import repo_root

#: Packages whose versions can change results; logged with every cell.
PACKAGES = (
    "reprorec",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "implicit",
    "torch",
    "optuna",
    "mlflow",
    "hydra-core",
)


@lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool | None}`` of the checkout reprorec runs from.

    ``dirty`` counts modified tracked files only (untracked outputs such as ``mlflow.db`` or
    ``multirun/`` would otherwise make every run dirty).
    """
    root = repo_root()
    if not (root / ".git").exists():  # installed (a wheel): never the git state of a folder above it
        return {"commit": "unknown", "dirty": None}
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock: engineers share it

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, env=env
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


#: What computes results, relative to the checkout: the code identity of a cell key hashes these
#: (Python sources and YAML configs below the folders, and the pinned environment). Docs, tests and
#: generated reports are not in it, so regenerating ``reports/`` or editing the README never
#: invalidates a finished cell.
CODE_DIRS = ("benchmark", "baselines", "neural", "conf")
CODE_SUFFIXES = (".py", ".yaml", ".yml")
ENVIRONMENT_FILES = ("requirements/constraints.txt",)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the relative paths and contents of :data:`CODE_DIRS` sources and the pinned environment.

    Content-based rather than ``git commit + dirty``: a rebuilt report, a docs edit or a new test
    changes the commit (or dirties the tree) without changing what a cell computes, and a cell must
    not rerun for it. Any change to a model, the evaluator, a split, a config YAML or a pinned
    package version does change the hash.
    """
    import hashlib

    root = repo_root()
    digest = hashlib.sha256()
    files: dict[str, Path] = {}  # the path as hashed (relative to a checkout) -> the file
    for folder in CODE_DIRS:
        base = root / folder
        if folder == "conf" and not base.is_dir():  # installed from a wheel: the packaged configs
            from benchmark.registry import installed_conf

            base = installed_conf()
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if path.suffix in CODE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                files[f"{folder}/{path.relative_to(base).as_posix()}"] = path
    files.update({f: root / f for f in ENVIRONMENT_FILES if (root / f).is_file()})
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(files[rel].read_bytes()).digest())
    return digest.hexdigest()


def code_version() -> str:
    """What identifies the code in a cell key: package version + :func:`code_hash` (first 16 digits).

    The git commit and dirty flag are logged beside it (provenance) but are not part of the key.
    """
    version = package_versions().get("reprorec", "unknown")
    return f"{version}+code.{code_hash()[:16]}"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    """CPU, memory and (when torch is already imported) GPU of this machine."""
    import psutil

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    torch = sys.modules.get("torch")  # importing torch costs seconds: only ask if a model did
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def config_hash(config: Any) -> str:
    """sha256 of a JSON-like configuration (canonical JSON)."""
    return sha256_json(config)


def command_line(argv: list[str] | None = None) -> str:
    """The command that regenerates the run, as one shell-quoted line."""
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("sweep.py", "__main__.py")):
        args[0] = "reprorec"
    elif args:
        args[0] = os.path.basename(args[0])
    return shlex.join(args)
