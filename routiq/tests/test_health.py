import json

import pytest

from routiq import health


@pytest.fixture
def worker_alive(monkeypatch):
    monkeypatch.setitem(health.CHECKS, "job_queue", lambda: "1 cluster(s), 2 worker(s)")


def test_liveness_needs_nothing(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_health_checks_every_component_for_real(client, worker_alive):
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "cache", "channel_layer", "job_queue"}
    assert body["components"]["database"]["status"] == "up"
    assert body["components"]["channel_layer"]["status"] == "up"
    assert body["timestamp"].endswith("Z")


@pytest.mark.django_db(transaction=True)
def test_health_is_503_naming_the_component_that_is_down(client, worker_alive, monkeypatch):
    def broken_cache():
        raise ConnectionError("connection refused to redis://:hunter2@cache:6379")

    monkeypatch.setitem(health.CHECKS, "cache", broken_cache)
    response = client.get("/health")
    body = json.loads(response.content)
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["components"]["cache"]["status"] == "down"
    assert body["components"]["database"]["status"] == "up"
    assert "hunter2" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_job_queue_is_down_without_a_worker_heartbeat(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["components"]["job_queue"]["status"] == "down"
    assert "qcluster" in response.json()["components"]["job_queue"]["error"]


@pytest.mark.django_db(transaction=True)
def test_job_queue_is_up_when_a_cluster_reports(client, settings):
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.status import Status

    status = Status(pid=1234, cluster_id="test-cluster")
    status.status = Conf.IDLE
    status.workers = [1, 2]
    broker = get_broker()
    broker.set_stat(f"{Conf.Q_STAT}:test-cluster", SignedPackage.dumps(status, True), 30)
    try:
        body = client.get("/health").json()
        assert body["components"]["job_queue"]["status"] == "up", body
        assert "2 worker(s)" in body["components"]["job_queue"]["detail"]
    finally:
        broker.cache.delete(f"{Conf.Q_STAT}:test-cluster")


def test_health_rejects_other_methods(client):
    assert client.post("/health").status_code == 405


def test_home_page_links_the_entry_points(client):
    content = client.get("/").content.decode()
    for href in ('href="/admin/"', 'href="/api/docs/"', 'href="/health"'):
        assert href in content
