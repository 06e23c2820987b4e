"""`margin batch`: submit a JSONL file to a running gateway's Batch API and follow it (status, list,
results, cancel, retry of the failed lines). The same calls an OpenAI SDK makes (docs/batch.md)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from margin.cli.batch_client import BatchClient
from margin.cli.help import examples
from margin.cli.progress import progress
from margin.cli.report import CONFIG_OPTION
from margin.config.environment import EVAL_API_KEY

T = TypeVar("T")
FINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")

_url = click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="The running margin.")
_key = click.option("--api-key", envvar=EVAL_API_KEY.name, default=None, help="The virtual key (MARGIN_API_KEY).")


def _run(url: str, api_key: str | None, work: Callable[[BatchClient], Awaitable[T]]) -> T:
    async def main() -> T:
        client = BatchClient(url, api_key)
        try:
            return await work(client)
        except ConnectionError as exc:
            raise click.ClickException(f"cannot reach {url}: {exc}") from None
        finally:
            await client.aclose()

    return asyncio.run(main())


@click.group(
    epilog=examples(
        "margin batch quote requests.jsonl --config margin.yaml   # cost per tier before anything runs",
        "margin batch submit requests.jsonl --endpoint /v1/chat/completions --wait",
        "margin batch status batch_abc123",
        "margin batch results batch_abc123 --out answers.jsonl",
        "margin batch results batch_abc123 --errors",
        "margin batch retry batch_abc123            # a new batch of the lines that did not succeed",
    )
)
def batch() -> None:
    """Batches on a running gateway: submit, follow, fetch results, cancel, retry."""


@batch.command(
    epilog=examples(
        "margin batch submit requests.jsonl --endpoint /v1/chat/completions --wait",
        "margin batch submit vectors.jsonl --endpoint /v1/embeddings --metadata job=nightly",
    )
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", type=click.Choice(ENDPOINTS), default="/v1/chat/completions", show_default=True)
@click.option("--window", default="24h", show_default=True, help="completion_window")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Attach metadata (repeatable).")
@click.option("--wait", is_flag=True, help="Follow the batch to its end with a progress bar.")
@_url
@_key
def submit(file: Path, endpoint: str, window: str, metadata: tuple[str, ...], wait: bool, url: str,
           api_key: str | None) -> None:  # fmt: skip
    """Upload FILE (JSONL, one request per line) and create a batch of it."""
    tags = dict(item.split("=", 1) for item in metadata if "=" in item)

    async def work(client: BatchClient) -> dict[str, Any]:
        uploaded = await client.upload(file)
        body = {"input_file_id": uploaded["id"], "endpoint": endpoint, "completion_window": window}
        created = await client.call("POST", "/v1/batches", {**body, "metadata": tags or None})
        click.echo(f"{created['id']}: {created['status']} (file {uploaded['id']}, {uploaded['bytes']:,} bytes)")
        return await _follow(client, created) if wait else created

    ended = _run(url, api_key, work)
    if wait:
        click.echo(_summary(ended))
        sys.exit(0 if ended["status"] == "completed" else 1)


async def _follow(client: BatchClient, batch: dict[str, Any], every_s: float = 1.0) -> dict[str, Any]:
    """Poll `batch` to its end; a progress bar of its lines on a terminal (docs: margin.cli.progress)."""
    while batch["status"] == "validating":
        await asyncio.sleep(every_s)
        batch = await client.call("GET", f"/v1/batches/{batch['id']}")
    with progress(batch["request_counts"]["total"], "lines") as bar:
        shown = 0
        while True:
            counts = batch["request_counts"]
            done = counts["completed"] + counts["failed"]
            bar.advance(done - shown)
            shown = done
            if batch["status"] in FINAL:
                return batch
            await asyncio.sleep(every_s)
            batch = await client.call("GET", f"/v1/batches/{batch['id']}")


def _summary(batch: dict[str, Any]) -> str:
    counts, extra = batch["request_counts"], batch.get("margin") or {}
    parts = [
        f"{batch['id']}: {batch['status']}",
        f"{counts['completed']}/{counts['total']} succeeded, {counts['failed']} failed",
        f"cost ${extra.get('cost_usd', '?')}",
    ]
    if extra.get("paused"):
        parts.append(
            f"paused ({extra['paused']}) until {time.strftime('%H:%M:%S', time.localtime(extra['paused_until']))}"
        )
    for name in ("output_file_id", "error_file_id"):
        if batch.get(name):
            parts.append(f"{name.removesuffix('_id')}: {batch[name]}")
    errors = (batch.get("errors") or {}).get("data") or []
    lines = [" | ".join(parts)]
    lines += [f"  line {e.get('line')}: {e.get('code')}: {e.get('message')}" for e in errors[:20]]
    if len(errors) > 20:
        lines.append(f"  ... and {len(errors) - 20} more")
    return "\n".join(lines)


@batch.command(
    epilog=examples(
        "margin batch quote requests.jsonl --config margin.yaml",
        "margin batch quote requests.jsonl --expected-output-tokens 200",
    )
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--expected-output-tokens",
    type=click.IntRange(0),
    default=None,
    help="Output tokens per request for the expected figure (default: the ledger's mean per deployment).",
)
@CONFIG_OPTION
def quote(file: Path, expected_output_tokens: int | None, config_path: Path | None) -> None:
    """Worst-case and expected cost of FILE on each deployment that may answer it (no gateway needed)."""
    from margin.cli.batch_quote import run_quote  # the price book and the ledger only when quoting

    run_quote(file, expected_output_tokens, config_path)


@batch.command(
    epilog=examples(
        "margin batch status batch_abc123 --url http://127.0.0.1:8080",
    )
)
@click.argument("batch_id")
@_url
@_key
def status(batch_id: str, url: str, api_key: str | None) -> None:
    """One batch: status, counts, cost so far, files, validation errors."""
    click.echo(_summary(_run(url, api_key, lambda c: c.call("GET", f"/v1/batches/{batch_id}"))))


@batch.command(
    name="list",
    epilog=examples(
        "margin batch list --limit 5",
    ),
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@_url
@_key
def list_batches(limit: int, url: str, api_key: str | None) -> None:
    """The key's batches, newest first."""
    page = _run(url, api_key, lambda c: c.call("GET", f"/v1/batches?limit={limit}"))
    for item in page["data"]:
        counts = item["request_counts"]
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(item["created_at"]))
        click.echo(f"{item['id']}  {created}  {item['status']:<11} {counts['completed']}/{counts['total']}  "
                   f"{item['endpoint']}")  # fmt: skip


