"""The single overlay's gateway, run for real: `margin serve` with the container's own args and the
margin.yaml its ConfigMap mounts (only the two ports moved to free ones, since this machine is
shared), and the env the Deployment fills from Secrets. It starts (serve's exposure and metrics
checks pass on 0.0.0.0), the probes answer on the API port, and /metrics is on the metrics port only,
behind the token the ServiceMonitor sends."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.support.postgres import SUPERUSER, postgres_server
from tests.support.processes import free_port, running
from tests.support.redis import redis_server
from tests.unit.deploy.kustomize import render
from tests.unit.deploy.manifests import K8S, one

TOKEN = "metrics-token-from-a-secret"


def test_the_single_overlay_gateway_serves_what_its_probes_and_monitor_expect(tmp_path: Path) -> None:
    manifests = render(K8S / "overlays" / "single")
    container = one(manifests, "Deployment", "margin")["spec"]["template"]["spec"]["containers"][0]
    config = yaml.safe_load(one(manifests, "ConfigMap", "margin-config")["data"]["margin.yaml"])
    api_port, metrics_port = free_port(), free_port()
    config["server"] |= {"port": api_port, "metrics_port": metrics_port}
    config_file = tmp_path / "margin.yaml"
    config_file.write_text(yaml.safe_dump(config))
    args = list(container["args"])
    args[args.index("--config") + 1] = str(config_file)
    secrets = {e["name"]: "from-a-secret" for e in container["env"] if "valueFrom" in e}
    env = {**secrets, "MARGIN_METRICS_TOKEN": TOKEN, "MARGIN_DATA_DIR": str(tmp_path / "data")}
    api, metrics = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}"
    probes = {c: container[c]["httpGet"]["path"] for c in ("livenessProbe", "readinessProbe")}
    with running(args, f"{api}{probes['livenessProbe']}", env=env, timeout=60, log=tmp_path / "gateway.log"):
        assert httpx.get(f"{api}{probes['livenessProbe']}").json() == {"status": "ok"}
        ready = httpx.get(f"{api}{probes['readinessProbe']}", timeout=30)
        assert ready.status_code in (200, 503) and ready.json()["status"] in ("ready", "unavailable")
        assert httpx.get(f"{api}/metrics").status_code == 404  # only on the metrics listener
        assert httpx.get(f"{metrics}/metrics").status_code == 401
        scraped = httpx.get(f"{metrics}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200 and "margin_requests_total" in scraped.text
        assert httpx.get(f"{metrics}/healthz").status_code == 200
        assert httpx.get(f"{api}/v1/models").status_code == 401  # auth: required
        assert (tmp_path / "data" / "margin.db").exists()  # SQLite in the data dir the PVC backs


def test_the_ha_overlay_gateway_reaches_postgres_and_redis_through_its_secret_env(tmp_path: Path) -> None:
    """`database.url: postgresql://` names nothing: host, port, database and user come from the PG*
    variables (libpq), as the ha Deployment fills them from the Secret margin-datastores."""
    import psycopg

    manifests = render(K8S / "overlays" / "ha")
    container = one(manifests, "Deployment", "margin")["spec"]["template"]["spec"]["containers"][0]
    config = yaml.safe_load(one(manifests, "ConfigMap", "margin-config")["data"]["margin.yaml"])
    api_port, metrics_port = free_port(), free_port()
    config["server"] |= {"port": api_port, "metrics_port": metrics_port}
    config_file = tmp_path / "margin.yaml"
    config_file.write_text(yaml.safe_dump(config))
    args = list(container["args"])
    args[args.index("--config") + 1] = str(config_file)
    from_secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    with postgres_server() as postgres, redis_server() as redis:
        database_url = postgres.create_database("margin_ha")
        datastores = {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(postgres.port),
            "PGDATABASE": "margin_ha",
            "PGUSER": SUPERUSER,
            "PGPASSWORD": "trust-auth-ignores-it",
            "MARGIN_REDIS_URL": redis.url,
        }
        assert set(datastores) <= from_secrets
        env = {name: "from-a-secret" for name in from_secrets} | datastores
        env |= {"PGSSLMODE": "disable", "MARGIN_DATA_DIR": str(tmp_path / "data")}  # the test server has no TLS
        api = f"http://127.0.0.1:{api_port}"
        with running(args, f"{api}/healthz", env=env, timeout=60, log=tmp_path / "gateway.log"):
            ready = httpx.get(f"{api}/readyz", timeout=30)
            assert ready.status_code in (200, 503)
            with psycopg.connect(database_url) as conn:
                tables = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
                count = tables.fetchone()
            assert count is not None and count[0] > 0  # margin migrated the database the PG* variables name
