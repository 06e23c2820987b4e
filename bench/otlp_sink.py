"""A loopback OTLP/HTTP trace collector for the benchmarks: takes `POST /v1/traces` (protobuf),
counts the spans it decodes, and tells how many at `GET /stats`.

    python bench/otlp_sink.py --port 4318
"""

from __future__ import annotations

import argparse

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SPANS = web.AppKey("spans", list)
REPLY = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    export = ExportTraceServiceRequest()
    export.ParseFromString(await request.read())
    request.app[SPANS][0] += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
    return web.Response(body=REPLY, content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"spans": request.app[SPANS][0]})


def app() -> web.Application:
    application = web.Application(client_max_size=64 * 1024 * 1024)
    application[SPANS] = [0]
    application.router.add_post("/v1/traces", traces)
    application.router.add_get("/stats", stats)
    return application


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    web.run_app(app(), host="127.0.0.1", port=parser.parse_args().port, print=None)
