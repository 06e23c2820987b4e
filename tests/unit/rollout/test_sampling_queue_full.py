"""A production sample whose bounded queue is full is not kept, never waited for, and counted in
`margin_production_samples_skipped_total{why="queue_full"}` (docs/metrics.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from margin.app import create_app
from margin.config import parse_config
from margin.rollout.sampling import SampleJob
from margin.storage.memory import MemoryKeyStore
from tests.unit.rollout.test_rollout_gateway import stage_of

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
rollouts: {{grading_queue: 1}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - name: chat
    deployments: [big]
    sample: {{share: 1.0}}
"""


async def test_a_full_sampling_queue_drops_and_counts(tmp_path: Path) -> None:
    app = create_app(parse_config(CONFIG.format(data=tmp_path)), key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        stage = stage_of(app)
        assert stage.sampler is not None
        gate = asyncio.Event()
        write = stage.sampling.run

        async def held(job: SampleJob) -> None:  # the store is slow: the one worker waits on its first write
            await gate.wait()
            await write(job)

        stage.sampling.run = held
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            for i in range(6):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"question {i}"}]}
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        dropped = stage.sampler.skipped.get("queue_full", 0)
        assert dropped >= 4  # one in the worker's hands, one in the queue (size 1), the rest dropped
        gate.set()
        await stage.sampling.queue.join()
        kept = await stage.engine.service.store.samples("chat", limit=10)
        assert len(kept) == 6 - dropped
        metrics = app.state.gateway.metrics.render().decode()
        line = f'margin_production_samples_skipped_total{{model_group="chat",why="queue_full"}} {float(dropped)}'
        assert line in metrics
