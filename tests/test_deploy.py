"""Production: `manage.py check --deploy` is clean with the documented environment, the compose
file validates, and /healthz tells a load balancer whether the database answers."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys

import pytest
import requests
from django.test import Client

from tests.conftest import ROOT, free_port, process_env

# The production environment as README.md documents it.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_SECURE_PROXY": "1",
    "DJANGO_ALLOWED_HOSTS": "trainwatch.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://trainwatch.example.com",
    "GOOGLE_CLIENT_ID": "1234.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "secret",
    "MONITORING_ALLOWED_DOMAINS": "example.com",
}


def manage(*args, env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "trainwatch.settings"}
    return subprocess.run(
        [sys.executable, "backend/manage.py", *args], cwd=ROOT, capture_output=True, text=True, env={**base, **env}
    )


def test_check_deploy_is_clean_with_the_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_development_defaults():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={})
    assert result.returncode != 0
    for warning in ("security.W009", "security.W012", "trainwatch.W001"):
        assert warning in result.stderr


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed; `make test` installs docker-compose")


def test_the_compose_file_validates(tmp_path):
    # As an operator would: the compose file beside a .env made from .env.example.
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run([*compose_command(), "config", "-q"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_compose_file_runs_every_part_from_one_image():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"timescaledb", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:2.")
    assert {services[s]["image"] for s in ("migrate", "web", "worker", "beat")} == {"trainwatch:latest"}
    for name in ("timescaledb", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_only_the_proxy_is_published():
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["image"].startswith("nginx:")
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    mounted = services["proxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy" / "nginx" / "trainwatch.conf.template").resolve()


@pytest.mark.django_db
def test_healthz_answers_when_the_database_does():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True
    assert set(response.json()) == {"ok", "database", "broker", "database_jobs", "tier_refresh"}
    assert response.json()["database"] == "up" and response.json()["broker"] == "up"


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_the_database_is_down(processes):
    base = processes.web(process_env(DATABASE_URL=f"postgres://nobody@127.0.0.1:{free_port()}/trainwatch"))
    response = requests.get(f"{base}/healthz", timeout=15)
    assert response.status_code == 503 and response.json()["ok"] is False
