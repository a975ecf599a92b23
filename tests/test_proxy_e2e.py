"""The production proxy (deploy/nginx/) for real: Debian's nginx runs the template the
compose file mounts, in front of real gunicorn, with a certificate made for the test."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitoring.models import Snapshot
from tests import samples
from tests.conftest import ROOT, free_port, process_env, register, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TEMPLATE = ROOT / "deploy" / "nginx" / "trainwatch.conf.template"
SITE = "localhost"


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SITE)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SITE)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def render(tmp_path, upstream: str, http_port: int, https_port: int) -> str:
    """What the nginx image does at start (envsubst on the template), then wrapped in a main
    configuration; the test listens on free ports instead of 80 and 443."""
    cert, key = self_signed(tmp_path)
    values = {
        "TRAINWATCH_SITE": SITE,
        "TRAINWATCH_UPSTREAM": upstream,
        "TRAINWATCH_TLS_CERT": cert,
        "TRAINWATCH_TLS_KEY": key,
    }
    site = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], TEMPLATE.read_text())
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"error_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\naccess_log {tmp_path}/access.log;\n{site}\n}}\n"
    )
    return str(main)


@pytest.fixture
def nginx():
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx is not installed; `make test` installs it (make test-tools)")
    return binary


def test_the_template_passes_nginx_own_check(nginx, tmp_path):
    conf = render(tmp_path, "127.0.0.1:8000", free_port(), free_port())
    result = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", conf], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_proxy_terminates_tls_buffers_bodies_and_the_app_trusts_it(nginx, tmp_path, processes):
    node = register("gpu-box-01", "GPU Box 01")
    env = process_env(DJANGO_SECURE_PROXY="1", DJANGO_ALLOWED_HOSTS=SITE, DJANGO_SECRET_KEY="x" * 50)
    base = processes.web(env, workers=1)
    http_port, https_port = free_port(), free_port()
    conf = render(tmp_path, base.removeprefix("http://"), http_port, https_port)
    proxy = processes.start("nginx", [nginx, "-p", str(tmp_path), "-c", conf, "-g", "daemon off;"], env)
    wait_for_port(https_port, proc=proxy)
    origin = f"https://{SITE}:{https_port}"

    # Plain HTTP is sent to HTTPS by the proxy.
    response = requests.get(f"http://{SITE}:{http_port}/healthz", allow_redirects=False, timeout=5)
    assert response.status_code == 301 and response.headers["Location"].startswith("https://")

    # Through TLS the app sees X-Forwarded-Proto: https, so it serves instead of redirecting.
    response = requests.get(f"{origin}/healthz", verify=False, allow_redirects=False, timeout=5)
    assert response.status_code == 200 and response.json()["ok"] is True
    assert "max-age=" in response.headers["Strict-Transport-Security"]

    # A body sent in two halves, slowly: the proxy holds it; the app gets it whole.
    body = json.dumps(samples.body(samples.now_minus(60), gpus=1, disks=1)).encode()
    head = (
        f"POST /api/ingest/servers/{node.slug}/metrics/ HTTP/1.1\r\nHost: {SITE}\r\n"
        f"X-Monitoring-Token: {node.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", https_port), timeout=10)
    with context.wrap_socket(raw, server_hostname=SITE) as tls:
        tls.sendall(head + body[:100])
        time.sleep(1.0)
        tls.sendall(body[100:])
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert Snapshot.objects.filter(server=node.server).count() == 1


def test_a_header_over_the_proxys_buffers_is_the_contracts_json_431(nginx, tmp_path, processes):
    node = register("gpu-box-01", "GPU Box 01")
    env = process_env(DJANGO_SECURE_PROXY="1", DJANGO_ALLOWED_HOSTS=SITE, DJANGO_SECRET_KEY="x" * 50)
    base = processes.web(env, workers=1)
    https_port = free_port()
    conf = render(tmp_path, base.removeprefix("http://"), free_port(), https_port)
    proxy = processes.start("nginx", [nginx, "-p", str(tmp_path), "-c", conf, "-g", "daemon off;"], env)
    wait_for_port(https_port, proc=proxy)
    origin = f"https://{SITE}:{https_port}"
    body = samples.body(samples.now_minus(60), gpus=1, disks=1)
    url = f"{origin}/api/ingest/servers/{node.slug}/metrics/"

    # A 9 kB token overflows nginx's 8 kB header buffers: nginx answers, in the contract's shape.
    response = requests.post(url, json=body, headers={"Authorization": "Bearer " + "t" * 9000}, verify=False, timeout=5)
    assert response.status_code == 431 and response.headers["Content-Type"] == "application/json"
    assert response.json() == {"ok": False, "error": "request header fields too large: at most 8 kB per header line"}
    assert "\n" not in response.text.rstrip("\n")
    # Outside the API, a page.
    response = requests.get(f"{origin}/", headers={"Cookie": "c" * 9000}, verify=False, timeout=5)
    assert response.status_code == 431 and response.headers["Content-Type"].startswith("text/html")
    # A token within the limits is read as ever.
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {node.token}"}, verify=False, timeout=5)
    assert response.status_code == 200, response.text
