"""`margin fake-upstream`: a scriptable OpenAI/Anthropic-compatible server for tests and benchmarks."""

from __future__ import annotations

import click

from margin.cli.help import examples


@click.command(
    "fake-upstream",
    epilog=examples(
        "margin fake-upstream --port 9090                        # echoes the last user message",
        "margin fake-upstream --content 'scripted answer' --chunks 4 --chunk-delay-ms 20",
        "margin fake-upstream --fault 'flaky=status=503,times=1'  # model flaky fails once, then answers",
        "margin fake-upstream --cold-for-s 5                     # refuses connections 5 s, then serves",
    ),
)
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=9090)
@click.option("--content", default=None, help="Fixed answer text (default: echo the last user message).")
@click.option("--chunks", type=int, default=8, help="Content events per streamed answer.")
@click.option("--chunk-delay-ms", type=float, default=0.0, help="Pause between streamed events.")
@click.option(
    "--cold-for-s",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Refuse connections this many seconds before listening (a server scaled to zero, starting).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="MODEL=SPEC",
    help="Scripted fault for a model, e.g. 'flaky=status=503,times=1' (repeatable).",
)
def fake_upstream(
    host: str,
    port: int,
    content: str | None,
    chunks: int,
    chunk_delay_ms: float,
    cold_for_s: float,
    faults: tuple[str, ...],
) -> None:
    """Run the fake upstream server. See margin.providers.fake.faults for the fault language."""
    from margin.providers.fake.engine import FakeBehaviour
    from margin.providers.fake.faults import Fault
    from margin.providers.fake.server import run_fake_upstream

    scripted: dict[str, str] = {}
    for item in faults:
        model, sep, spec = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected MODEL=SPEC, got {item!r}", param_hint="--fault")
        try:
            Fault.parse(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fault") from None
        scripted[model] = spec
    click.echo(f"fake upstream on http://{host}:{port}/v1", err=True)
    run_fake_upstream(
        host,
        port,
        behaviour=FakeBehaviour(content=content, chunks=chunks),
        faults=scripted,
        chunk_delay_s=chunk_delay_ms / 1000,
        cold_for_s=cold_for_s,
    )
