"""The fake upstream's batch APIs, shaped as the providers' own, so margin's `native` batch mode and
the official SDKs can be tested over real HTTP:

- OpenAI: `POST /v1/files` (multipart, `purpose=batch`), `GET /v1/files/{id}`,
  `GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches` (newest first, `after`,
  `limit`), `GET /v1/batches/{id}`,
  `POST /v1/batches/{id}/cancel`; output and error files with OpenAI's line shape.
- Anthropic: `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`,
  `GET /v1/messages/batches/{id}/results` (JSONL), `POST /v1/messages/batches/{id}/cancel`.

A batch runs in the background, one line after another (`POST /_fake/batches {"line_delay_s": x}`
spaces them, so a test can poll or cancel mid-batch); each line is answered by the same fake model
as the live endpoints. `GET /_fake/batches` counts the lines run per model, so a test can check that
each line was run upstream once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from margin.errors import InvalidRequest
from margin.metering.usage import openai_usage
from margin.providers.fake import engine
from margin.providers.fake.state import BEHAVIOUR, json_response, read_json
from margin.translate import chat_result_to_message, parse_messages_request
from margin.types import JSON, ChatResult

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


@dataclass(slots=True)
class FakeFile:
    file_id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


@dataclass(slots=True)
class FakeBatch:
    batch_id: str
    api: str  # "openai" | "anthropic"
    endpoint: str
    lines: list[tuple[str, JSON]]  # custom_id, body
    input_file_id: str | None = None
    metadata: JSON | None = None
    status: str = "in_progress"
    created_at: float = field(default_factory=time.time)
    times: dict[str, float] = field(default_factory=dict)
    results: list[tuple[str, int, JSON]] = field(default_factory=list)  # custom_id, status, body
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel: bool = False


@dataclass(slots=True)
class FakeBatchBook:
    files: dict[str, FakeFile] = field(default_factory=dict)
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    lines_run: Counter[str] = field(default_factory=Counter)
    line_delay_s: float = 0.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


BATCHES = web.AppKey("fake_batches", FakeBatchBook)


def _openai_error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return json_response(body, status)


def _anthropic_error(status: int, message: str) -> web.Response:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return json_response({"type": "error", "error": {"type": kind, "message": message}}, status)


# --- OpenAI files -------------------------------------------------------------------------------------
def file_object(file: FakeFile) -> JSON:
    return {
        "id": file.file_id, "object": "file", "bytes": len(file.data), "created_at": file.created_at,
        "filename": file.filename, "purpose": file.purpose, "status": "processed", "expires_at": None,
        "status_details": None,
    }  # fmt: skip


def _add_file(book: FakeBatchBook, filename: str, purpose: str, data: bytes) -> FakeFile:
    file = FakeFile(f"file-{secrets.token_hex(12)}", filename, purpose, data, int(time.time()))
    book.files[file.file_id] = file
    return file


async def upload_file(request: web.Request) -> web.Response:
    form = await request.post()
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
        return _openai_error(400, "Send multipart/form-data with a 'file' and a 'purpose'.")
    file = _add_file(request.app[BATCHES], upload.filename, purpose, upload.file.read())
    return json_response(file_object(file))


def _file(request: web.Request) -> FakeFile | None:
    return request.app[BATCHES].files.get(request.match_info["file_id"])


async def get_file(request: web.Request) -> web.Response:
    file = _file(request)
    return _openai_error(404, "No such file.", "file_not_found") if file is None else json_response(file_object(file))


async def file_content(request: web.Request) -> web.Response:
    file = _file(request)
    if file is None:
        return _openai_error(404, "No such file.", "file_not_found")
    return web.Response(body=file.data, content_type="application/octet-stream")


# --- OpenAI batches -----------------------------------------------------------------------------------
def batch_object(batch: FakeBatch) -> JSON:
    done = [status for _, status, _ in batch.results]
    body: JSON = {
        "id": batch.batch_id, "object": "batch", "endpoint": batch.endpoint, "errors": None,
        "input_file_id": batch.input_file_id, "completion_window": "24h", "status": batch.status,
        "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at), "expires_at": int(batch.created_at) + 86_400,
        "request_counts": {"total": len(batch.lines), "completed": sum(s < 400 for s in done),
                           "failed": sum(s >= 400 for s in done)},
        "metadata": batch.metadata,
    }  # fmt: skip
    for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
                 "cancelled_at"):  # fmt: skip
        body[name] = int(batch.times[name]) if name in batch.times else None
    return body


async def create_batch(request: web.Request) -> web.Response:
    book = request.app[BATCHES]
    raw = await read_json(request)
    endpoint, file = raw.get("endpoint"), book.files.get(str(raw.get("input_file_id")))
    if endpoint not in ENDPOINTS:
        return _openai_error(400, f"endpoint must be one of {', '.join(ENDPOINTS)}.", "unsupported_endpoint")
    if file is None or file.purpose != "batch":
        return _openai_error(404 if file is None else 400, "input_file_id must name a batch file.")
    try:
        lines = [_request_line(orjson.loads(line), str(endpoint)) for line in file.data.splitlines() if line.strip()]
    except (orjson.JSONDecodeError, ValueError) as exc:
        return _openai_error(400, f"The input file is not valid: {exc}", "invalid_request")
    batch = FakeBatch(f"batch_{secrets.token_hex(12)}", "openai", str(endpoint), lines, file.file_id,
                      raw.get("metadata"))  # fmt: skip
    _start(request.app, batch)
    return json_response(batch_object(batch))


def _request_line(line: Any, endpoint: str) -> tuple[str, JSON]:
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str) or line.get("url") != endpoint:
        raise ValueError("each line needs a custom_id and the batch's url")
    body = line.get("body")
    if not isinstance(body, dict):
        raise ValueError(f"{line['custom_id']}: body must be an object")
    return line["custom_id"], body


async def list_batches(request: web.Request) -> web.Response:
    """Newest first, `after` and `limit` (1-100, default 20), as OpenAI pages them."""
    try:
        limit = min(100, max(1, int(request.query.get("limit", "20"))))
    except ValueError:
        return _openai_error(400, "limit must be a number.")
    batches = [b for b in reversed(request.app[BATCHES].batches.values()) if b.api == "openai"]
    after = request.query.get("after")
    if after:
        ids = [b.batch_id for b in batches]
        batches = batches[ids.index(after) + 1 :] if after in ids else []
    page = batches[:limit]
    data = [batch_object(b) for b in page]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": len(batches) > limit})  # fmt: skip


def _batch(request: web.Request) -> FakeBatch | None:
    return request.app[BATCHES].batches.get(request.match_info["batch_id"])


async def get_batch(request: web.Request) -> web.Response:
    batch = _batch(request)
    if batch is None or batch.api != "openai":
        return _openai_error(404, "No such batch.", "batch_not_found")
    return json_response(batch_object(batch))


async def cancel_batch(request: web.Request) -> web.Response:
    batch = _batch(request)
    if batch is None or batch.api != "openai":
        return _openai_error(404, "No such batch.", "batch_not_found")
    if batch.status not in ("validating", "in_progress"):
        return _openai_error(409, f"Cannot cancel a batch that is {batch.status}.", "batch_not_cancellable")
    _cancel(batch)
    return json_response(batch_object(batch))


def _cancel(batch: FakeBatch) -> None:
    batch.cancel = True
    batch.status = "cancelling"
    batch.times["cancelling_at"] = time.time()


# --- running a batch ----------------------------------------------------------------------------------
def _start(app: web.Application, batch: FakeBatch) -> None:
    book = app[BATCHES]
    book.batches[batch.batch_id] = batch
    batch.times["in_progress_at"] = time.time()
    task = asyncio.get_running_loop().create_task(_run(app, batch))
    book.tasks.add(task)
    task.add_done_callback(book.tasks.discard)


async def _run(app: web.Application, batch: FakeBatch) -> None:
    book = app[BATCHES]
    for custom_id, body in batch.lines:
        if book.line_delay_s:
            await asyncio.sleep(book.line_delay_s)
        if batch.cancel:
            break
        status, answer = answer_line(app, batch.endpoint, body)
        book.lines_run[str(body.get("model", ""))] += 1
        batch.results.append((custom_id, status, answer))
    batch.times["finalizing_at"] = time.time()
    if batch.api == "openai":
        _write_files(book, batch)
    ended = "cancelled" if batch.cancel else "completed"
    batch.status = ended
    batch.times[f"{ended}_at"] = time.time()


def answer_line(app: web.Application, endpoint: str, body: JSON) -> tuple[int, JSON]:
    """The fake model's answer to one line (status, body), as the live endpoint would give it."""
    behaviour, model = app[BEHAVIOUR], str(body.get("model", "fake"))
    try:
        if endpoint == "/v1/messages":
            chat = parse_messages_request(body)
            params = {k: v for k, v in chat.params.items() if k != "anthropic"}
            answer = engine.chat_completion(chat.messages, chat.model, behaviour, params)
            result = ChatResult(body=answer, usage=openai_usage(answer["usage"]), model=chat.model)
            return 200, dict(chat_result_to_message(result))
        if endpoint == "/v1/embeddings":
            inputs = body.get("input", [])
            return 200, engine.embeddings([inputs] if isinstance(inputs, str) else inputs, model, behaviour.dimensions)
        if endpoint == "/v1/completions":
            prompt = body.get("prompt", "")
            text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
            return 200, engine.text_completion(text, model, behaviour, body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages is required.", param="messages")
        return 200, engine.chat_completion(messages, model, behaviour, body)
    except InvalidRequest as exc:
        if endpoint == "/v1/messages":
            return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": exc.message}}
        return 400, exc.to_openai()


def _write_files(book: FakeBatchBook, batch: FakeBatch) -> None:
    done = {custom_id for custom_id, _, _ in batch.results}
    output: list[JSON] = []
    errors: list[JSON] = []
    for custom_id, status, body in batch.results:
        line = {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id,
                "response": {"status_code": status, "request_id": f"req_{secrets.token_hex(8)}", "body": body},
                "error": None}  # fmt: skip
        (output if status < 400 else errors).append(line)
    for custom_id, _ in batch.lines:
        if custom_id not in done:  # cancelled before it ran
            errors.append({"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id, "response": None,
                           "error": {"code": "batch_cancelled", "message": "The batch was cancelled."}})  # fmt: skip
    for lines, attribute in ((output, "output_file_id"), (errors, "error_file_id")):
        if lines:
            data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
            setattr(
                batch, attribute, _add_file(book, f"{batch.batch_id}_{attribute}.jsonl", "batch_output", data).file_id
            )


# --- Anthropic Message Batches ------------------------------------------------------------------------
def _rfc3339(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def message_batch_object(request: web.Request, batch: FakeBatch) -> JSON:
    ended = batch.status in ("completed", "cancelled")
    done = [status for _, status, _ in batch.results]
    ended_at = batch.times.get("completed_at") or batch.times.get("cancelled_at")
    counts = {
        "processing": 0 if ended else len(batch.lines) - len(done),
        "succeeded": sum(s < 400 for s in done), "errored": sum(s >= 400 for s in done),
        "canceled": len(batch.lines) - len(done) if ended else 0, "expired": 0,
    }  # fmt: skip
    url = f"{request.url.origin()}/v1/messages/batches/{batch.batch_id}/results"
    return {
        "id": batch.batch_id, "type": "message_batch",
        "processing_status": "ended" if ended else "canceling" if batch.cancel else "in_progress",
        "request_counts": counts, "ended_at": _rfc3339(ended_at), "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.created_at + 86_400),
        "cancel_initiated_at": _rfc3339(batch.times.get("cancelling_at")),
        "archived_at": None, "results_url": url if ended else None,
    }  # fmt: skip


async def create_message_batch(request: web.Request) -> web.Response:
    raw = await read_json(request)
    requests = raw.get("requests")
    if not isinstance(requests, list) or not requests:
        return _anthropic_error(400, "requests: a non-empty list of {custom_id, params}.")
    lines: list[tuple[str, JSON]] = []
    for index, item in enumerate(requests):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("custom_id"), str)
            or not isinstance(item.get("params"), dict)
        ):
            return _anthropic_error(400, f"requests.{index}: needs a custom_id and params.")
        lines.append((item["custom_id"], item["params"]))
    batch = FakeBatch(f"msgbatch_{secrets.token_hex(12)}", "anthropic", "/v1/messages", lines)
    _start(request.app, batch)
    return json_response(message_batch_object(request, batch))


