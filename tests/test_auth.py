"""Sign-in: allauth's password form (local use), Google through allauth with Google's
endpoints mocked at the HTTP boundary, the allowlist on both, and sign-out."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import responses
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


def password_login(client: Client, email: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


def test_alice_signs_in_with_her_password_and_reaches_the_api(alice):
    client = Client()
    response = password_login(client, "alice@example.com")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/api/servers/").status_code == 200


def test_a_wrong_password_does_not_sign_in(alice):
    client = Client()
    response = password_login(client, "alice@example.com", "nope")
    assert response.status_code == 200
    assert b"errors" in response.content
    assert client.get("/api/servers/").status_code == 401


def test_bob_signs_in_but_the_allowlist_stops_him_at_the_api(bob):
    client = Client()
    assert password_login(client, "bob@elsewhere.example").status_code == 302
    assert client.get("/api/servers/").status_code == 403


def test_sign_out_ends_the_session(alice):
    client = Client()
    password_login(client, "alice@example.com")
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/api/servers/").status_code == 401


def test_nobody_signs_up_with_a_password(db):
    client = Client()
    client.post("/accounts/signup/", {"email": "alice@example.com", "password1": "Xy!12345678abc"})
    assert not get_user_model().objects.filter(email="alice@example.com").exists()


def test_the_sign_in_page_offers_google_and_the_password_form(db):
    page = Client().get("/accounts/login/").content.decode()
    assert 'id="google-sign-in"' in page
    assert 'name="login"' in page and 'name="password"' in page


def test_with_password_login_off_only_google_remains(alice, settings):
    settings.SOCIALACCOUNT_ONLY = True
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert 'id="google-sign-in"' in page and 'name="password"' not in page
    password_login(client, "alice@example.com")
    assert client.get("/api/servers/").status_code == 401


def test_the_page_says_when_google_is_not_configured(db, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"google": {"APPS": []}}
    page = Client().get("/accounts/login/").content.decode()
    assert 'id="google-missing"' in page and "GOOGLE_CLIENT_ID" in page


# --- Google, with its endpoints mocked --------------------------------------------------------


def id_token(email: str, verified: bool = True) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": settings.GOOGLE_CLIENT_ID,
        "sub": f"google-{email}",
        "email": email,
        "email_verified": verified,
        "name": email.split("@")[0].title(),
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, "not-checked-when-fetched-over-tls", algorithm="HS256")


def google_sign_in(client: Client, email: str, verified: bool = True):
    """Start the flow, come back from 'Google' with a code; Google's token endpoint is mocked."""
    start = client.post("/accounts/google/login/", {"process": "login"})
    assert start.status_code == 302
    redirect = urlsplit(start["Location"])
    assert redirect.netloc == "accounts.google.com"
    query = parse_qs(redirect.query)
    assert query["client_id"] == [settings.GOOGLE_CLIENT_ID]
    with responses.RequestsMock() as google:
        google.post(
            GOOGLE_TOKEN_URL,
            json={
                "access_token": "ya29.test",
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": "openid email profile",
                "id_token": id_token(email, verified),
            },
        )
        return client.get("/accounts/google/login/callback/", {"state": query["state"][0], "code": "4/test-code"})


def test_an_allowlisted_google_account_signs_in_and_reaches_the_api(db):
    client = Client()
    response = google_sign_in(client, "carol@corp.example")
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/api/servers/").status_code == 200
    assert get_user_model().objects.filter(email="carol@corp.example").exists()


def test_google_reaches_the_existing_local_user_of_that_email(alice):
    client = Client()
    google_sign_in(client, "alice@example.com")
    assert client.get("/api/servers/").status_code == 200
    assert get_user_model().objects.filter(email="alice@example.com").count() == 1


def test_a_google_account_outside_the_allowlist_is_refused_with_a_clear_page(db):
    client = Client()
    response = google_sign_in(client, "mallory@evilcorp.example")
    assert response.status_code == 403
    page = response.content.decode()
    assert "Not on the allowlist" in page and "mallory@evilcorp.example" in page
    assert not get_user_model().objects.filter(email="mallory@evilcorp.example").exists()
    assert client.get("/api/servers/").status_code == 401


def test_an_unverified_google_address_is_refused(db):
    client = Client()
    response = google_sign_in(client, "carol@corp.example", verified=False)
    assert response.status_code == 403
    assert client.get("/api/servers/").status_code == 401
