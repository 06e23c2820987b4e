"""The logistic head every scorer ends in, and how its arrays are named inside a model file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.logistic import sigmoid

Vector = NDArray[np.float64]


@dataclass(frozen=True)
class LinearHead:
    """Standardise, then logistic: p = sigmoid(((x - mean) / scale) . weights + bias)."""

    mean: Vector
    scale: Vector
    weights: Vector
    bias: float

    def predict(self, features: NDArray[np.float64]) -> Vector:
        return sigmoid(((features - self.mean) / self.scale) @ self.weights + self.bias)

    def arrays(self, prefix: str = "") -> dict[str, NDArray[Any]]:
        return {
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
            f"{prefix}weights": self.weights,
            f"{prefix}bias": np.array(self.bias),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]], prefix: str = "") -> LinearHead:
        return cls(
            mean=arrays[f"{prefix}mean"],
            scale=arrays[f"{prefix}scale"],
            weights=arrays[f"{prefix}weights"],
            bias=float(arrays[f"{prefix}bias"]),
        )
