"""`margin cache calibrate`: thresholds from labelled pairs or from the shadow record, recommended
only where the lower confidence bound of precision reaches the target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import orjson

from margin.caching.semantic.calibrate import (
    Calibration,
    Deduplication,
    LabelledPair,
    OperatingPoint,
    ScoredPair,
    by_route,
    choose_threshold,
    deduplicate,
    read_pairs,
    score_pairs,
)
from margin.caching.semantic.engine import SemanticPolicy
from margin.caching.semantic.learned import fit_out_of_fold, pair_table
from margin.caching.semantic.shadow import RouteShadow
from margin.caching.semantic.shadow_report import route_quality
from margin.cli.progress import Progress, progress
from margin.embedding import Embedder, EmbedderUnavailableError, HashingEmbedder, MiniLMEmbedder

Results = dict[str, tuple[Calibration, Calibration]]  # route -> (guarded, cosine only)
_BATCH = 64  # pairs embedded at once


def calibrate_pairs(
    pairs_path: Path, *, target: float, confidence: float, routes: Sequence[str], embedder: str
) -> tuple[Results, Deduplication]:
    try:
        pairs, dedup = deduplicate(read_pairs(pairs_path))
        model = _embedder(embedder)
    except (ValueError, EmbedderUnavailableError) as error:
        raise click.ClickException(str(error)) from None
    grouped = {r: p for r, p in by_route(pairs).items() if not routes or r in routes}
    if not grouped:
        raise click.ClickException("no labelled pairs for the requested routes (after deduplication)")
    results: Results = {}
    with progress(sum(len(p) for p in grouped.values()), "embedding pairs") as bar:
        for route in sorted(grouped):
            results[route] = both(_scored(grouped[route], model, bar), target, confidence)
    return results, dedup


def fit_learned(
    pairs_path: Path, out: Path, *, target: float, confidence: float, routes: Sequence[str], embedder: str
) -> tuple[Calibration, str]:
    """Fit the learned decision on labelled pairs, write it to `out`, and choose `min_probability`
    with the confidence bound on out-of-fold probabilities (each from a model that never saw the pair)."""
    try:
        pairs, dedup = deduplicate(read_pairs(pairs_path))
        pairs = [p for p in pairs if not routes or p.route in routes]
        table = pair_table([(p.a, p.b, p.same) for p in pairs], _embedder(embedder))
        source = f"{len(pairs)} labelled pairs of {pairs_path.name} (margin cache calibrate --fit-learned)"
        fitted = fit_out_of_fold(table, trained_on=source)
    except (ValueError, EmbedderUnavailableError) as error:
        raise click.ClickException(f"cannot fit the learned decision: {error}") from None
    out.write_bytes(fitted.model.to_json())
    scored = [ScoredPair(p, True, same) for p, same in zip(fitted.probabilities, fitted.same, strict=True)]
    result = choose_threshold(scored, target, guard=True, confidence=confidence, variable="min_probability")
    lines = [
        _dedup_line(dedup),
        f"learned decision fitted on {len(fitted.same)} guard-passing pairs with cosine >= {fitted.model.floor}, "
        f"written to {out}",
    ]
    if result.refusal is not None:
        return result, "\n".join([*lines, f"refused: {result.refusal}"])
    point = result.best
    lines += [
        f"min_probability {point.threshold:.4f} (out-of-fold): precision {point.precision:.4f}, "
        f"{confidence:.0%} lower bound {point.precision_lower_bound:.3f}, {point.served} hits, {point.wrong} wrong",
        "",
        "suggested config (keep `mode: shadow` until the route's own traffic confirms it, then calibrate "
        "min_probability with --from-shadow):",
        "      semantic:",
        "        decision: learned",
        f"        learned_model: {out}",
        f"        min_probability: {min(0.9999, round(point.threshold, 4))}",
    ]
    return result, "\n".join(lines)


def _scored(pairs: Sequence[LabelledPair], model: Embedder, bar: Progress) -> list[ScoredPair]:
    """`score_pairs`, a batch at a time so the bar moves (each pair is scored on its own)."""
    scored: list[ScoredPair] = []
    for start in range(0, len(pairs), _BATCH):
        chunk = pairs[start : start + _BATCH]
        scored += score_pairs(chunk, model, batch=_BATCH)
        bar.advance(len(chunk))
    return scored


def both(scored: Sequence[ScoredPair], target: float, confidence: float) -> tuple[Calibration, Calibration]:
    return (
        choose_threshold(scored, target, guard=True, confidence=confidence),
        choose_threshold(scored, target, guard=False, confidence=confidence),
    )


def _embedder(name: str) -> Embedder:
    if name == "hashing":
        return HashingEmbedder()
    embedder = MiniLMEmbedder(threads=2)
    embedder.load()
    return embedder


def report(results: Results, dedup: Deduplication | None, *, target: float, confidence: float, as_json: bool) -> str:
    if as_json:
        body: dict[str, object] = {r: _calibration_json(g, b) for r, (g, b) in results.items()}
        if dedup is not None:
            body["_pairs"] = _dedup_json(dedup)
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    table = _calibration_table(results, target, confidence)
    return table if dedup is None else f"{_dedup_line(dedup)}\n{table}"


def refused(results: Results) -> bool:
    """A route is refused when the decision the gateway uses (guarded) gets no recommendation."""
    return any(guarded.recommended is None for guarded, _ in results.values())


def _point_json(point: OperatingPoint) -> dict[str, object]:
    return {
        "threshold": round(min(point.threshold, 1.0), 4),
        "precision": round(point.precision, 4),
        "precision_lower_bound": round(point.precision_lower_bound, 4),
        "confidence": point.confidence,
        "hit_rate_of_duplicates": round(point.recall, 4),
        "false_hit_rate": round(point.false_hit_rate, 4),
        "served": point.served,
        "wrong": point.wrong,
    }


def _calibration_json(guarded: Calibration, plain: Calibration) -> dict[str, object]:
    def one(result: Calibration) -> dict[str, object]:
        return {
            "recommended": result.recommended is not None,
            **_point_json(result.best),
            "pairs": result.pairs,
            "more_pairs_needed": result.more_pairs_needed,
            "refusal": result.refusal,
        }

    return {"guarded": one(guarded), "cosine_only": one(plain)}


def _dedup_json(dedup: Deduplication) -> dict[str, int]:
    return {
        "read": dedup.read,
        "kept": dedup.kept,
        "identical": dedup.identical,
        "repeated": dedup.repeated,
        "conflicting": dedup.conflicting,
    }


def _dedup_line(dedup: Deduplication) -> str:
    return (
        f"{dedup.read} pairs read, {dedup.kept} kept: dropped {dedup.identical} identical after normalisation "
        f"(the exact cache's job), {dedup.repeated} repeated, {dedup.conflicting} labelled both ways"
    )


def _calibration_table(results: Results, target: float, confidence: float) -> str:
    bound = f">={confidence:.0%}"
    lines = [
        f"target precision {target:.3f} at the {confidence:.0%} one-sided lower bound (precision = share of served "
        "hits that are right; hit rate = share of true duplicates served)",
        f"{'route':<20} {'mode':<12} {'threshold':>9} {'precision':>9} {bound:>7} {'hit rate':>8} {'wrong':>6} "
        f"{'pairs':>6}  verdict",
    ]
    snippet = ["cache:", "  routes:"]
    refusals = []
    for route, (guarded, plain) in results.items():
        for mode, result in (("guarded", guarded), ("cosine-only", plain)):
            point = result.best
            verdict = "recommended" if result.recommended is not None else "refused"
            lines.append(
                f"{route:<20} {mode:<12} {min(point.threshold, 1.0):>9.4f} {point.precision:>9.4f} "
                f"{point.precision_lower_bound:>7.3f} {point.recall:>8.3f} {point.wrong:>6} {result.pairs:>6}"
                f"  {verdict}"
            )
        if guarded.refusal is not None:
            refusals.append(f"{route}: {guarded.refusal}")
            continue
        name = "<every route>" if route == "*" else route
        snippet += [
            f"    {name}:",
            "      semantic:",
            f"        threshold: {min(1.0, round(guarded.best.threshold, 4))}",
        ]
    if refusals:
        lines += ["", "refused (guarded: the decision the gateway uses):", *refusals]
    if len(snippet) > 2:
        lines += ["", "suggested config (keep `mode: shadow` until the route's own traffic confirms it):", *snippet]
    return "\n".join(lines)


def shadow_summary(shadow: RouteShadow, policy: SemanticPolicy | None) -> dict[str, object]:
    """What a route in shadow mode would have served at its configured decision, and how right."""
    return route_quality(shadow, policy).as_json()


def shadow_table(rows: list[dict[str, object]], *, as_json: bool) -> str:
    if as_json:
        return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()
    lines = [
        "would-be hits at each route's configured decision (cosine threshold, guard applied; or the learned "
        "decision's min_probability), graded against the fresh answer",
        f"{'route':<20} {'mode':<7} {'decision at':<14} {'lookups':>8} {'would hit':>9} {'hit rate':>8} "
        f"{'agreed':>7} {'precision':>9} {'>=95%':>6}",
    ]
    for r in rows:
        precision = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        at = f"p>={r['min_probability']}" if r["decision"] == "learned" else f"cos>={r['threshold']}"
        lines.append(
            f"{r['route']!s:<20} {r['mode']!s:<7} {at:<14} {r['lookups']!s:>8} {r['would_hit']!s:>9} "
            f"{r['hit_rate']!s:>8} {r['agreed']!s:>7} {precision:>9} {r['precision_lower_bound']!s:>6}"
        )
    return "\n".join(lines)


def calibrate_learned(routes: dict[str, RouteShadow], target: float, confidence: float) -> dict[str, Calibration]:
    """`min_probability` per learned route from its shadow record (each would-be hit's probability)."""
    return {
        route: choose_threshold(shadow.learned, target, guard=True, confidence=confidence, variable="min_probability")
        for route, shadow in sorted(routes.items())
    }


def learned_report(results: dict[str, Calibration], *, as_json: bool) -> str:
    """The learned routes' recommendations: a `min_probability` with its bound, or the refusal."""
    if as_json:
        body = {r: {"learned": _learned_json(c)} for r, c in results.items()}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    lines = [
        "routes with the learned decision (calibrated on each would-be hit's probability):",
        f"{'route':<20} {'min_probability':>15} {'precision':>9} {'>=bound':>7} {'hits':>6} {'wrong':>6} "
        f"{'graded':>6}  verdict",
    ]
    snippet, refusals = ["cache:", "  routes:"], []
    for route, result in results.items():
        point = result.best
        verdict = "recommended" if result.recommended is not None else "refused"
        lines.append(
            f"{route:<20} {min(point.threshold, 1.0):>15.4f} {point.precision:>9.4f} "
            f"{point.precision_lower_bound:>7.3f} {point.served:>6} {point.wrong:>6} {result.pairs:>6}  {verdict}"
        )
        if result.refusal is not None:
            refusals.append(f"{route}: {result.refusal}")
            continue
        name = "<every route>" if route == "*" else route
        value = min(0.9999, round(point.threshold, 4))
        snippet += [f"    {name}:", "      semantic:", "        decision: learned", f"        min_probability: {value}"]
    if refusals:
        lines += ["", "refused:", *refusals]
    if len(snippet) > 2:
        lines += ["", "suggested config (then change `mode: shadow` to `mode: serve` to serve):", *snippet]
    return "\n".join(lines)


def _learned_json(result: Calibration) -> dict[str, object]:
    point = _point_json(result.best)
    point["min_probability"] = point.pop("threshold")
    return {
        "recommended": result.recommended is not None,
        **point,
        "pairs": result.pairs,
        "more_pairs_needed": result.more_pairs_needed,
        "refusal": result.refusal,
    }
