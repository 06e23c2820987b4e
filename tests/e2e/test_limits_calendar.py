"""A monthly budget resets at local midnight on the 1st in the configured time zone, not at UTC
midnight: the gateway runs with a frozen clock (create_app's `clock`) over its real SQLite stores."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from margin.app import create_app
from margin.config import parse_config
from margin.providers.fake.adapter import FakeProvider

ZONE = ZoneInfo("America/New_York")
ADMIN = "calendar-admin-key"


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=ZONE).timestamp()  # type: ignore[misc]


async def test_monthly_budget_resets_at_local_midnight(tmp_path: Path) -> None:
    now = [at(2026, 1, 31, 18, 0, 0)]
    config = parse_config(f"""
deployments:
  - {{name: up, provider: fake, model: fake, price: {{input: "1000", output: "1000"}}}}
models:
  - {{name: chat, deployments: [up]}}
data_dir: {tmp_path}
server: {{admin_key: {ADMIN}}}
cache: {{enabled: false}}
limits: {{timezone: America/New_York}}
""")
    providers = {d.name: FakeProvider(d) for d in config.deployments}
    app = create_app(config, providers=providers, clock=lambda: now[0])
    body = {"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hello world"}]}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            created = await http.post(
                "/admin/keys",
                json={"budget": {"limit_usd": "0.05", "window": "month"}},
                headers={"authorization": f"Bearer {ADMIN}"},
            )
            headers = {"authorization": f"Bearer {created.json()['key']}"}

            async def status() -> httpx.Response:
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                await app.state.gateway.pipeline.limits.limiter.drain()
                return response

            while (response := await status()).status_code == 200:
                pass
            assert response.status_code == 402
            assert response.json()["error"]["reset_at"] == "2026-02-01T05:00:00Z"  # midnight in New York
            spent = providers["up"].calls

            now[0] = at(2026, 1, 31, 19, 0, 1)  # UTC midnight has passed: not this budget's boundary
            assert (await status()).status_code == 402
            now[0] = at(2026, 1, 31, 23, 59, 59)
            assert (await status()).status_code == 402
            now[0] = at(2026, 2, 1, 0, 0, 0)  # the 1st, local midnight: a new month
            assert (await status()).status_code == 200
            assert providers["up"].calls == spent + 1
            budgets = await http.get("/admin/budgets/status", headers={"authorization": f"Bearer {ADMIN}"})
            (entry,) = budgets.json()["data"]
            assert entry["reset_at"] == "2026-03-01T05:00:00Z" and entry["window"] == "month@America/New_York"
