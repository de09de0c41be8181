"""/readyz: ready only when the database, the broker, the migrations and the beat's heartbeat all are."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from config.celery import app as celery_app
from config.operations import readiness
from governance.services.heartbeats import heartbeat_record


@pytest.fixture
def beating(db):
    heartbeat_record(name="worker")


def test_ready_when_everything_answers(beating):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "database": "ok", "broker": "ok", "migrations": "ok", "beat": "ok"}


def test_not_ready_without_a_recent_heartbeat(db):
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["beat"] == "stale"


def test_not_ready_while_a_migration_is_not_applied(beating, monkeypatch):
    monkeypatch.setattr(readiness, "_migrated", False)
    MigrationRecorder(connection).migration_qs.filter(app="governance").order_by("-id").first().delete()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations"] == "1 not applied"


def test_not_ready_when_the_broker_is_down(beating, monkeypatch):
    nowhere = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    monkeypatch.setattr(celery_app.conf, "broker_url", nowhere)  # first: it reads the old value to restore
    monkeypatch.setenv("CELERY_BROKER_URL", nowhere)  # Celery prefers the environment's to its configuration's
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("down")
    assert "127.0.0.1" not in response.content.decode()
