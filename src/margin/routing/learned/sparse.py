"""Sparse rows (CSR) and ridge regression over them, numpy only.

Bag-of-words matrices have tens of thousands of columns and a few dozen non-zeros per row, so they
are kept as CSR arrays and a ridge fit is solved by conjugate gradients on the normal equations:
each step is two sparse products, and a few hundred steps fit thousands of prompts in about a
second. Several targets (one column each) are solved at once, which is what a one-vs-rest
classifier needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]
# The intercept is a constant column this large, so that its share of the penalty is negligible
# (an unpenalised intercept without centring a sparse matrix).
_INTERCEPT_COLUMN = 30.0


@dataclass(frozen=True)
class SparseRows:
    """A CSR matrix: row i holds values data[indptr[i]:indptr[i+1]] at columns indices[...]."""

    data: Vector
    indices: NDArray[np.int64]
    indptr: NDArray[np.int64]
    columns: int

    @property
    def rows(self) -> int:
        return int(self.indptr.size - 1)

    def dot(self, weights: Vector | Matrix) -> Vector | Matrix:
        """self @ weights, for a vector (columns,) or a matrix (columns, k)."""
        products = self.data.reshape((-1,) + (1,) * (weights.ndim - 1)) * weights[self.indices]
        # A cumulative sum differenced at the row ends sums each row, empty rows included.
        totals = np.concatenate([np.zeros((1, *weights.shape[1:])), np.cumsum(products, axis=0)])
        result: Vector | Matrix = totals[self.indptr[1:]] - totals[self.indptr[:-1]]
        return result

    def transpose_dot(self, values: Vector | Matrix) -> Vector | Matrix:
        """self.T @ values, for a vector (rows,) or a matrix (rows, k)."""
        row_of = np.repeat(np.arange(self.rows), np.diff(self.indptr))
        products = self.data.reshape((-1,) + (1,) * (values.ndim - 1)) * values[row_of]
        if values.ndim == 1:
            return np.asarray(np.bincount(self.indices, weights=products, minlength=self.columns), dtype=np.float64)
        return np.column_stack(
            [np.bincount(self.indices, weights=products[:, k], minlength=self.columns) for k in range(values.shape[1])]
        )

    def take(self, rows: NDArray[np.intp]) -> SparseRows:
        """The given rows, in the given order."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Position j of the result comes from starts[row] + (j - indptr[row]) of this matrix.
        picked = np.arange(indptr[-1]) + np.repeat(starts - indptr[:-1], lengths)
        return SparseRows(data=self.data[picked], indices=self.indices[picked], indptr=indptr, columns=self.columns)


@dataclass(frozen=True)
class RidgeModel:
    """prediction = words . word_weights + dense . dense_weights + bias."""

    word_weights: Vector | Matrix
    dense_weights: Vector | Matrix
    bias: float | Vector

    def predict(self, words: SparseRows, dense: Matrix) -> Vector | Matrix:
        result: Vector | Matrix = words.dot(self.word_weights) + dense @ self.dense_weights + self.bias
        return result


def fit_ridge(
    words: SparseRows, dense: Matrix, target: Vector | Matrix, alpha: float, *, max_iter: int = 400, tol: float = 1e-6
) -> RidgeModel:
    """Minimise |[words dense 1] w - target|^2 + alpha |w|^2 (the intercept barely penalised).

    `target` may be a matrix: one independent fit per column, solved together.
    """
    if dense.shape[0] != words.rows or target.shape[0] != words.rows:
        raise ValueError("words, dense and target must have one row per example")
    ones = np.full((words.rows, 1), _INTERCEPT_COLUMN)
    full = np.hstack([dense, ones])
    split = words.columns

    def normal(w: Vector | Matrix) -> Vector | Matrix:
        predicted = words.dot(w[:split]) + full @ w[split:]
        return np.concatenate([words.transpose_dot(predicted), full.T @ predicted]) + alpha * w

    right = np.concatenate([words.transpose_dot(target), full.T @ target])
    solution = _conjugate_gradients(normal, right, max_iter=max_iter, tol=tol)
    return RidgeModel(
        word_weights=solution[:split],
        dense_weights=solution[split:-1],
        bias=solution[-1] * _INTERCEPT_COLUMN,
    )


def _conjugate_gradients(
    apply: Callable[[Vector | Matrix], Vector | Matrix], right: Vector | Matrix, *, max_iter: int, tol: float
) -> Vector | Matrix:
    """Solve A x = right for a symmetric positive definite A given as a function, each column apart."""
    solution = np.zeros_like(right)
    residual = right.copy()
    direction = residual.copy()
    norm = np.sum(residual * residual, axis=0)
    stop = tol * tol * np.maximum(np.sum(right * right, axis=0), 1e-30)
    for _ in range(max_iter):
        image = apply(direction)
        step = norm / np.maximum(np.sum(direction * image, axis=0), 1e-30)
        solution = solution + direction * step
        residual = residual - image * step
        new_norm = np.sum(residual * residual, axis=0)
        if np.all(new_norm <= stop):
            break
        direction = residual + direction * (new_norm / np.maximum(norm, 1e-30))
        norm = new_norm
    return solution
