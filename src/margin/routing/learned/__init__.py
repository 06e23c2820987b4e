"""Learned router (RouteLLM-style): scorer plug-ins, threshold policy, calibrator and evaluation.

Importing this package loads no model: embedders load on first use.
"""

from __future__ import annotations

from margin.routing.learned.calibration import CalibrationTable, calibrate
from margin.routing.learned.crossval import HeldOutResult, cross_fold, train_test
from margin.routing.learned.curve import (
    RoutingCurve,
    apgr,
    cpt,
    quality_at_share,
    random_router_curve,
    routing_curve,
    share_for_quality,
)
from margin.routing.learned.evaluation import CurveSummary, Evaluation, evaluate_scores, summarise
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.outcomes import OutcomeFormatError, Outcomes, TierPrices, load_outcomes
from margin.routing.learned.router import LearnedRouter, load_router
from margin.routing.learned.scorer import LinearScorer, ModelFileError, Scorer, load_scorer
from margin.routing.learned.task_heads import TaskHeadScorer
from margin.routing.learned.thresholds import TierChoice, TierThresholds
from margin.routing.learned.training import TrainingConfig, TrainingResult, train_scorer

__all__ = [
    "CalibrationTable",
    "CurveSummary",
    "Evaluation",
    "FeatureSpec",
    "Featurizer",
    "HeldOutResult",
    "LearnedRouter",
    "LinearScorer",
    "ModelFileError",
    "OutcomeFormatError",
    "Outcomes",
    "RoutingCurve",
    "Scorer",
    "TaskHeadScorer",
    "TierChoice",
    "TierPrices",
    "TierThresholds",
    "TrainingConfig",
    "TrainingResult",
    "apgr",
    "calibrate",
    "cpt",
    "cross_fold",
    "evaluate_scores",
    "load_outcomes",
    "load_router",
    "load_scorer",
    "quality_at_share",
    "random_router_curve",
    "routing_curve",
    "share_for_quality",
    "summarise",
    "train_scorer",
    "train_test",
]
