"""Protocol translation between Anthropic's Messages API and margin's internal OpenAI shape.

Pure functions and small state machines: no I/O, no web framework, no HTTP client.

Inbound (`/v1/messages`): `parse_messages_request`, `chat_result_to_message`,
`AnthropicStreamEncoder` (framed by `margin.api.anthropic.anthropic_events`, the same bytes as
`encode_sse`), `anthropic_error_body` / `anthropic_error_event`.
Outbound (the `anthropic` upstream adapter): `build_messages_request`, `message_to_chat_result`,
`AnthropicStreamDecoder`, `error_from_anthropic`.
"""

from margin.translate.anthropic_errors import (
    anthropic_error_body,
    anthropic_error_event,
    anthropic_error_type,
    error_from_anthropic,
)
from margin.translate.anthropic_request import parse_messages_request
from margin.translate.anthropic_response import (
    chat_result_to_message,
    finish_reason,
    message_to_chat_result,
    stop_reason,
    usage_from_anthropic,
    usage_from_openai,
    usage_to_anthropic,
)
from margin.translate.anthropic_stream import (
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    encode_sse,
)
from margin.translate.anthropic_upstream_request import DEFAULT_MAX_TOKENS, build_messages_request
from margin.translate.extensions import strip_anthropic_extensions

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicStreamDecoder",
    "AnthropicStreamEncoder",
    "anthropic_error_body",
    "anthropic_error_event",
    "anthropic_error_type",
    "build_messages_request",
    "chat_result_to_message",
    "encode_sse",
    "error_from_anthropic",
    "finish_reason",
    "message_to_chat_result",
    "parse_messages_request",
    "stop_reason",
    "strip_anthropic_extensions",
    "usage_from_anthropic",
    "usage_from_openai",
    "usage_to_anthropic",
]
