"""Settings from the environment: typed readers that refuse bad values."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from trainwatch.env import broker_url, database_from_url, env_bool, env_int, env_list


def test_it_reads_booleans(monkeypatch):
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "0")
    assert env_bool("X_FLAG", True) is False
    monkeypatch.delenv("X_FLAG")
    assert env_bool("X_FLAG", True) is True


def test_it_refuses_a_boolean_it_cannot_read(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be one of"):
        env_bool("X_FLAG", False)


def test_it_refuses_integers_out_of_range(monkeypatch):
    monkeypatch.setenv("X_NUM", "12x")
    with pytest.raises(ImproperlyConfigured, match="X_NUM must be an integer"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="X_NUM must be at least 1"):
        env_int("X_NUM", 5, minimum=1)


def test_an_empty_value_means_the_default(monkeypatch):
    monkeypatch.setenv("X_NUM", "  ")
    assert env_int("X_NUM", 7) == 7


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example, ,B.example ")
    assert env_list("X_LIST") == ["a.example", "B.example"]


def test_it_reads_a_database_url(monkeypatch):
    monkeypatch.setenv("X_DB", "postgres://u:p%40ss@db.internal:6543/tw?sslmode=require")
    db = database_from_url("X_DB", "")
    assert db["NAME"] == "tw" and db["USER"] == "u" and db["PASSWORD"] == "p@ss"
    assert db["HOST"] == "db.internal" and db["PORT"] == "6543"
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert db["ENGINE"] == "trainwatch.database"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "must be a postgres:// URL"),
        ("postgres://u@h:5432/", "must name a database"),
    ],
)
def test_it_refuses_a_bad_database_url(monkeypatch, url, message):
    monkeypatch.setenv("X_DB", url)
    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url("X_DB", "")


def test_it_refuses_a_broker_that_is_not_redis(monkeypatch):
    monkeypatch.setenv("X_BROKER", "amqp://guest@localhost//")
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        broker_url("X_BROKER", "")


def test_a_bad_value_stops_the_app_at_start(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "backend/manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "perhaps", "DJANGO_SETTINGS_MODULE": "trainwatch.settings"},
    )
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be one of" in result.stderr
