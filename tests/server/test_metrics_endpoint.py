"""The Prometheus endpoint on the REST port: per-request counts by status, monitoring config."""

from __future__ import annotations

import httpx
import pytest
from conftest import TFSERVING_TESTDATA
from lifecycle_helpers import build_slow, request_count, scrape, slow_inputs

from deploykit.client import Client
from deploykit.errors import InvalidInput, ModelNotFound
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.metrics import monitoring_path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("metrics-repo")
    build_slow(repo)
    with ServerThread(ServerConfig(model_path=repo, grpc_port=0, rest_port=0)) as running:
        yield running


def test_every_request_is_counted_by_model_api_entry_point_and_status(server) -> None:
    before = scrape(server.rest_target)
    with Client(server.grpc_target) as grpc_client, Client(server.rest_target) as rest_client:
        for client in (grpc_client, rest_client):
            client.predict("slow", slow_inputs(3))
            client.predict("slow", slow_inputs(3))
            with pytest.raises(ModelNotFound):
                client.predict("nope", slow_inputs(3))
            with pytest.raises(InvalidInput):
                client.predict("slow", {"x": slow_inputs(3)["x"]})  # n missing
    body = {"inputs": {"x": [[0.5] * 64], "n": [3]}}
    assert httpx.post(f"{server.rest_target}/v1/models/nope:predict", json=body, timeout=10).status_code == 404
    after = scrape(server.rest_target)

    def delta(**labels: str) -> float:
        return request_count(after, **labels) - request_count(before, **labels)

    for entrypoint in ("GRPC", "REST"):
        ok = {"model": "slow", "version": "1", "api": "Predict", "entrypoint": entrypoint, "status": "OK"}
        assert delta(**ok) == 2
        assert delta(model="nope", api="Predict", entrypoint=entrypoint, status="NOT_FOUND") == 1
        assert delta(model="slow", api="Predict", entrypoint=entrypoint, status="INVALID_ARGUMENT") == 1
    # The REST client reads metadata first (once, cached) for the signature; the unknown model fails there.
    assert delta(model="slow", api="GetModelMetadata", entrypoint="REST", status="OK") == 1
    assert delta(model="nope", api="GetModelMetadata", entrypoint="REST", status="NOT_FOUND") == 1

    def latency_count(samples) -> float:  # every answered request is in the latency histogram too
        return sum(
            value
            for (name, items), value in samples.items()
            if name == "deploykit_request_latency_seconds_count" and ("entrypoint", "GRPC") in items
        )

    assert latency_count(after) - latency_count(before) == 4


def test_wrong_monitoring_path_is_tf_servings_error(server) -> None:
    response = httpx.get(f"{server.rest_target}/monitoring/prometheus/metricz", timeout=10)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Unexpected path: /monitoring/prometheus/metricz. Should be /monitoring/prometheus/metrics"
    }


def test_monitoring_config_file(tmp_path) -> None:
    assert monitoring_path(TFSERVING_TESTDATA / "monitoring_config.txt") == "/monitoring/prometheus/metrics"
    custom = tmp_path / "monitoring.txt"
    custom.write_text('prometheus_config { enable: true, path: "/monitoring/custom" }\n')
    assert monitoring_path(custom) == "/monitoring/custom"
    custom.write_text("prometheus_config { enable: false }\n")
    assert monitoring_path(custom) is None
    assert monitoring_path(None) == "/monitoring/prometheus/metrics"

    repo = tmp_path / "repo"
    build_slow(repo)
    config = ServerConfig(model_path=repo, grpc_port=None, rest_port=0, metrics_path="/monitoring/custom")
    with ServerThread(config) as server:
        assert ("deploykit_requests_in_flight", ()) in scrape(server.rest_target, "/monitoring/custom")
        default = httpx.get(f"{server.rest_target}/monitoring/prometheus/metrics", timeout=10)
        assert default.status_code == 400 and "Should be /monitoring/custom" in default.json()["error"]
    config = ServerConfig(model_path=repo, grpc_port=None, rest_port=0, metrics_path=None)
    with ServerThread(config) as server:
        off = httpx.get(f"{server.rest_target}/monitoring/prometheus/metrics", timeout=10)
        # Disabled: the path is just another path outside TF Serving's /v1/ API: 404.
        assert off.status_code == 404
        assert "the REST API is under /v1/" in off.json()["error"]


def test_bad_monitoring_config_is_a_usage_error(tmp_path) -> None:
    from deploykit.errors import UsageError

    bad = tmp_path / "monitoring.txt"
    bad.write_text("prometheus_config { enabled: true }\n")
    with pytest.raises(UsageError, match="^Error parsing text-format tensorflow.serving.MonitoringConfig: "):
        monitoring_path(bad)
    bad.write_text('prometheus_config { enable: true, path: "metrics" }\n')
    with pytest.raises(UsageError, match="must start with '/'"):
        monitoring_path(bad)