def _message_batch(request: web.Request) -> FakeBatch | None:
    batch = _batch(request)
    return batch if batch is not None and batch.api == "anthropic" else None


async def get_message_batch(request: web.Request) -> web.Response:
    batch = _message_batch(request)
    if batch is None:
        return _anthropic_error(404, "No such message batch.")
    return json_response(message_batch_object(request, batch))


async def cancel_message_batch(request: web.Request) -> web.Response:
    batch = _message_batch(request)
    if batch is None:
        return _anthropic_error(404, "No such message batch.")
    if batch.status == "in_progress":
        _cancel(batch)
    return json_response(message_batch_object(request, batch))


async def message_batch_results(request: web.Request) -> web.Response:
    batch = _message_batch(request)
    if batch is None:
        return _anthropic_error(404, "No such message batch.")
    if batch.status not in ("completed", "cancelled"):
        return _anthropic_error(400, "The batch is still processing; its results exist once it has ended.")
    done = {custom_id for custom_id, _, _ in batch.results}
    lines = [
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": body} if status < 400
         else {"type": "errored", "error": body}}
        for custom_id, status, body in batch.results
    ] + [{"custom_id": c, "result": {"type": "canceled"}} for c, _ in batch.lines if c not in done]  # fmt: skip
    return web.Response(body=b"".join(orjson.dumps(line) + b"\n" for line in lines), content_type="application/binary")


# --- control ------------------------------------------------------------------------------------------
async def batch_stats(request: web.Request) -> web.Response:
    book = request.app[BATCHES]
    return json_response({"lines_run": dict(book.lines_run), "batches": len(book.batches), "files": len(book.files)})


async def batch_settings(request: web.Request) -> web.Response:
    raw = await read_json(request)
    delay = raw.get("line_delay_s", 0.0)
    if not isinstance(delay, int | float) or delay < 0:
        raise web.HTTPBadRequest(text="line_delay_s: a number of seconds, 0 or more")
    request.app[BATCHES].line_delay_s = float(delay)
    return json_response({"line_delay_s": float(delay)})


def batch_routes(app: web.Application, line_delay_s: float = 0.0) -> None:
    app[BATCHES] = FakeBatchBook(line_delay_s=line_delay_s)
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
    app.router.add_post("/v1/messages/batches", create_message_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}", get_message_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", message_batch_results)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", cancel_message_batch)
    app.router.add_get("/_fake/batches", batch_stats)
    app.router.add_post("/_fake/batches", batch_settings)
