"""The core library never imports hydra, omegaconf, gymnasium or stable_baselines3 (conventions).

Every module of the ``amc`` package is checked, except the entry points that compose hydra configs and wire the
parts together, and the env / agent packages (gymnasium and SB3 wiring).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import amc

# Entry points that compose hydra configs (python -m amc.<name>) and their shared hydra helpers (amc.cli).
ENTRY_POINTS = {"amc.cli", "amc.search", "amc.train", "amc.prune", "amc.finetune", "amc.apply", "amc.inspect"}
FRAMEWORK_PACKAGES = ("amc.envs", "amc.agents", "amc.conf")  # gymnasium, stable-baselines3, hydra configs
FORBIDDEN = ["hydra", "omegaconf", "gymnasium", "stable_baselines3"]


def _is_core(name: str) -> bool:
    return name not in ENTRY_POINTS and not any(name == p or name.startswith(p + ".") for p in FRAMEWORK_PACKAGES)


def package_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(amc.__path__, prefix="amc."))


def test_entry_point_list_names_real_modules() -> None:
    modules = package_modules()
    assert not ENTRY_POINTS - set(modules), f"ENTRY_POINTS names modules that do not exist: {ENTRY_POINTS - set(modules)}"
    assert len([m for m in modules if _is_core(m)]) >= 30  # the walk found the package, not an empty path


def test_core_imports_no_framework() -> None:
    core = ["amc", *(m for m in package_modules() if _is_core(m))]
    # Import one module after another and attribute each framework package to the module that pulled it in.
    code = (
        "import importlib, json, sys\n"
        f"forbidden, culprits = {FORBIDDEN!r}, {{}}\n"
        f"for name in {core!r}:\n"
        "    before = {f for f in forbidden if f in sys.modules}\n"
        "    importlib.import_module(name)\n"
        "    new = sorted(f for f in forbidden if f in sys.modules and f not in before)\n"
        "    if new:\n"
        "        culprits[name] = new\n"
        "print(json.dumps(culprits))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    culprits = json.loads(result.stdout.strip().splitlines()[-1])
    assert culprits == {}, (f"core modules import framework packages: {culprits}. The core must not; an entry point "
                            f"that composes hydra configs belongs in ENTRY_POINTS of {__file__}")
