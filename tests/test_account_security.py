"""Sign-in and accounts against a hostile user: only verified addresses count for the
allowlist, mail flows never answer 5xx, the admin signs in through allauth, and sign-in
attempts are rate-limited."""

from __future__ import annotations

import importlib

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.urls import clear_url_caches

from tests.conftest import PASSWORD, client_for, free_port, make_user
from tests.mail import SmtpServer

pytestmark = pytest.mark.django_db

STOLEN = "someone@corp.example"  # allowlisted through its domain, and not bob's


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        yield server


@pytest.fixture
def smtp_down(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False


def _reload_urls():
    import trainwatch.urls

    importlib.reload(trainwatch.urls)
    clear_url_caches()


@pytest.fixture
def mail_off(settings):
    settings.MONITORING_MAIL = "off"
    _reload_urls()
    yield
    settings.MONITORING_MAIL = "console"
    _reload_urls()


def add_address(client: Client, address: str):
    return client.post("/accounts/email/", {"email": address, "action_add": ""})


def test_an_added_address_is_unverified_and_opens_nothing(bob, smtp):
    client = client_for(bob)
    response = add_address(client, STOLEN)
    assert response.status_code == 302
    added = EmailAddress.objects.get(user=bob, email=STOLEN)
    assert not added.verified
    # Confirming needs the mail, which went to the address's real owner.
    assert [m["To"] for m in smtp.messages] == [STOLEN]

    client.post("/accounts/email/", {"email": STOLEN, "action_primary": ""})
    bob.refresh_from_db()
    bob.email = STOLEN  # even were it primary, the address is still unverified
    bob.save()
    response = client.get("/api/servers/")
    assert response.status_code == 403
    assert client.get("/").status_code == 403


def test_a_verified_allowlisted_address_lets_in(bob):
    EmailAddress.objects.create(user=bob, email=STOLEN, verified=True)
    assert client_for(bob).get("/api/servers/").status_code == 200


def test_an_allowlisted_user_email_without_a_verified_address_is_refused(db):
    user = make_user("alice@example.com")
    EmailAddress.objects.filter(user=user).update(verified=False)
    assert client_for(user).get("/api/servers/").status_code == 403


def test_password_reset_mail_reaches_a_real_smtp_server(alice, smtp):
    response = Client().post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert len(smtp.messages) == 1
    body = smtp.messages[0].get_payload(decode=True) or smtp.messages[0].get_payload()[0].get_payload(decode=True)
    assert b"/accounts/password/reset/key/" in body


@pytest.mark.parametrize("action", ["reset", "add"])
def test_a_mail_server_that_is_down_costs_no_5xx(alice, smtp_down, action, caplog):
    if action == "reset":
        response = Client().post("/accounts/password/reset/", {"email": "alice@example.com"})
    else:
        response = add_address(client_for(alice), "second@example.com")
    assert response.status_code == 302
    assert "not sent" in caplog.text


def test_with_mail_off_the_pages_that_send_mail_are_not_there(alice, mail_off):
    client = client_for(alice)
    for path in ("/accounts/email/", "/accounts/password/reset/"):
        response = client.get(path)
        assert response.status_code == 404
        assert b"sends no mail" in response.content
    assert add_address(client, STOLEN).status_code == 404
    assert not EmailAddress.objects.filter(email=STOLEN).exists()


def test_the_admin_has_no_password_form_of_its_own(db):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    response = client.post("/admin/login/?next=/admin/", {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/admin/").status_code == 302  # still not signed in


def test_the_admin_opens_after_signing_in_through_allauth(db):
    make_user("root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.post("/accounts/login/", {"login": "root@example.com", "password": PASSWORD})
    assert client.get("/admin/").status_code == 200


def test_a_signed_in_non_staff_user_gets_403_from_the_admin(alice):
    assert client_for(alice).get("/admin/").status_code in (302, 403)
    assert client_for(alice).get("/admin/login/").status_code == 403


def test_failed_sign_ins_are_rate_limited(alice):
    client = Client()
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "wrong"})
        assert response.status_code == 200
    # Past the limit even the right password is refused for a while.
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert b"Too many failed login attempts" in response.content
    assert client.get("/api/servers/").status_code == 401


def test_sign_in_still_works_while_redis_is_down(alice, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": dead}}
    client = Client()
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/api/servers/").status_code == 200
