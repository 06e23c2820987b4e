"""JSON schemas for the custom resources deploy/k8s ships, which kubernetes-validate (built-in
kinds only) does not know: KEDA's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1, KEDA
2.x) and the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1).

Each is the subset of its upstream CRD's openAPIV3Schema that these manifests use, with the same
field names, types and required fields, and `additionalProperties: false` wherever the upstream
schema is closed, so a misspelt or misplaced field fails here as `kubectl apply` would fail it.
"""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}
_INT = {"type": "integer"}
# Prometheus durations ("15s", "1m30s"), the pattern of the upstream CRD.
_DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STRING, "namespace": _STRING, "labels": _STRING_MAP, "annotations": _STRING_MAP},
    "additionalProperties": False,
}


def _closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _closed(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _METADATA, "spec": spec},
        ["apiVersion", "kind", "metadata", "spec"],
    )


_SCALE_DOWN_OR_UP = _closed(
    {
        "stabilizationWindowSeconds": _INT,
        "selectPolicy": _STRING,
        "policies": {
            "type": "array",
            "items": _closed(
                {"type": _STRING, "value": _INT, "periodSeconds": _INT}, ["type", "value", "periodSeconds"]
            ),
        },
    }
)

SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    _closed(
        {
            "scaleTargetRef": _closed(
                {"name": _STRING, "apiVersion": _STRING, "kind": _STRING, "envSourceContainerName": _STRING},
                ["name"],
            ),
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "idleReplicaCount": _INT,
            "pollingInterval": _INT,
            "cooldownPeriod": _INT,
            "initialCooldownPeriod": _INT,
            "advanced": _closed(
                {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": _closed(
                        {
                            "name": _STRING,
                            "behavior": _closed({"scaleUp": _SCALE_DOWN_OR_UP, "scaleDown": _SCALE_DOWN_OR_UP}),
                        }
                    ),
                }
            ),
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": _closed(
                    {
                        "type": _STRING,
                        "name": _STRING,
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "useCachedMetrics": {"type": "boolean"},
                        # KEDA's trigger metadata is a map of strings: a number must be quoted.
                        "metadata": _STRING_MAP,
                        "authenticationRef": _closed({"name": _STRING, "kind": _STRING}, ["name"]),
                    },
                    ["type", "metadata"],
                ),
            },
        },
        ["scaleTargetRef", "triggers"],
    ),
)

_SECRET_KEY = _closed({"name": _STRING, "key": _STRING, "optional": {"type": "boolean"}}, ["key"])

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _closed(
        {
            "selector": _closed({"matchLabels": _STRING_MAP}),
            "namespaceSelector": _closed(
                {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STRING}}
            ),
            "jobLabel": _STRING,
            "endpoints": {
                "type": "array",
                "items": _closed(
                    {
                        "port": _STRING,
                        "targetPort": {"type": ["string", "integer"]},
                        "path": _STRING,
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "authorization": _closed({"type": _STRING, "credentials": _SECRET_KEY}),
                    }
                ),
            },
        },
        ["selector", "endpoints"],
    ),
)

TRIGGER_AUTHENTICATION = _resource(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    _closed(
        {
            "secretTargetRef": {
                "type": "array",
                "items": _closed({"parameter": _STRING, "name": _STRING, "key": _STRING}, ["parameter", "name", "key"]),
            }
        }
    ),
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}
