"""The first-tokens buffer on its own: what counts, when it releases, what a drop resets; and its
`streaming:` settings."""

from __future__ import annotations

import pytest

from margin.config import parse_config
from margin.config.streaming import StreamingConfig
from margin.errors import ConfigError
from margin.pipeline.meter import estimate_text_tokens
from margin.pipeline.stream_buffer import FirstTokensHold, output_tokens
from margin.types import Chunk


def words(text: str) -> int:
    return len(text.split())


def delta(index: int = 0, finish: str | None = None, **fields: object) -> Chunk:
    return Chunk(body={"choices": [{"index": index, "delta": dict(fields), "finish_reason": finish}]})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def hold(tokens: int, max_ms: float | None = None, clock: Clock | None = None) -> FirstTokensHold:
    settings = StreamingConfig(buffer_first_tokens=tokens, buffer_max_ms=max_ms)
    return FirstTokensHold(settings, words, clock or Clock())


# --- what counts --------------------------------------------------------------------------------


def test_a_role_chunk_and_an_empty_delta_count_nothing() -> None:
    assert output_tokens(delta(role="assistant", content=""), words) == 0
    assert output_tokens(delta(finish="stop"), words) == 0
    assert output_tokens(Chunk(body={"choices": []}), words) == 0  # a usage chunk


def test_text_reasoning_refusal_and_legacy_text_count() -> None:
    assert output_tokens(delta(content="one two three"), words) == 3
    assert output_tokens(delta(reasoning_content="a b", content="c"), words) == 3
    assert output_tokens(delta(refusal="no can do"), words) == 3
    legacy = Chunk(body={"object": "text_completion", "choices": [{"index": 0, "text": "x y", "finish_reason": None}]})
    assert output_tokens(legacy, words) == 2


def test_tool_call_names_and_arguments_count() -> None:
    function = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    call = {"index": 0, "id": "c1", "type": "function", "function": function}
    assert output_tokens(delta(tool_calls=[call]), words) == 1 + 2
    more = {"index": 0, "function": {"arguments": ' "unit": "C"}'}}
    assert output_tokens(delta(tool_calls=[more]), words) == 2
    assert output_tokens(delta(function_call={"name": "f", "arguments": "{}"}), words) == 2


def test_every_choice_counts() -> None:
    both = Chunk(body={"choices": [{"index": 0, "delta": {"content": "a b"}}, {"index": 1, "delta": {"content": "c"}}]})
    assert output_tokens(both, words) == 3


def test_the_deployments_counter_is_used() -> None:
    assert output_tokens(delta(content="abcdefgh"), estimate_text_tokens) == 2


# --- when it releases ---------------------------------------------------------------------------


def test_it_holds_until_the_token_count_is_reached_then_releases_everything_in_order() -> None:
    h = hold(4)
    role, first, second = delta(role="assistant", content=""), delta(content="a b"), delta(content="c d e")
    assert h.add(role) == [] and h.add(first) == []
    assert h.tokens == 2 and h.open
    assert h.add(second) == [role, first, second]
    assert not h.open and h.held == []
    later = delta(content="f")
    assert h.add(later) == [later]  # once released, chunks pass straight through


def test_a_finished_answer_is_released_at_once() -> None:
    h = hold(100)
    chunks = [delta(role="assistant", content=""), delta(content="short"), delta(finish="stop")]
    assert h.add(chunks[0]) == [] and h.add(chunks[1]) == []
    assert h.add(chunks[2]) == chunks


def test_with_two_choices_it_waits_for_both_to_finish() -> None:
    h = hold(100)
    h.add(delta(0, content="a"))
    h.add(delta(1, content="b"))
    assert h.add(delta(0, finish="stop")) == []  # choice 1 is still generating
    assert len(h.add(delta(1, finish="length"))) == 4


def test_release_returns_what_is_held_for_an_upstream_that_ended() -> None:
    h = hold(100)
    chunk = delta(content="a")
    h.add(chunk)
    assert h.release() == [chunk] and not h.open


def test_the_time_limit_counts_from_the_first_held_chunk() -> None:
    clock = Clock()
    h = hold(100, max_ms=250, clock=clock)
    assert h.seconds_left() is None  # nothing held yet: nothing to hurry
    h.add(delta(role="assistant", content=""))
    clock.now += 0.1
    assert h.seconds_left() == pytest.approx(0.15)
    clock.now += 0.2
    assert h.seconds_left() == 0
    late = delta(content="a")
    assert len(h.add(late)) == 2  # a chunk arriving after the limit releases everything
    assert h.seconds_left() is None  # released: no limit to keep


def test_without_a_time_limit_there_is_nothing_to_wait_for() -> None:
    h = hold(100)
    h.add(delta(content="a"))
    assert h.seconds_left() is None


def test_a_drop_discards_the_held_chunks_and_restarts_the_window() -> None:
    clock = Clock()
    h = hold(4, max_ms=1000, clock=clock)
    held = [delta(role="assistant", content=""), delta(content="a b c")]
    for chunk in held:
        h.add(chunk)
    clock.now += 0.5
    assert h.drop(estimate_text_tokens) == held
    assert h.open and h.tokens == 0 and h.held == [] and h.count is estimate_text_tokens
    assert h.seconds_left() is None  # the clock starts again with the next deployment's first chunk
    h.add(delta(content="abcd"))
    assert h.seconds_left() == pytest.approx(1.0)


# --- settings -----------------------------------------------------------------------------------

CONFIG = """
deployments:
  - {{name: a, provider: fake, model: a}}
models:
  - {{name: chat, deployments: [a], streaming: {streaming}}}
"""


def test_a_model_group_takes_streaming_settings() -> None:
    config = parse_config(CONFIG.format(streaming="{buffer_first_tokens: 32, buffer_max_ms: 400}"))
    assert config.models[0].streaming == StreamingConfig(buffer_first_tokens=32, buffer_max_ms=400)
    assert config.models[0].streaming.buffers


def test_streaming_is_off_by_default() -> None:
    config = parse_config(CONFIG.replace(", streaming: {streaming}", "").format())
    assert not config.models[0].streaming.buffers


@pytest.mark.parametrize(
    "streaming",
    [
        "{buffer_first_tokens: -1}",
        "{buffer_first_tokens: 5000}",
        "{buffer_first_tokens: 8, buffer_max_ms: 0}",
        "{buffer_first_tokens: 8, buffer_max_ms: 120000}",
        "{buffer_max_ms: 300}",  # a time limit on a buffer that is off
        "{buffer_first_token: 8}",  # a typo is an error, not a setting that does nothing
        "{buffer_first_tokens: many}",
    ],
)
def test_bad_streaming_settings_are_refused(streaming: str) -> None:
    with pytest.raises(ConfigError, match=r"models\.0\.streaming"):
        parse_config(CONFIG.format(streaming=streaming))
