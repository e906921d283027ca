"""The layout's rules (docs/architecture.md): the top of ``amc`` holds the commands and nothing else; a command never
imports another command; the library packages never import hydra, omegaconf, gymnasium or stable_baselines3.

Exempt from the last rule: the commands, ``amc.cli`` (the hydra glue the commands share), and the env / agent / config
packages (gymnasium, SB3, hydra configs).
"""

from __future__ import annotations

import ast
import configparser
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import amc

REPO = Path(__file__).resolve().parents[1]
# python -m amc.<name>: the only modules at the top of amc
COMMANDS = {"amc.search", "amc.apply", "amc.prune", "amc.finetune", "amc.export", "amc.inspect", "amc.train",
            "amc.report", "amc.plot_curve"}
FRAMEWORK_PACKAGES = ("amc.cli", "amc.envs", "amc.agents", "amc.conf")  # hydra glue, gymnasium, SB3, hydra configs
FORBIDDEN = ["hydra", "omegaconf", "gymnasium", "stable_baselines3"]


def _is_core(name: str) -> bool:
    return name not in COMMANDS and not any(name == p or name.startswith(p + ".") for p in FRAMEWORK_PACKAGES)


def package_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(amc.__path__, prefix="amc."))


def test_top_of_amc_holds_the_commands_and_nothing_else() -> None:
    top = {f"amc.{m.name}" for m in pkgutil.iter_modules(amc.__path__) if not m.ispkg}
    assert top == COMMANDS, (f"modules at the top of amc that are not commands: {sorted(top - COMMANDS)} (move them into "
                             f"a package named after their concept); commands missing: {sorted(COMMANDS - top)}")
    assert len([m for m in package_modules() if _is_core(m)]) >= 30  # the walk found the package, not an empty path
    scripts = configparser.ConfigParser()
    scripts.read(REPO / "setup.cfg")
    targets = {line.split("=")[1].strip().split(":")[0]
               for line in scripts["options.entry_points"]["console_scripts"].strip().splitlines()}
    assert targets == COMMANDS, f"console scripts and commands differ: {sorted(targets ^ COMMANDS)}"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_module_imports_a_command() -> None:
    """What two commands share lives in a package; a package never reaches up into a command."""
    files = [p for root in ("amc", "envs", "agents") for p in (REPO / root).rglob("*.py")]
    offenders = {}
    for path in files:
        own = "amc." + path.stem if path.parent == REPO / "amc" else None
        found = sorted(m for m in _imported_modules(path) & COMMANDS if m != own)
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert offenders == {}, f"modules importing a command: {offenders}"


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
                            f"that composes hydra configs belongs in COMMANDS of {__file__}, hydra glue in amc.cli")
