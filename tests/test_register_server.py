"""manage.py register_server: create, rotate, update, enable/disable; the token is shown once."""

from __future__ import annotations

import os
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from monitoring.models import MonitoredServer, hash_token

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = StringIO()
    call_command("register_server", *args, stdout=out)
    return out.getvalue().splitlines()


def test_it_registers_a_server_and_prints_its_token_once():
    lines = run("gpu-box-01", "--name", "GPU Box 01")
    assert lines[0] == "Registered server gpu-box-01 (GPU Box 01)."
    token = lines[-1]
    assert token.startswith("tw_") and len(token) > 40
    server = MonitoredServer.objects.get(slug="gpu-box-01")
    assert server.name == "GPU Box 01" and server.is_active
    assert server.token_hash == hash_token(token)
    assert token not in server.token_hash
    assert server.check_token(token)


def test_it_stores_only_a_hash_of_the_token():
    token = run("gpu-box-01")[-1]
    values = [str(v) for v in MonitoredServer.objects.values_list().get()]
    assert not any(token in value for value in values)


def test_rotating_issues_a_new_token_and_retires_the_old_one():
    old = run("gpu-box-01", "--name", "GPU Box 01")[-1]
    lines = run("gpu-box-01", "--rotate-token")
    new = lines[-1]
    assert new != old and "The previous token no longer works." in lines
    server = MonitoredServer.objects.get()
    assert server.check_token(new) and not server.check_token(old)
    assert server.name == "GPU Box 01"


def test_updating_without_rotating_keeps_the_token_and_prints_none():
    token = run("gpu-box-01")[-1]
    lines = run("gpu-box-01", "--hostname", "train01", "--description", "rack 3")
    assert not any(line.startswith("tw_") for line in lines)
    server = MonitoredServer.objects.get()
    assert server.hostname == "train01" and server.description == "rack 3"
    assert server.check_token(token)


def test_it_disables_and_enables_a_server():
    run("gpu-box-01")
    assert "(disabled)" in run("gpu-box-01", "--disable")[0]
    assert MonitoredServer.objects.get().is_active is False
    run("gpu-box-01", "--enable")
    assert MonitoredServer.objects.get().is_active is True


def test_disable_and_enable_together_is_an_error():
    with pytest.raises(CommandError):
        run("gpu-box-01", "--disable", "--enable")


def test_it_refuses_a_bad_slug():
    with pytest.raises(CommandError, match="not a valid slug"):
        run("gpu box/01")
    assert MonitoredServer.objects.count() == 0


def test_it_can_write_the_token_to_a_private_file(tmp_path):
    path = tmp_path / "token"
    lines = run("gpu-box-01", "--token-file", str(path))
    token = path.read_text().strip()
    assert not any(token in line for line in lines)
    assert MonitoredServer.objects.get().check_token(token)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