@batch.command(
    epilog=examples(
        "margin batch results batch_abc123 --out answers.jsonl",
        "margin batch results batch_abc123 --errors",
    )
)
@click.argument("batch_id")
@click.option("--errors", is_flag=True, help="The error file (failed, expired, cancelled lines) instead.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here (default stdout)."
)
@_url
@_key
def results(batch_id: str, errors: bool, out: Path | None, url: str, api_key: str | None) -> None:
    """A finished batch's output (or error) file, streamed."""

    async def work(client: BatchClient) -> None:
        found = await client.call("GET", f"/v1/batches/{batch_id}")
        if found["status"] not in FINAL:
            raise click.ClickException(f"{batch_id} is {found['status']}: its results exist once it has ended.")
        file_id = found["error_file_id" if errors else "output_file_id"]
        if file_id is None:
            click.echo(f"{batch_id} has no {'error' if errors else 'output'} lines.", err=True)
            return
        sink = out.open("wb") if out is not None else sys.stdout.buffer
        try:
            async for block in client.content(file_id):
                sink.write(block)
        finally:
            if out is not None:
                sink.close()

    _run(url, api_key, work)


@batch.command(
    epilog=examples(
        "margin batch cancel batch_abc123",
    )
)
@click.argument("batch_id")
@_url
@_key
def cancel(batch_id: str, url: str, api_key: str | None) -> None:
    """Start no new line; what finished is delivered."""
    click.echo(_summary(_run(url, api_key, lambda c: c.call("POST", f"/v1/batches/{batch_id}/cancel"))))


@batch.command(
    epilog=examples(
        "margin batch retry batch_abc123 --wait",
    )
)
@click.argument("batch_id")
@click.option("--wait", is_flag=True, help="Follow the new batch to its end.")
@_url
@_key
def retry(batch_id: str, wait: bool, url: str, api_key: str | None) -> None:
    """A new batch of a finished batch's lines that did not succeed (the successes stay paid once)."""

    async def work(client: BatchClient) -> dict[str, Any]:
        created = await client.call("POST", f"/v1/batches/{batch_id}/retry_failed")
        click.echo(f"{created['id']}: {created['status']} (retry of {batch_id})")
        return await _follow(client, created) if wait else created

    click.echo(_summary(_run(url, api_key, work)))
