"""A proxy study's directory: its settings (``study.json``, a rerun must repeat them) and one dir per candidate.

    <out>/study.json                       settings (compared on a rerun), inputs (paths), candidates asked for
    <out>/base.json                        the unpruned model's accuracies and the calibration's cost
    <out>/candidates/<id>/candidate.json   counts, cost ratio, proxies and their seconds (written when all are done)
    <out>/candidates/<id>/finetuned.json   the fine-tuned accuracy and its seconds (written when done)
    <out>/candidates/<id>/error.json       why the candidate failed (removed when a rerun succeeds)
    <out>/correlations.md|json, scatter_<proxy>.png

Every file is written to a temporary name and renamed into place, so a killed study leaves whole files only.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

FORMAT = 1


class StudyMismatch(ValueError):
    """The output dir holds another study's results."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON in ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def settings_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Every setting that differs, as ``name=<old> there, <new> here`` (nested dicts by dotted name)."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = []
        for key in sorted(set(old) | set(new)):
            diffs += settings_diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return diffs
    return [] if old == new else [f"{prefix.rstrip('.')}={old!r} there, {new!r} here"]


def check_study(out: Path, settings: dict[str, Any]) -> int:
    """Refuse ``out`` when it holds another study (any setting different) or results without a ``study.json``;
    returns the number of candidates its study asked for so far (0 for a new one)."""
    path = out / "study.json"
    if path.is_file():
        old = read_json(path)
        diffs = settings_diff(old.get("settings"), settings)
        if diffs:
            raise StudyMismatch(f"{out} holds a study made with other settings ({'; '.join(diffs)}); its results are "
                                f"not overwritten: rerun with the same settings or use another --out")
        return int(old.get("candidates", 0))
    if (out / "candidates").exists():
        raise StudyMismatch(f"{out} has candidates/ but no study.json: not a study of this command, or a damaged one; "
                            f"use another --out")
    return 0


def open_study(out: Path, settings: dict[str, Any], inputs: dict[str, Any], candidates: int) -> None:
    """Start ``out`` as this study's dir, or continue it (``check_study``). ``candidates`` may grow on a rerun
    (random search's draws go on); the largest number asked for is recorded."""
    candidates = max(candidates, check_study(out, settings))
    write_json(out / "study.json", {"format": FORMAT, "settings": settings, "inputs": inputs, "candidates": candidates})


def read_study(out: Path) -> dict[str, Any]:
    """``study.json`` of an existing study (for ``--analyse-only``)."""
    path = out / "study.json"
    if not path.is_file():
        raise StudyMismatch(f"{out} is not a proxy study (no study.json)")
    return read_json(path)


def record_error(directory: Path, stage: str, error: BaseException | str) -> None:
    """``error.json``: the stage that failed, the error and (for an exception) its traceback."""
    if isinstance(error, BaseException):
        info = {"stage": stage, "error": f"{type(error).__name__}: {error}",
                "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}
    else:
        info = {"stage": stage, "error": error}
    write_json(directory / "error.json", info)


def clear_error(directory: Path) -> None:
    (directory / "error.json").unlink(missing_ok=True)
