"""A run's sampling settings from the command line (`--param temperature=1.3 --param seed=7`).

They override the set's and the items' own `params` for every call of the run, so one set can
compare two settings of the same model (greedy against a high temperature, say). Only the settings
listed here are accepted, each checked against its range, so a typo fails before the first call
instead of being sent to the model (or silently dropped by it). The run records them in every
result line (`run_params`), so `margin eval compare` shows which settings each side ran with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from margin.evals.errors import EvalError

ParamValue = int | float


@dataclass(frozen=True, slots=True)
class _Setting:
    parse: Callable[[str], ParamValue]
    low: float
    high: float | None  # None: no upper bound

    def check(self, name: str, raw: str) -> ParamValue:
        try:
            value = self.parse(raw)
        except ValueError:
            kind = "an integer" if self.parse is int else "a number"
            raise RunParamError(f"--param {name}={raw}: {name} must be {kind}") from None
        if not math.isfinite(value) or value < self.low or (self.high is not None and value > self.high):
            upper = f"and {self.high:g}" if self.high is not None else "or more"
            raise RunParamError(f"--param {name}={raw}: {name} must be between {self.low:g} {upper}")
        return value


SETTINGS: dict[str, _Setting] = {
    "temperature": _Setting(float, 0.0, 2.0),
    "top_p": _Setting(float, 0.0, 1.0),
    "seed": _Setting(int, 0, None),
    "max_tokens": _Setting(int, 1, None),
    "presence_penalty": _Setting(float, -2.0, 2.0),
    "frequency_penalty": _Setting(float, -2.0, 2.0),
}


class RunParamError(EvalError):
    code = "eval_param_invalid"


def parse_run_params(pairs: Iterable[str]) -> dict[str, ParamValue]:
    """`KEY=VALUE` pairs into checked settings; a key given twice keeps its last value."""
    params: dict[str, ParamValue] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise RunParamError(f"--param {pair!r}: expected KEY=VALUE, e.g. temperature=1.3")
        setting = SETTINGS.get(name)
        if setting is None:
            raise RunParamError(f"--param {name}: unknown setting (known: {', '.join(sorted(SETTINGS))})")
        params[name] = setting.check(name, raw)
    return params


def describe_params(params: dict[str, object] | None) -> str:
    """`max_tokens=64, temperature=0` (sorted), `-` when none, `not recorded` for older results."""
    if params is None:
        return "not recorded"
    return ", ".join(f"{key}={value}" for key, value in sorted(params.items())) or "-"
