"""`margin router train|eval|score`: fit a learned-router scorer from per-prompt outcomes, measure it,
and write its per-prompt scores for checking with other tools."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import click
import numpy as np
from numpy.typing import NDArray

from margin.cli.help import examples
from margin.cli.progress import progress
from margin.embedding import EmbedderUnavailableError
from margin.routing.learned.features import EMBEDDER_KINDS, FeatureSpec, Featurizer
from margin.routing.learned.outcomes import OutcomeFormatError, Outcomes, TierPrices, concat_outcomes, load_outcomes
from margin.routing.learned.scorer import ModelFileError


@click.group(
    epilog=examples(
        "margin router train outcomes.jsonl --out router.npz --fold 1 --fold 2 --fold 3",
        "margin router eval outcomes.jsonl --model router.npz --fold 4 --html eval.html",
        "margin router score outcomes.jsonl --model router.npz --out scores.csv --strong-share 0.3",
    )
)
def router() -> None:
    """Train and evaluate the learned tier router (data format: docs/routing.md)."""


def _select(
    data: Path, benchmarks: tuple[str, ...], folds: tuple[int, ...], contaminated: bool, more: tuple[Path, ...] = ()
) -> Outcomes:
    try:
        loaded = concat_outcomes([load_outcomes(path) for path in (data, *more)])
    except OutcomeFormatError as error:
        raise click.ClickException(str(error)) from error
    present = loaded.fold_names()
    missing = sorted(set(folds) - set(present))
    if missing:
        # A typo'd fold would otherwise train or evaluate on nothing, or on less than was meant.
        raise click.ClickException(
            f"--fold {', '.join(map(str, missing))}: not in {data} (its folds: {', '.join(map(str, present))})"
        )
    outcomes = loaded.select(benchmarks=benchmarks or None, folds=folds or None, include_contaminated=contaminated)
    if len(outcomes) == 0:
        raise click.ClickException("no rows left after filtering by benchmark/fold/contamination")
    return outcomes


_FEATURE_BATCH = 256  # prompts embedded at once while training
_data_argument = click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
_benchmark_option = click.option("--benchmark", "benchmarks", multiple=True, help="Keep only this benchmark.")
_fold_option = click.option(
    "--fold", "folds", multiple=True, type=int, help="Keep only this fold (as the file numbers them; repeatable)."
)
_contaminated_option = click.option(
    "--include-contaminated", is_flag=True, help="Keep rows flagged as contaminated (dropped by default)."
)


@router.command(
    epilog=examples(
        "margin router train outcomes.jsonl --out router.npz",
        "margin router train outcomes.jsonl --out router.npz --fold 1 --fold 2 --fold 3   # keep fold 4 to evaluate",
        "margin router train outcomes.jsonl --out router.npz --embedder hashing           # no extra needed",
        "# with a tuned student's measured outcomes (the student as the weak tier, its teacher as the strong)",
        "margin router train outcomes.jsonl --add DATA_DIR/tuning/jobs/JOB/promotion/router-outcomes.jsonl --out r.npz",
    )
)
@_data_argument
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Model file.")
@click.option(
    "--embedder",
    type=click.Choice(EMBEDDER_KINDS),
    default="static",
    show_default=True,
    help="static: distilled MiniLM token vectors (fast, default); minilm: contextual MiniLM (slow); "
    "hashing: char n-grams (no extra needed); none: lexical features only.",
)
@click.option("--no-lexical", is_flag=True, help="Do not add length/digit/maths lexical features.")
@click.option(
    "--add",
    "more",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="More outcomes in the same format, appended to DATA (repeatable): e.g. a tuned student's measured "
    "outcomes against its teacher, which `margin tune promote` writes (docs/tuning.md).",
)
@_benchmark_option
@_fold_option
@_contaminated_option
def train(
    data: Path,
    out: Path,
    embedder: str,
    no_lexical: bool,
    more: tuple[Path, ...],
    benchmarks: tuple[str, ...],
    folds: tuple[int, ...],
    include_contaminated: bool,
) -> None:
    """Fit a scorer on DATA (JSONL outcomes) and save it, with its calibration table, to --out."""
    from margin.routing.learned.training import TrainingConfig, train_scorer

    outcomes = _select(data, benchmarks, folds, include_contaminated, more)
    spec = FeatureSpec(embedder=embedder, lexical=not no_lexical)  # type: ignore[arg-type]  # click.Choice
    try:
        featurizer = Featurizer(spec)
        features = _features(featurizer, outcomes.prompts)
        result = train_scorer(outcomes, TrainingConfig(features=spec), featurizer=featurizer, features=features)
    except EmbedderUnavailableError as error:
        raise click.ClickException(f"{error} (or train with --embedder hashing)") from error
    result.scorer.save(out)
    click.echo(
        f"trained {result.scorer.name} on {len(outcomes)} prompts: "
        f"l2 {', '.join(f'{task}={value:g}' for task, value in result.l2.items())}, "
        f"out-of-fold APGR {result.out_of_fold_apgr:.3f}; saved {out}"
    )


def _features(featurizer: Featurizer, prompts: Sequence[str]) -> NDArray[np.float64]:
    """The prompts' feature rows, a batch at a time under a progress bar (embedding is the slow
    part of training; each row depends on its own prompt only)."""
    rows = []
    with progress(len(prompts), "embedding prompts") as bar:
        for start in range(0, len(prompts), _FEATURE_BATCH):
            batch = prompts[start : start + _FEATURE_BATCH]
            rows.append(featurizer.transform(batch))
            bar.advance(len(batch))
    return np.vstack(rows)


@router.command(
    name="eval",
    epilog=examples(
        "margin router eval outcomes.jsonl --model router.npz --fold 4",
        "margin router eval outcomes.jsonl --model router.npz --json",
        "margin router eval outcomes.jsonl --model router.npz --html eval.html --strong-price 3 15",
    ),
)
@_data_argument
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--weak-price", nargs=2, type=float, default=(0.6, 0.6), show_default=True, help="USD/Mtok in out")
@click.option("--strong-price", nargs=2, type=float, default=(10.0, 30.0), show_default=True, help="USD/Mtok in out")
@_benchmark_option
@_fold_option
@_contaminated_option
def evaluate(
    data: Path,
    model: Path,
    html_out: Path | None,
    as_json: bool,
    weak_price: tuple[float, float],
    strong_price: tuple[float, float],
    benchmarks: tuple[str, ...],
    folds: tuple[int, ...],
    include_contaminated: bool,
) -> None:
    """Print the cost-quality curve of --model on DATA: PGR vs strong share and dollars, APGR, CPT.

    Evaluate on prompts the model was not trained on (e.g. train with --fold 1 --fold 2 --fold 3,
    evaluate with --fold 4), or the numbers are optimistic.
    """
    from margin.routing.learned.evaluation import evaluate_scores
    from margin.routing.learned.report import render_html, render_text, summary_dict
    from margin.routing.learned.scorer import load_scorer

    outcomes = _select(data, benchmarks, folds, include_contaminated)
    try:
        scorer = load_scorer(model)
        scores = scorer.score(outcomes.prompts)
    except (ModelFileError, EmbedderUnavailableError) as error:
        raise click.ClickException(str(error)) from error
    prices = TierPrices(*weak_price, *strong_price)
    try:
        evaluation = evaluate_scores(scores, outcomes, prices)
        title = f"margin router eval: {scorer.name} on {', '.join(outcomes.benchmark_names())}"
        text = render_text(evaluation, title)
    except ValueError as error:  # e.g. both tiers equally good: PGR undefined
        raise click.ClickException(str(error)) from error
    if as_json:
        payload = {
            "router": summary_dict(evaluation.router_summary),
            "random": summary_dict(evaluation.random_summary),
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(text)
    if html_out is not None:
        html_out.write_text(render_html(evaluation, title), encoding="utf-8")
        click.echo(f"wrote {html_out}", err=as_json)


@router.command(
    epilog=examples(
        "margin router score outcomes.jsonl --model router.npz --out scores.csv",
        "margin router score outcomes.jsonl --model router.npz --out scores.csv --strong-share 0.3",
    )
)
@_data_argument
@click.option("--model", "model", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file.")
@click.option(
    "--strong-share",
    type=click.FloatRange(0.0, 1.0),
    help="Also write the tier each prompt gets at this calibrated strong share (column `tier`).",
)
@_benchmark_option
@_fold_option
@_contaminated_option
def score(
    data: Path,
    model: Path,
    out: Path,
    strong_share: float | None,
    benchmarks: tuple[str, ...],
    folds: tuple[int, ...],
    include_contaminated: bool,
) -> None:
    """Write --model's score for every prompt of DATA to a CSV (one row per prompt, in file order).

    Columns: id, benchmark, category, fold, score, weak_score, strong_score (and tier with
    --strong-share). A higher score means the strong tier is more likely to do better.
    """
    from margin.routing.learned.router import load_router

    outcomes = _select(data, benchmarks, folds, include_contaminated)
    try:
        shares = None if strong_share is None else [strong_share]
        loaded = load_router(model, strong_shares=shares)
        scores = loaded.scorer.score(outcomes.prompts)
    except (ModelFileError, EmbedderUnavailableError) as error:
        raise click.ClickException(str(error)) from error
    tiers = [choice.tier for choice in loaded.thresholds.choose_many(scores.tolist())] if shares else None
    with out.open("w", encoding="utf-8", newline="") as handle:
        _write_scores(handle, outcomes, scores.tolist(), tiers)
    strong = f"; {sum(t == 'strong' for t in tiers) / len(tiers):.1%} strong" if tiers else ""
    click.echo(f"scored {len(outcomes)} prompts with {loaded.scorer.name}{strong}; wrote {out}")


def _write_scores(handle: TextIO, outcomes: Outcomes, scores: list[float], tiers: list[str] | None) -> None:
    writer = csv.writer(handle)
    header = ["id", "benchmark", "category", "fold", "score", "weak_score", "strong_score"]
    writer.writerow(header + (["tier"] if tiers else []))
    for i, value in enumerate(scores):
        row = [
            outcomes.ids[i],
            outcomes.benchmarks[i],
            outcomes.categories[i],
            int(outcomes.fold[i]),
            f"{value:.6f}",
            f"{outcomes.weak_score[i]:g}",
            f"{outcomes.strong_score[i]:g}",
        ]
        writer.writerow(row + ([tiers[i]] if tiers else []))
