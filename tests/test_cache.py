"""amc.runs.cache: JSON results reused for the same key only; a damaged file is computed again."""

from __future__ import annotations

from pathlib import Path

from amc.runs.cache import cached_json


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
