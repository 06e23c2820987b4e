"""What can go wrong in an eval before any answer is graded: a malformed set, an unknown grader, a
results file that belongs to another run, a missing extra. Each names the place it happened."""

from __future__ import annotations

from pathlib import Path

from margin.errors import MarginError


class EvalError(MarginError):
    status = 400
    type = "invalid_request_error"
    code = "eval_error"


class EvalSetError(EvalError):
    """A malformed eval set: the message names the file, the line and the field."""

    code = "eval_set_invalid"

    def __init__(self, message: str, *, file: Path | str, line: int | None = None, field: str | None = None) -> None:
        place = f"{file}:{line}" if line is not None else str(file)
        super().__init__(f"{place}: {field}: {message}" if field else f"{place}: {message}", param=field)
        self.file = str(file)
        self.line = line
        self.field = field


class GraderSpecError(EvalError):
    """A grader spec that names no known grader or carries bad options (the loader adds the place)."""

    code = "grader_invalid"

    def __init__(self, message: str, *, field: str = "grader") -> None:
        super().__init__(message, param=field)
        self.field = field


class ResultsFileError(EvalError):
    """A results file that cannot be read, or that belongs to another set or model."""

    code = "eval_results_invalid"


class ExtraMissing(EvalError):
    """An optional dependency (an extra) that this part of margin needs is not installed."""

    code = "extra_missing"

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(f"{what} needs the `{extra}` extra ({module} is not installed): pip install 'margin[{extra}]'")
        self.extra = extra


class GatewayUnusable(EvalError):
    """The gateway cannot run the eval: unreachable, or the model or judge group does not exist."""

    code = "eval_gateway_unusable"
