"""Provenance of a run: Python, platform, git commit and the versions of the packages results depend on.

Written beside every training run (``train.py``) and evaluation (``evaluate.py``) so a result can be
traced to the code and libraries that produced it.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

VERSIONED_PACKAGES = (
    "crossborder-dispatch",
    "numpy",
    "pandas",
    "pyarrow",
    "gymnasium",
    "highspy",
    "torch",
    "stable-baselines3",
    "sb3-contrib",
    "matplotlib",
    "pydantic",
)


def package_versions() -> dict:
    """``{"python", "platform", "git_commit", "packages": {name: version or None}}``."""
    packages = {}
    for name in VERSIONED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        here = Path(__file__).resolve().parent
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        commit = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "packages": packages,
    }
