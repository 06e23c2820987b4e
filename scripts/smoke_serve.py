"""The README's first command, checked: `margin serve` on the embedded default answers the official SDKs.

Starts the given `margin` entry point with no config file, no API keys and a fresh data directory, waits
until the local model is ready, then sends one chat completion through the openai SDK, one message
through the anthropic SDK and, when the default lists a local embedding model, one embedding request.
Exits non-zero with the server's log on any failure.

    python scripts/smoke_serve.py --margin .venv-serve/bin/margin
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx
import openai

SECRET_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MARGIN_ADMIN_KEY", "MARGIN_CONFIG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"margin serve exited with status {server.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"margin serve was not ready at {url} within {timeout_s:.0f} s")


def exercise(base_url: str) -> None:
    chat = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    reply = chat.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0
    )
    text = reply.choices[0].message.content or ""
    assert text.strip(), "the openai SDK got an empty answer"
    print(f"openai    {reply.model}: {text.strip()[:60]!r}")

    claude = anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
    message = claude.messages.create(
        model="smollm2", max_tokens=16, messages=[{"role": "user", "content": "Say hello."}]
    )
    first = message.content[0]
    assert first.type == "text" and first.text.strip(), "the anthropic SDK got an empty answer"
    print(f"anthropic {message.model}: {first.text.strip()[:60]!r}")

    embedding_models = [m.id for m in chat.models.list() if "minilm" in m.id.lower()]
    if embedding_models:
        vectors = chat.embeddings.create(model=embedding_models[0], input=["hello world"])
        assert len(vectors.data[0].embedding) > 0, "the embedding came back empty"
        print(f"embedding {vectors.model}: {len(vectors.data[0].embedding)} dimensions")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin", default="margin", help="the margin entry point to run")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    args = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="margin-smoke-") as tmp:
        env["MARGIN_DATA_DIR"] = str(Path(tmp) / "data")
        log_path = Path(tmp) / "serve.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [args.margin, "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_ready(f"{base_url}/readyz", server, args.ready_timeout)
                exercise(base_url)
            except (AssertionError, SystemExit, openai.OpenAIError, anthropic.AnthropicError):
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
                raise
            finally:
                server.terminate()
                server.wait(15)
    print("margin serve: embedded default answered the openai and anthropic SDKs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
