"""The route table: one place that lists every endpoint."""

from __future__ import annotations

from starlette.routing import Route

from margin.api import (
    admin,
    admin_budgets,
    admin_deployments,
    admin_keys,
    admin_requests,
    anthropic,
    batches,
    drift,
    files,
    message_batches,
    openai,
    ops,
    rollouts,
)


def build_routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        Route("/v1/messages", anthropic.messages, methods=["POST"]),
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", openai.get_model, methods=["GET"]),
        Route("/v1/files", files.create_file, methods=["POST"]),
        Route("/v1/files", files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", files.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", files.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", files.file_content, methods=["GET"]),
        Route("/v1/batches", batches.create_batch, methods=["POST"]),
        Route("/v1/batches", batches.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batches.get_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", batches.cancel_batch, methods=["POST"]),
        Route("/v1/batches/{batch_id}/retry_failed", batches.retry_failed, methods=["POST"]),
        Route("/v1/messages/batches", message_batches.create, methods=["POST"]),
        Route("/v1/messages/batches", message_batches.listing, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", message_batches.retrieve, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}/cancel", message_batches.cancel, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", message_batches.results, methods=["GET"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/openapi.json", ops.openapi, methods=["GET"]),
        Route("/admin/spend", admin.spend, methods=["GET"]),
        Route("/admin/cache/invalidate", admin.invalidate_cache, methods=["POST"]),
        Route("/admin/deployments", admin_deployments.deployments, methods=["GET"]),
        Route("/admin/keys", admin_keys.keys_collection, methods=["GET", "POST"]),
        Route("/admin/keys/{key_id}/rotate", admin_keys.rotate, methods=["POST"]),
        Route("/admin/keys/{key_id}/revoke", admin_keys.revoke, methods=["POST"]),
        Route("/admin/budgets", admin_budgets.budgets, methods=["GET"]),
        Route("/admin/requests", admin_requests.request_list, methods=["GET"]),
        Route("/admin/requests/{request_id}", admin_requests.request_detail, methods=["GET"]),
        Route("/v1/feedback", rollouts.feedback, methods=["POST"]),
        Route("/admin/rollouts", rollouts.rollouts, methods=["GET", "POST"]),
        Route("/admin/rollouts/{ref}", rollouts.rollout, methods=["GET"]),
        Route("/admin/rollouts/{ref}/history", rollouts.history, methods=["GET"]),
        Route("/admin/rollouts/{ref}/verdict", rollouts.verdict, methods=["GET", "POST"]),
        Route("/admin/rollouts/{ref}/{action}", rollouts.action, methods=["POST"]),
        Route("/admin/drift/history", drift.history, methods=["GET"]),
    ]
