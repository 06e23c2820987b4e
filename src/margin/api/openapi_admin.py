"""The admin endpoints in /openapi.json: each path, method, request body and response body.

Request bodies come from the pydantic models that validate them (`KeySpec`, `RotateBody`, the
rollout bodies); the responses are described here, next to the list of admin paths, and the tests
validate real responses against them (tests/e2e/test_admin_openapi.py) and check that every admin
route in `margin.api.routes` is documented."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from margin.api.admin_keys import RotateBody
from margin.api.rollouts import ActionBody, StartBody
from margin.config.limits import BudgetConfig, RateLimitConfig, TeamConfig
from margin.identity.key_spec import KeySpec

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    KeySpec, RotateBody, StartBody, ActionBody, TeamConfig, BudgetConfig, RateLimitConfig,
)  # fmt: skip
_ERROR_STATUSES = (400, 401, 403, 404, 503)
_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_OPT_STR, _OPT_NUM = {"type": ["string", "null"]}, {"type": ["number", "null"]}
_STRS = {"type": "array", "items": _STR}
_OBJECT = {"type": "object"}


def _obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required or properties)}


def _list_of(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return _obj(("object", "data", *extra), object={"const": "list"}, data={"type": "array", "items": item}, **extra)


KEY = _obj(
    key_id=_STR, prefix=_STR, name=_STR, org=_STR, team=_STR, user=_STR, tags=_STRS, endpoint_class=_STR,
    allowed_models=_STRS, allowed_cost_ranks={"type": "array", "items": _INT},
    allowed_tiers={"type": "array", "items": _INT, "deprecated": True}, policy=_OBJECT,
    created_at=_OPT_STR, rotated_at=_OPT_STR, revoked_at=_OPT_STR, status={"enum": ["active", "revoked"]},
)  # fmt: skip
KEY_WITH_SECRET = {"allOf": [KEY, _obj(key={**_STR, "description": "the secret, shown once"})]}
DECISION = {
    "type": "object",
    "additionalProperties": _STR,
    "description": "what the response headers said: route, route_reason, route_cascade, fallback_from, "
    "fallback_reason, cache, cache_similarity... (docs/ledger.md, Explaining a request)",
}
_REQUEST_COMMON: dict[str, Any] = dict(
    request_id=_STR, at=_STR, endpoint=_STR, key_id=_STR, team=_STR, user=_STR, model_group=_STR,
    route_policy=_STR, deployment=_STR, status=_STR, error_class=_OPT_STR, attempts=_INT, cache_result=_STR,
    decision=DECISION,
)  # fmt: skip
REQUEST_SUMMARY = _obj((*_REQUEST_COMMON, "last_attempt_cost_usd"), **_REQUEST_COMMON,
                       last_attempt_cost_usd=_STR)  # fmt: skip
ATTEMPT = _obj(
    attempt_index=_INT, started_at=_STR, deployment=_STR, model=_STR, status=_STR, error_class=_OPT_STR,
    is_final=_BOOL, latency_ms=_NUM, ttft_ms=_OPT_NUM, input_tokens=_INT, output_tokens=_INT, cost_usd=_STR,
    price_basis=_STR, cache_result=_STR,
)  # fmt: skip
REQUEST_DETAIL = _obj(**_REQUEST_COMMON, cost_usd=_STR, attempt_rows={"type": "array", "items": ATTEMPT})
SPEND = _obj(("since", "until", "group_by", "groups", "total"), since=_STR, until=_STR, group_by=_STR,
             groups={"type": "array", "items": _OBJECT}, total=_OBJECT)  # fmt: skip
BUDGET = _obj(("scope", "kind", "unit", "window", "limit"), scope=_STR, kind=_STR, unit=_STR, window=_STR,
              limit=_NUM, spent=_NUM, reserved=_NUM, remaining=_NUM, reset_at=_STR)  # fmt: skip
DEPLOYMENT = _obj(("name", "provider", "model", "circuit"), name=_STR, provider=_STR, model=_STR,
                  cost_rank=_INT, groups=_STRS, in_flight=_INT, circuit=_obj(("state",), state=_STR),
                  autoscale={"type": ["object", "null"], "description": "docs/deploy.md"},
                  standby={"type": ["object", "null"], "description": "warm, cold or drained"},
                  replicas={"type": ["array", "null"], "description": "endpoints or endpoints_from: host:port each"},
                  discovery={"type": ["object", "null"], "description": "endpoints_from"})  # fmt: skip
STANDBY = _obj(("name", "state"), name=_STR, state={"type": "string", "enum": ["warm", "cold", "drained"]},
               drained={"type": ["object", "null"]}, scale_to_zero=_BOOL, cold_for_s=_OPT_NUM, cold_periods=_INT,
               wakes_sent=_INT, waited=_INT, skipped_cold=_INT, skipped_drained=_INT, idle_s=_OPT_NUM,
               idle=_BOOL, replicas={"type": ["array", "null"]})  # fmt: skip
_ENDPOINT = {"type": "string", "maxLength": 200, "description": "one replica: host:port as /admin/deployments lists it"}
DRAIN_BODY = _obj(reason={"type": "string", "maxLength": 200}, endpoint=_ENDPOINT)
_NOT_AFTER = {**_OPT_NUM, "description": "epoch seconds the node goes away; the drain expires then"}
TERMINATION_NOTICE = _obj(("deployment",), deployment=_STR, reason={"type": "string", "maxLength": 200},
                          endpoint=_ENDPOINT, not_after=_NOT_AFTER)  # fmt: skip
INVALIDATE_BODY = {
    **_obj((), tenant=_STR, model=_STR, tag=_STR, key_prefix=_STR),
    "description": "at least one of the four selectors",
    "minProperties": 1,
}
INVALIDATED = _obj(invalidated=_INT, selector=_OBJECT)


def _query(name: str, description: str, path: bool = False) -> dict[str, Any]:
    where = "path" if path else "query"
    return {"name": name, "in": where, "required": path, "description": description, "schema": _STR}


def _operation(
    summary: str,
    response: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: tuple[dict[str, Any], ...] = (),
    status: int = 200,
) -> dict[str, Any]:
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    errors = {str(s): error for s in _ERROR_STATUSES}
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"adminKey": []}],
        "parameters": list(params),
        "responses": {str(status): {"description": "OK", "content": {"application/json": {"schema": response}}}}
        | errors,
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def admin_paths() -> dict[str, dict[str, Any]]:
    return _operator_paths() | _rollout_paths() | _object_paths()


_OBJECT_COMMON: dict[str, Any] = dict(
    object=_STR, id=_STR, source={"enum": ["api", "config"]}, read_only=_BOOL, created_at=_OPT_STR,
    updated_at=_OPT_STR, version=_INT,
)  # fmt: skip
_OPT_INT = {"type": ["integer", "null"]}
TEAM = _obj(("id", "name", "keys", "users", "source"), **_OBJECT_COMMON, name=_STR, description=_STR,
            keys=_STRS, users=_STRS)  # fmt: skip
BUDGET_OBJECT = _obj(("id", "scope", "window", "source"), **_OBJECT_COMMON, scope=_STR,
                     limit_usd={**_STR, "description": "exact decimal"}, limit_tokens=_INT, window=_STR, hours=_INT,
                     thresholds={"type": "array", "items": _NUM}, on_store_failure=_STR)  # fmt: skip
LIMIT_OBJECT = _obj(("id", "scope", "source"), **_OBJECT_COMMON, scope=_STR, requests_per_minute=_INT,
                    tokens_per_minute=_INT, concurrency=_INT, on_store_failure=_STR)  # fmt: skip
CHANGE = _obj(seq=_INT, at=_STR, actor=_STR, kind={"enum": ["team", "budget", "limit", "drain"]}, id=_STR,
              action={"enum": ["create", "update", "delete"]}, before={"type": ["object", "null"]},
              after={"type": ["object", "null"]})  # fmt: skip
RELOAD = _obj(object={"const": "reload"}, config=_STR, changes={"type": "array", "items": CHANGE},
              restart_needed=_STRS, audited=_BOOL)  # fmt: skip
_PAGING = (_query("limit", "1 to 1000 (default 100)"), _query("cursor", "a previous page's next_cursor"))


def _conflicts(operation: dict[str, Any]) -> dict[str, Any]:
    """409 (a duplicate, or an object the config file declares) and 422 (every problem of a body)."""
    error = operation["responses"]["400"]
    operation["responses"] |= {"409": error, "422": error}
    return operation


def _object_paths() -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    kinds = (("teams", "team", TEAM, TeamConfig), ("budgets", "budget", BUDGET_OBJECT, BudgetConfig),
             ("limits", "rate limit", LIMIT_OBJECT, RateLimitConfig))  # fmt: skip
    for path, noun, schema, model in kinds:
        object_id = _query("object_id", f"the {noun}'s id" + (" (its name)" if noun == "team" else ""), path=True)
        patch = {"type": "object", "description": f"any fields of {model.__name__}; the others stay"}
        deleted = {"allOf": [schema, _obj(deleted=_BOOL)]}
        paths[f"/admin/{path}"] = {
            "get": _operation(f"List {noun}s, by id", _list_of(schema, next_cursor=_OPT_STR), params=_PAGING),
            "post": _conflicts(_operation(f"Create a {noun}", schema, body=_ref(model), status=201)),
        }
        paths[f"/admin/{path}/{{object_id}}"] = {
            "get": _operation(f"One {noun}", schema, params=(object_id,)),
            "patch": _conflicts(_operation(f"Change a {noun}", schema, body=patch, params=(object_id,))),
            "delete": _conflicts(_operation(f"Delete a {noun}", deleted, params=(object_id,))),
        }
    paths["/admin/audit"] = {
        "get": _operation(
            "Who changed which team, budget or rate limit, newest first",
            _list_of(CHANGE, next_cursor=_OPT_STR),
            params=(_query("kind", "team, budget, limit or drain"), _query("id", "one object's changes"), *_PAGING),
        )
    }
    paths["/admin/reload"] = {
        "post": _conflicts(_operation("Apply the config file's teams, budgets and rate limits again", RELOAD))
    }
    return paths


def _operator_paths() -> dict[str, dict[str, Any]]:
    key_id = _query("key_id", "the key's id (key_...)", path=True)
    name = _query("name", "the deployment's name", path=True)
    return {
        "/admin/spend": {
            "get": _operation(
                "Spend report (the figures of `margin report`)",
                SPEND,
                params=(
                    _query("since", "now, 90m, 24h, 7d, 2w or an ISO date (default 7d)"),
                    _query("until", "same forms"),
                    _query("by", "key, team, tag, model, cost_rank or deployment"),
                ),
            )
        },
        "/admin/cache/invalidate": {"post": _operation("Invalidate cached answers", INVALIDATED, body=INVALIDATE_BODY)},
        "/admin/deployments": {
            "get": _operation(
                "Deployments with circuit state and in-flight requests", _list_of(DEPLOYMENT, runtime=_OBJECT)
            )
        },
        "/admin/deployments/{name}/drain": {
            "post": _operation(
                "Drain a deployment: new requests go elsewhere, open calls finish",
                STANDBY,
                body=DRAIN_BODY,
                params=(name,),
            )
        },
        "/admin/deployments/{name}/undrain": {
            "post": _operation(
                "Take a deployment (or one replica) back into rotation", STANDBY, body=DRAIN_BODY, params=(name,)
            )
        },
        "/admin/termination-notice": {
            "post": {
                **_operation(
                    "A spot termination notice: drains the deployment named (admin key or metrics token)",
                    STANDBY,
                    body=TERMINATION_NOTICE,
                ),
                "security": [{"adminKey": []}, {"metricsToken": []}],
            }
        },
        "/admin/keys": {
            "get": _operation("List virtual keys (never their secrets)", _list_of(KEY)),
            "post": _operation("Create a virtual key", KEY_WITH_SECRET, body=_ref(KeySpec), status=201),
        },
        "/admin/keys/{key_id}/rotate": {
            "post": _operation("Rotate a key's secret", KEY_WITH_SECRET, body=_ref(RotateBody), params=(key_id,))
        },
        "/admin/keys/{key_id}/revoke": {"post": _operation("Revoke a key", KEY, params=(key_id,))},
        "/admin/budgets/status": {
            "get": _operation("Budgets per scope: spent, reserved, remaining, reset", _list_of(BUDGET))
        },
        "/admin/requests": {
            "get": _operation(
                "The per-request log, newest first",
                _list_of(REQUEST_SUMMARY, next_cursor=_OPT_STR),
                params=(
                    _query("team", "only this team"),
                    _query("status", "ok, error, cancelled, unreconciled or refused"),
                    _query("since", "now, 90m, 24h, 7d or an ISO date"),
                    _query("limit", "1 to 1000 (default 50)"),
                    _query("cursor", "a previous page's next_cursor"),
                ),
            )
        },
        "/admin/requests/{request_id}": {
            "get": _operation(
                "One request explained", REQUEST_DETAIL, params=(_query("request_id", "x-request-id", path=True),)
            )
        },
    }


DRIFT_RUN = _obj(
    run_id=_STR, model_group=_STR, deployment=_STR, at=_STR, items=_INT, score=_OPT_NUM, ci_low=_OPT_NUM,
    ci_high=_OPT_NUM, baseline=_OPT_NUM, baseline_runs=_INT, baseline_from=_OPT_STR, baseline_to=_OPT_STR,
    in_baseline=_BOOL, drift_margin=_NUM, drifted=_BOOL, inconclusive=_BOOL,
    judge={
        "type": ["object", "null"], "description": "the judge's outcomes (reeval_grader: judge); null otherwise",
        "properties": {"agreed": _INT, "disagreed": _INT, "unparseable": _INT, "failed": _INT, "spent_usd": _OPT_STR},
        "required": ["agreed", "disagreed", "unparseable", "failed", "spent_usd"],
    },
)  # fmt: skip


def _rollout_paths() -> dict[str, dict[str, Any]]:
    ref = _query("ref", "a rollout id, or a model group's live rollout", path=True)
    rollout = {**_OBJECT, "description": "a rollout (docs/rollouts.md)"}
    return {
        "/admin/rollouts": {
            "get": _operation(
                "Live rollouts and the 20 most recent",
                _obj(rollouts={"type": "array", "items": rollout}, recent={"type": "array", "items": rollout}),
            ),
            "post": _operation("Start a rollout", rollout, body=_ref(StartBody), status=201),
        },
        "/admin/rollouts/{ref}": {"get": _operation("One rollout", rollout, params=(ref,))},
        "/admin/rollouts/{ref}/history": {"get": _operation("A rollout's audited transitions", _OBJECT, params=(ref,))},
        "/admin/rollouts/{ref}/verdict": {
            "get": _operation("A rollout's current verdict", _OBJECT, params=(ref,)),
            "post": _operation("Evaluate the verdict now", _OBJECT, params=(ref,)),
        },
        "/admin/drift/history": {
            "get": _operation(
                "Scheduled re-evaluations of production samples (quality drift), newest first",
                _list_of(DRIFT_RUN),
                params=(_query("group", "only this model group"), _query("limit", "1 to 1000 (default 50)")),
            )
        },
        "/admin/rollouts/{ref}/{action}": {
            "post": _operation(
                "promote, pause, resume or abort (body optional)",
                rollout,
                body=_ref(ActionBody),
                params=(ref, _query("action", "promote, pause, resume or abort", path=True)),
            )
        },
    }
