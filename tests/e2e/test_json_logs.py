"""`logging: {format: json}` on a real `margin serve`: every line on stderr is one JSON object; a
request's access line names its request id and its principal's ids; no secret (the admin key, a
virtual key, one sent in a URL) ever appears, in any line (issue 21, section 6)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai

from tests.support.processes import free_port, running

ADMIN = "sk-admin-json-logs-0123456789abcdef"
CONFIG = """
logging: {format: json}
server: {admin_key: env:MARGIN_ADMIN_KEY}
auth: required
deployments:
  - {name: small, provider: fake, model: small, price: {input: "1", output: "2"}}
models:
  - {name: cheap, deployments: [small]}
"""


def test_json_lines_name_the_request_and_never_a_secret(tmp_path: Path) -> None:
    config, port, log = tmp_path / "margin.yaml", free_port(), tmp_path / "gateway.log"
    config.write_text(CONFIG)
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--config", str(config), "--port", str(port), "--access-log"]
    env = {"MARGIN_DATA_DIR": str(tmp_path / "data"), "MARGIN_ADMIN_KEY": ADMIN}
    with running(args, f"{url}/healthz", env=env, log=log):
        admin = {"authorization": f"Bearer {ADMIN}"}
        created = httpx.post(f"{url}/admin/keys", json={"name": "bot", "team": "search"}, headers=admin, timeout=10)
        assert created.status_code in (200, 201), created.text
        secret, key_id = created.json()["key"], created.json()["key_id"]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        answer = client.chat.completions.with_raw_response.create(
            model="cheap", messages=[{"role": "user", "content": "hello"}]
        )
        request_id = answer.headers["x-request-id"]
        leaked = httpx.post(f"{url}/v1/chat/completions?api_key={secret}", json={}, timeout=10)
        assert leaked.status_code == 401  # no key in the headers: the one in the URL is only logged, redacted
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # each line is JSON
    text = log.read_text()
    assert secret not in text and ADMIN not in text and secret[len("sk-margin-") :] not in text
    (access,) = [line for line in lines if line.get("request_id") == request_id]
    assert access["logger"] == "uvicorn.access" and access["status"] == 200
    assert access["path"] == "/v1/chat/completions" and access["method"] == "POST"
    assert (access["key_id"], access["team"]) == (key_id, "search")
    redacted = [line for line in lines if str(line.get("path", "")).startswith("/v1/chat/completions?")]
    assert redacted and "[redacted]" in redacted[0]["path"], redacted
    assert any(line["logger"] == "margin" and "config" in line["message"] for line in lines)  # the startup line
