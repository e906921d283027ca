"""amc.runs.cache: JSON results and tensors reused for the same key only; a damaged file is computed again."""

from __future__ import annotations

from pathlib import Path

import torch

from amc.runs.cache import cached_json, cached_tensors


def test_a_result_is_computed_once_per_key_and_never_without_a_cache_dir(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"acc": 0.5 + len(calls)}

    first, path = cached_json(tmp_path, "x", {"a": 1}, compute)
    again, hit = cached_json(tmp_path, "x", {"a": 1}, compute)
    other, _ = cached_json(tmp_path, "x", {"a": 2}, compute)
    assert path is None and hit is not None and first == again == {"acc": 1.5} and other == {"acc": 2.5}
    hit.write_text("{not json")
    redone, path = cached_json(tmp_path, "x", {"a": 1}, compute)
    assert path is None and redone == {"acc": 3.5} and len(calls) == 3
    assert cached_json(None, "x", {"a": 1}, compute) == ({"acc": 4.5}, None)
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["x", "x"]


def test_tensors_are_stored_as_safetensors_and_reused_for_the_same_key_only(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> tuple[dict, dict]:
        calls.append(1)
        return {"a.xtx": torch.full((2, 2), float(len(calls)), dtype=torch.float64)}, {"rows": len(calls)}

    first = cached_tensors(tmp_path, "calibration", {"seed": 0}, compute)
    again = cached_tensors(tmp_path, "calibration", {"seed": 0}, compute)
    other = cached_tensors(tmp_path, "calibration", {"seed": 1}, compute)
    assert first[2] is None and again[2] is not None and again[2].suffix == ".safetensors"
    assert torch.equal(first[0]["a.xtx"], again[0]["a.xtx"]) and again[0]["a.xtx"].dtype == torch.float64
    assert first[1] == again[1] == {"rows": 1} and other[1] == {"rows": 2} and len(calls) == 2
    again[2].write_bytes(b"not a safetensors file")  # damaged: computed again, never trusted
    redone = cached_tensors(tmp_path, "calibration", {"seed": 0}, compute)
    assert redone[2] is None and redone[1] == {"rows": 3}
    assert cached_tensors(None, "calibration", {"seed": 0}, compute)[1:] == ({"rows": 4}, None)
