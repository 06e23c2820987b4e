"""bench/profile_c1.py's reading of a cProfile dump: each stage is the cumulative time of the
functions of that name in a file whose path ends as the stage says, per request; stages whose
functions never ran read zero, and a same-named function elsewhere is not counted."""

from __future__ import annotations

import cProfile
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_profile_c1", ROOT / "bench" / "profile_c1.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pc = load_module()


def functions_at(path: str, source: str) -> dict[str, object]:
    """`source`'s functions, compiled as if they lived in `path` (what cProfile records)."""
    namespace: dict[str, object] = {}
    exec(compile(source, path, "exec"), namespace)
    return namespace


def test_stages_sum_the_named_functions_per_request(tmp_path: Path) -> None:
    busy = "def _sampling():\n    return sum(i * i for i in range(20000))\n"
    endpoint = functions_at("/site/margin/api/openai.py", busy)["_sampling"]
    elsewhere = functions_at("/site/other/openai.py", busy)["_sampling"]
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(4):
        endpoint()  # type: ignore[operator]
        elsewhere()  # type: ignore[operator]
    profile.disable()
    out = tmp_path / "c1.prof"
    profile.dump_stats(out)

    stages = dict(pc.stages(out, 2))
    assert set(stages) == {label for label, _, _ in pc.STAGES}
    assert stages["endpoint: _sampling"] > 0
    assert stages["  Pipeline.chat"] == 0.0
    ours = [
        entry.totaltime  # inclusive, as cProfile's cumtime
        for entry in profile.getstats()
        if getattr(entry.code, "co_filename", "") == "/site/margin/api/openai.py"
        and getattr(entry.code, "co_name", "") == "_sampling"
    ]
    assert len(ours) == 1
    assert stages["endpoint: _sampling"] == pytest.approx(ours[0] / 2 * 1e6)
