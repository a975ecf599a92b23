"""Sending alert notices: webhook, Slack and email, retried with backoff, each on its own.

A notice is a delivery row (evaluation.py writes it with the change of state that owes it). The
worker sends it once: the row is locked while it is sent and marked sent after, so that two
workers, or a worker restarted mid-way, never send it twice; a failure is recorded with its
error and tried again later (beat's `deliver_due_alerts`), up to MAX_ATTEMPTS. One channel
failing delays no other: each notice is a row and a task of its own.

Webhook: the JSON payload, signed with the channel's secret: `X-TrainWatch-Signature` is the
hex HMAC-SHA256 of the body. Slack: an incoming-webhook message with the same facts. Email:
Django's mail (MONITORING_MAIL and EMAIL_* from the environment).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta

import requests
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from .models import AlertChannel, AlertDelivery, AlertEpisode

log = logging.getLogger(__name__)

DELIVER_TASK = "monitoring.tasks.deliver_alert"  # by name: tasks imports this module
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 10
SIGNATURE_HEADER = "X-TrainWatch-Signature"


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: 30 s, 1, 2, 4 ... minutes, at most an hour."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def dashboard_link(server, start: datetime, end: datetime | None) -> str:
    """The page at this server over the episode (with a margin either side)."""
    end = end or timezone.now()
    margin = max(timedelta(minutes=5), (end - start) / 4)

    def iso(moment: datetime) -> str:
        return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    base = settings.MONITORING_PUBLIC_URL.rstrip("/")
    return f"{base}/?server={server.slug}&range=24h&from={iso(start - margin)}&to={iso(end + margin)}"


def payload(episode: AlertEpisode, event: str) -> dict:
    server = episode.server
    return {
        "status": "resolved" if event == "resolved" else "firing",
        "event": event,
        "rule": episode.rule.name,
        "condition": episode.rule.when,
        "server": {"slug": server.slug, "name": server.name, "labels": server.agent_labels or {}},
        "started_at": episode.started_at.isoformat(),
        "fired_at": episode.fired_at.isoformat() if episode.fired_at else None,
        "ended_at": episode.ended_at.isoformat() if episode.ended_at else None,
        "value": episode.value,
        "label": episode.label or None,
        "reason": episode.reason or None,
        "url": dashboard_link(server, episode.started_at, episode.ended_at),
    }


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def summary(data: dict) -> str:
    """One line for people: `[FIRING] hot GPU on a100-01 (GPU at 91 °C ...)`."""
    what = data["reason"] or (f"value {data['value']:g}" if data["value"] is not None else data["label"] or "")
    text = f"[{data['status'].upper()}] {data['rule']} on {data['server']['slug']}"
    return text + (f": {what}" if what else "")


def send(channel: AlertChannel, data: dict) -> None:
    """Send one notice now; raises on failure (the error is what gets recorded)."""
    if channel.kind == "email":
        lines = [summary(data), "", f"since {data['started_at']}"]
        if data["ended_at"]:
            lines.append(f"until {data['ended_at']}")
        lines += ["", data["url"]]
        send_mail(summary(data), "\n".join(lines), settings.DEFAULT_FROM_EMAIL, list(channel.to))
        return
    if channel.kind == "slack":
        fields = [f"*Server*: {data['server']['name']} (`{data['server']['slug']}`)", f"*Since*: {data['started_at']}"]
        if data["ended_at"]:
            fields.append(f"*Until*: {data['ended_at']}")
        if data["reason"]:
            fields.append(f"*Reason*: {data['reason']}")
        body = json.dumps(
            {
                "text": summary(data),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary(data)}*\n" + "\n".join(fields)}},
                    {
                        "type": "context",
                        "elements": [{"type": "mrkdwn", "text": f"<{data['url']}|Open in TrainWatch>"}],
                    },
                ],
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
    else:
        body = json.dumps(data, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "TrainWatch alerts"}
        if channel.secret:
            headers[SIGNATURE_HEADER] = sign(channel.secret, body)
    response = requests.post(channel.url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
    if response.status_code >= 300:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200].strip()}")


def deliver(delivery_id: int) -> str:
    """Send one delivery if it is due; returns its state after. Safe to call twice at once."""
    with transaction.atomic():
        delivery = (
            AlertDelivery.objects.select_for_update(skip_locked=True)
            .select_related("channel")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return "busy"
        if delivery.state != AlertDelivery.PENDING or delivery.next_try_at > timezone.now():
            return delivery.state
        delivery.attempts += 1
        try:
            send(delivery.channel, delivery.payload)
        except Exception as exc:  # any failure of the channel: recorded, tried again later
            delivery.last_error = (str(exc).strip().splitlines() or [repr(exc)])[0][:1000]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.state = AlertDelivery.FAILED
                log.warning("alert delivery %s to %s failed for good: %s", delivery.pk, delivery.channel, exc)
            else:
                delivery.next_try_at = timezone.now() + backoff(delivery.attempts)
                log.info("alert delivery %s to %s failed, trying again later: %s", delivery.pk, delivery.channel, exc)
        else:
            delivery.state, delivery.sent_at, delivery.last_error = AlertDelivery.SENT, timezone.now(), ""
        delivery.save()
        return delivery.state


def dispatch(delivery_ids: list[int]) -> None:
    """Hand each delivery to the worker; one the broker does not take waits for beat's sweep."""
    for delivery_id in delivery_ids:
        try:
            current_app.send_task(DELIVER_TASK, args=(delivery_id,), retry=False)
        except Exception as exc:  # the broker is down: deliver_due_alerts sends it later
            log.warning("alert delivery %s left to the sweep: %s", delivery_id, exc)
            return


def due(limit: int = 200) -> list[int]:
    return list(
        AlertDelivery.objects.filter(state=AlertDelivery.PENDING, next_try_at__lte=timezone.now())
        .order_by("next_try_at")
        .values_list("pk", flat=True)[:limit]
    )
