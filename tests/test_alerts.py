"""Alerts: the rules file, episodes (pending, firing, resolved, flapping, repeats, silences), and
notices to a real local HTTP receiver and a real SMTP server."""

from __future__ import annotations

import json
from datetime import timedelta
from email.header import decode_header, make_header
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from monitoring.alerts import (
    AlertChannel,
    AlertDelivery,
    AlertEpisode,
    AlertRule,
    AlertSilence,
    RulesError,
    export_text,
    import_text,
)
from monitoring.alerts import delivery as alert_delivery
from monitoring.alerts import evaluation as alerting
from monitoring.alerts import rules as alert_rules
from monitoring.tasks import classify_server, deliver_due_alerts
from tests import samples
from tests.conftest import ROOT, client_for
from tests.mail import SmtpServer
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

T0 = samples.now_minus(3600).replace(microsecond=0)

RULES = """
channels:
  - {name: ops, kind: webhook, url: http://127.0.0.1:9/hook, secret: s3cret}
  - {name: team, kind: slack, url: http://127.0.0.1:9/slack}
  - {name: oncall, kind: email, to: [oncall@example.com]}
rules:
  - name: idle GPUs holding memory
    when: {bottleneck: gpu-idle-held}
    for: 15m
    servers: {labels: {role: trainer}}
    notify: [ops]
  - name: node offline
    when: {offline: true}
    for: 2m
    notify: [ops, oncall]
  - name: hot GPU
    when: {metric: temperature_c, op: ">", value: 85}
    for: 1m
    notify: [ops]
    repeat: 4h
"""


def rules(text: str) -> None:
    import_text(text)


def feed(ingest, node, count, start=T0, every=2, **gpu):
    """`count` samples `every` seconds apart; GPU fields as given, then classified."""
    for i in range(count):
        body = samples.body(start + timedelta(seconds=every * i), step=i, gpus=2)
        for g in body["sample"]["gpus"]:
            g.update(gpu)
        assert ingest.send(node, body).status_code == 200
    classify_server(node.server.id)


def webhook_rule(receiver, name="hot GPU", when=None, for_="1m", **extra):
    AlertChannel.objects.update_or_create(
        name="ops",
        defaults={"kind": "webhook", "url": receiver.url() if receiver else "http://127.0.0.1:9/", "secret": "s3cret"},
    )
    text = {
        "channels": [],
        "rules": [
            {
                "name": name,
                "when": when or {"metric": "temperature_c", "op": ">", "value": 85},
                "for": for_,
                "notify": ["ops"],
                **extra,
            }
        ],
    }
    import_text(json.dumps(text))


def episodes():
    return list(AlertEpisode.objects.order_by("started_at").values_list("state", flat=True))


# --- the rules file -------------------------------------------------------------------------


def test_a_rules_file_imports_and_exports_back_unchanged():
    result = import_text(RULES)
    assert len(result.created) == 6
    exported = export_text()
    again = import_text(exported)
    assert again.created == [] and again.updated == [] and len(again.unchanged) == 6
    assert export_text() == exported
    rule = AlertRule.objects.get(name="idle GPUs holding memory")
    assert rule.for_seconds == 900 and rule.servers == {"labels": {"role": "trainer"}}
    assert AlertRule.objects.get(name="hot GPU").repeat_seconds == 4 * 3600


def test_the_example_rules_file_imports():
    result = import_text((ROOT / "deploy" / "alerts" / "example.yaml").read_text())
    assert len(result.created) == 8 and AlertRule.objects.filter(name="memory in use (example)").exists()


def test_import_updates_by_name_and_prune_removes_the_rest():
    import_text(RULES)
    changed = RULES.replace("for: 15m", "for: 20m")
    result = import_text(changed)
    assert result.updated == ["rule idle GPUs holding memory"]
    only = (
        "channels: [{name: ops, kind: webhook, url: 'http://127.0.0.1:9/hook', secret: s3cret}]\n"
        "rules: [{name: node offline, when: {offline: true}, for: 2m, notify: [ops]}]\n"
    )
    result = import_text(only, prune=True)
    assert sorted(result.deleted) == ["channel oncall", "channel team", "rule hot GPU", "rule idle GPUs holding memory"]
    assert result.updated == ["rule node offline"]  # it no longer notifies oncall
    assert list(AlertRule.objects.values_list("name", flat=True)) == ["node offline"]
    assert list(AlertChannel.objects.values_list("name", flat=True)) == ["ops"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [{name: x, when: {bottleneck: lazy}}]", "rules[0].when.bottleneck: must be one of gpu-bound"),
        ("rules: [{name: x, when: {metric: nope, op: '>', value: 1}}]", "rules[0].when.metric: 'nope' is not"),
        ("rules: [{name: x, when: {metric: temperature_c, op: '=>', value: 1}}]", "rules[0].when.op: must be one of"),
        ("rules: [{name: x, when: {offline: true}, for: soon}]", "rules[0].for: must be a duration"),
        ("rules: [{name: x, when: {offline: true}, notify: [nobody]}]", "rules[0].notify: no channel named 'nobody'"),
        ("channels: [{name: a, kind: email}]", "channels[0].to: an email channel needs"),
        ("channels: [{name: a, kind: pager, url: 'http://x'}]", "channels[0].kind: must be one of"),
        ("rules: [{name: x, when: {xid: [a]}}]", "rules[0].when.xid: must be true or a list"),
        ("{", "not valid YAML"),
        ("[rules]", "file: must be a mapping with channels and rules"),
        ("rule: []", "file: unknown key 'rule'"),
        ("rules: {name: x}", "rules: must be a list of rules"),
        ("rules: [x]", "rules[0]: must be a mapping"),
        ("rules: [{name: x, when: {offline: true}, every: 5m}]", "rules[0]: unknown key 'every'"),
        ("rules: [{when: {offline: true}}]", "rules[0].name: must be a name of 1 to 200 characters"),
        ("rules: [{name: ' ', when: {offline: true}}]", "rules[0].name: must be a name of 1 to 200 characters"),
        ("rules: [{name: x, when: {offline: true}, notify: [1]}]", "rules[0].notify: must be a list of channel names"),
        ("rules: [{name: x, when: {offline: true}, enabled: 'no'}]", "rules[0].enabled: must be true or false"),
        ("rules: [{name: x, when: {offline: true}, servers: [a]}]", "rules[0].servers: must be a mapping with slugs"),
        ("rules: [{name: x, when: {offline: true}, servers: {slug: a}}]", "rules[0].servers: unknown key 'slug'"),
        (
            "rules: [{name: x, when: {offline: true}, servers: {labels: {rack: 12}}}]",
            "rules[0].servers.labels: must map label names to strings",
        ),
        ("channels: [{name: 'a b', kind: email, to: [a@example.com]}]", "channels[0].name: must be 1 to 64 letters"),
        ("channels: [{name: a, kind: slack}]", "channels[0].url: a slack channel needs an http(s) URL"),
        (
            "channels: [{name: a, kind: webhook, url: 'ftp://example.com/x'}]",
            "channels[0].url: 'ftp://example.com/x' is",
        ),
        ("channels: [{name: a, kind: email, to: [nobody]}]", "channels[0].to: 'nobody' is not a valid email address"),
        ("channels: [{name: a, kind: email, to: a@example.com}]", "channels[0].to: must be a list of email addresses"),
        ("channels: [{name: a, kind: email, to: [a@example.com], cc: []}]", "channels[0]: unknown key 'cc'"),
    ],
)
def test_a_bad_rules_file_names_the_problem_and_changes_nothing(text, message):
    with pytest.raises(RulesError) as caught:
        import_text(text)
    assert str(caught.value).startswith(message)
    assert not AlertRule.objects.exists() and not AlertChannel.objects.exists()


def test_a_webhook_may_name_a_service_without_a_dot():
    # Alertmanager or a relay beside TrainWatch, reached by its compose or Kubernetes service name.
    import_text("channels: [{name: am, kind: webhook, url: 'http://alertmanager:9093/api/hook'}]")
    assert AlertChannel.objects.get(name="am").url == "http://alertmanager:9093/api/hook"


def test_a_servers_selection_is_cleaned_or_refused_as_in_the_file():
    # The admin's form checks a rule's `servers` with the same function.
    assert alert_rules.selector(None, "servers") == {} and alert_rules.selector({}, "servers") == {}
    clean = alert_rules.selector({"labels": {"b": "1", "a": "2"}, "slugs": ["y", "x", "y"]}, "servers")
    assert clean == {"slugs": ["x", "y"], "labels": {"a": "2", "b": "1"}} and list(clean["labels"]) == ["a", "b"]
    assert alert_rules.selector({"slugs": []}, "servers") == {"slugs": []}  # selects no server
    for value, message in (
        ("a100-01", "servers: must be a mapping with slugs and/or labels"),
        ({"slugs": "a100-01"}, "servers.slugs: must be a list of server slugs"),
        ({"slugs": [""]}, "servers.slugs: must be a list of server slugs"),
        ({"labels": {"team": None}}, "servers.labels: must map label names to strings"),
        ({"slugs": [], "team": "llm"}, "servers: unknown key 'team'"),
    ):
        with pytest.raises(RulesError) as caught:
            alert_rules.selector(value, "servers")
        assert str(caught.value) == message


def test_the_command_imports_exports_and_refuses_a_bad_file(tmp_path):
    good = tmp_path / "rules.yaml"
    good.write_text(RULES)
    out = StringIO()
    call_command("alerts", "import", str(good), stdout=out)
    assert "6 created" in out.getvalue()
    out = StringIO()
    call_command("alerts", "export", stdout=out)
    assert "name: idle GPUs holding memory" in out.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{name: x, when: {bottleneck: lazy}}]")
    with pytest.raises(CommandError, match=r"bad.yaml: rules\[0\].when.bottleneck"):
        call_command("alerts", "import", str(bad))


# --- episodes -------------------------------------------------------------------------------


def test_a_metric_rule_goes_pending_then_fires_then_resolves(ingest, box):
    webhook_rule(None)
    feed(ingest, box, 20, temperature_c=90.0)  # 38 s: pending, `for` is a minute
    assert episodes() == ["pending"] and not AlertDelivery.objects.exists()
    feed(ingest, box, 20, start=T0 + timedelta(seconds=40), temperature_c=91.0)  # 78 s in: firing
    episode = AlertEpisode.objects.get()
    assert episode.state == "firing" and episode.fired_at == T0 + timedelta(seconds=60)
    assert episode.value == 91.0 and episode.started_at == T0
    firing = AlertDelivery.objects.get()
    assert firing.event == "firing" and firing.payload["status"] == "firing"
    assert firing.payload["server"]["slug"] == box.slug and firing.payload["rule"] == "hot GPU"
    feed(ingest, box, 3, start=T0 + timedelta(seconds=80), temperature_c=60.0)
    episode.refresh_from_db()
    assert episode.state == "resolved" and episode.ended_at == T0 + timedelta(seconds=80)
    assert list(AlertDelivery.objects.order_by("created_at").values_list("event", flat=True)) == ["firing", "resolved"]


def test_a_condition_that_flaps_within_for_sends_nothing(ingest, box):
    webhook_rule(None)
    for burst in range(4):  # 30 s hot, 4 s cool, again and again: never a minute hot
        start = T0 + timedelta(seconds=34 * burst)
        feed(ingest, box, 15, start=start, temperature_c=90.0)
        feed(ingest, box, 2, start=start + timedelta(seconds=30), temperature_c=50.0)
    assert not AlertEpisode.objects.exists() and not AlertDelivery.objects.exists()


def test_any_gpu_over_the_threshold_holds_and_a_bottleneck_rule_follows_the_label(ingest, box):
    webhook_rule(None, for_="0s")
    body = samples.body(T0, gpus=2)
    body["sample"]["gpus"][1]["temperature_c"] = 88.0
    ingest.send(box, body)
    classify_server(box.server.id)
    assert AlertEpisode.objects.get().value == 88.0
    webhook_rule(None, name="busy", when={"bottleneck": "gpu-bound"}, for_="0s")
    feed(ingest, box, 2, start=T0 + timedelta(seconds=2))
    assert AlertEpisode.objects.get(rule__name="busy").label == "gpu-bound"


def test_a_repeat_is_sent_while_firing(ingest, box):
    webhook_rule(None, for_="0s", repeat="1m")
    feed(ingest, box, 70, temperature_c=90.0)  # 138 s
    events = list(AlertDelivery.objects.order_by("sequence").values_list("event", "sequence"))
    assert events == [("firing", 1), ("repeat", 2), ("repeat", 3)]


def test_a_rule_for_other_servers_leaves_this_one_alone(ingest, box):
    webhook_rule(None, for_="0s", servers={"labels": {"team": "vision"}})
    feed(ingest, box, 3, temperature_c=90.0)
    assert not AlertEpisode.objects.exists()
    webhook_rule(None, for_="0s", servers={"labels": {"role": "trainer"}})  # the agent's label
    feed(ingest, box, 3, start=T0 + timedelta(seconds=10), temperature_c=90.0)
    assert episodes() == ["firing"]


def test_an_xid_fires_at_once_and_resolves_when_its_window_passes(ingest, box):
    webhook_rule(None, name="xid", when={"xid": [79]}, for_="1m")
    body = samples.body(T0 + timedelta(seconds=4), step=2, gpus=2)
    body["sample"]["gpus"][0]["xid_errors"] = [{"xid": 79, "at": (T0 + timedelta(seconds=3)).isoformat()}]
    feed(ingest, box, 2)
    ingest.send(box, body)
    classify_server(box.server.id)
    episode = AlertEpisode.objects.get()
    assert episode.state == "firing" and episode.value == 79.0
    feed(ingest, box, 40, start=T0 + timedelta(seconds=6))  # 84 s on: the minute has passed
    episode.refresh_from_db()
    assert episode.state == "resolved"


def test_offline_fires_after_for_and_resolves_when_samples_come_back(ingest, box):
    rules("rules: [{name: node offline, when: {offline: true}, for: 2m, notify: []}]")
    feed(ingest, box, 1)
    assert alerting.evaluate_offline(now=T0 + timedelta(seconds=100)) == 0
    assert alerting.evaluate_offline(now=T0 + timedelta(seconds=130)) == 1
    episode = AlertEpisode.objects.get()
    assert episode.state == "firing" and episode.started_at == T0
    feed(ingest, box, 1, start=T0 + timedelta(seconds=200))
    alerting.evaluate_offline(now=T0 + timedelta(seconds=205))
    episode.refresh_from_db()
    assert episode.state == "resolved"


@pytest.mark.parametrize("change", ["rule disabled", "server disabled", "rule no longer selects it"])
def test_an_episode_nothing_evaluates_any_more_resolves(ingest, box, change):
    webhook_rule(None, for_="0s", servers={"labels": {"role": "trainer"}})
    feed(ingest, box, 3, temperature_c=90.0)
    assert episodes() == ["firing"]
    if change == "rule disabled":
        AlertRule.objects.update(enabled=False)
    elif change == "server disabled":
        box.server.is_active = False
        box.server.save()
    else:
        webhook_rule(None, for_="0s", servers={"labels": {"role": "eval"}})
    now = T0 + timedelta(minutes=5)
    assert alerting.evaluate_offline(now=now) == 1  # the resolved notice
    episode = AlertEpisode.objects.get()
    assert episode.state == "resolved" and episode.ended_at == now
    assert list(AlertDelivery.objects.order_by("created_at").values_list("event", flat=True)) == ["firing", "resolved"]
    assert alerting.evaluate_offline(now=now + timedelta(minutes=1)) == 0  # once


def test_a_pending_episode_nothing_evaluates_any_more_goes_without_a_notice(ingest, box):
    webhook_rule(None, for_="10m")
    feed(ingest, box, 3, temperature_c=90.0)
    assert episodes() == ["pending"]
    AlertRule.objects.update(enabled=False)
    assert alerting.evaluate_offline(now=T0 + timedelta(minutes=1)) == 0
    assert not AlertEpisode.objects.exists() and not AlertDelivery.objects.exists()


def test_resolved_episodes_past_the_history_are_deleted_with_their_notices(ingest, box, settings):
    settings.MONITORING_ALERT_HISTORY_DAYS = 30
    webhook_rule(None, for_="0s")
    feed(ingest, box, 2, temperature_c=90.0)
    feed(ingest, box, 1, start=T0 + timedelta(seconds=4), temperature_c=50.0)
    feed(ingest, box, 2, start=T0 + timedelta(seconds=6), temperature_c=90.0)  # firing again
    old, firing = AlertEpisode.objects.order_by("started_at")
    assert (old.state, firing.state) == ("resolved", "firing")
    assert alerting.prune(now=old.ended_at + timedelta(days=29)) == 0
    assert alerting.prune(now=old.ended_at + timedelta(days=31)) == 1
    assert list(AlertEpisode.objects.all()) == [firing]  # a firing episode stays, however old
    assert set(AlertDelivery.objects.values_list("episode_id", flat=True)) == {firing.pk}


def test_a_silenced_episode_is_recorded_and_its_notices_muted(ingest, box):
    webhook_rule(None, for_="0s")
    AlertSilence.objects.create(labels={"rack": "r1"}, until=timezone.now() + timedelta(hours=1))
    feed(ingest, box, 3, temperature_c=90.0)
    episode = AlertEpisode.objects.get()
    assert episode.state == "firing" and episode.silenced
    assert list(AlertDelivery.objects.values_list("state", flat=True)) == ["muted"]


# --- notices --------------------------------------------------------------------------------


def test_a_webhook_notice_is_signed_and_sent_once(ingest, box):
    with Receiver() as receiver:
        webhook_rule(receiver, for_="0s")
        feed(ingest, box, 2, temperature_c=90.0)
        delivery = AlertDelivery.objects.get()
        assert alert_delivery.deliver(delivery.pk) == "sent"
        assert alert_delivery.deliver(delivery.pk) == "sent"  # a second worker, a restart: nothing more
        assert deliver_due_alerts() == 0
        assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.headers["X-TrainWatch-Signature"] == alert_delivery.sign("s3cret", got.body)
    data = got.json()
    assert data["status"] == "firing" and data["value"] == 90.0 and data["rule"] == "hot GPU"
    assert data["server"] == {"slug": box.slug, "name": box.server.name, "labels": {"rack": "r1", "role": "trainer"}}
    assert data["url"].startswith(f"http://localhost:8000/?server={box.slug}&range=24h&from=")


def test_a_broken_channel_is_retried_with_its_error_and_blocks_no_other(ingest, box):
    with Receiver() as broken, Receiver() as working:
        broken.status = 500
        webhook_rule(broken, for_="0s")
        AlertChannel.objects.create(name="backup", kind="slack", url=working.url("/slack"))
        AlertRule.objects.get().notify.add(AlertChannel.objects.get(name="backup"))
        feed(ingest, box, 2, temperature_c=90.0)
        assert deliver_due_alerts() == 2
        failed = AlertDelivery.objects.get(channel__name="ops")
        assert failed.state == "pending" and failed.attempts == 1 and failed.last_error.startswith("HTTP 500")
        assert failed.next_try_at > timezone.now()
        assert AlertDelivery.objects.get(channel__name="backup").state == "sent"
        slack = working.received[0].json()
        assert slack["text"].startswith(f"[FIRING] hot GPU on {box.slug}")
        broken.status = 200
        AlertDelivery.objects.filter(pk=failed.pk).update(next_try_at=timezone.now())
        assert deliver_due_alerts() == 1
        assert AlertDelivery.objects.get(pk=failed.pk).state == "sent" and len(broken.received) == 2


def test_after_the_last_attempt_a_delivery_is_failed_for_good(ingest, box):
    webhook_rule(None, for_="0s")  # port 9: nothing listens
    feed(ingest, box, 2, temperature_c=90.0)
    delivery = AlertDelivery.objects.get()
    for _ in range(alert_delivery.MAX_ATTEMPTS):
        AlertDelivery.objects.filter(pk=delivery.pk).update(next_try_at=timezone.now())
        alert_delivery.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == "failed" and delivery.attempts == alert_delivery.MAX_ATTEMPTS and delivery.last_error


def test_an_email_notice_reaches_a_real_smtp_server(ingest, box, settings):
    with SmtpServer() as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        AlertChannel.objects.create(name="oncall", kind="email", to=["oncall@example.com"])
        import_text("rules: [{name: hot GPU, when: {metric: temperature_c, op: '>', value: 85}, notify: [oncall]}]")
        feed(ingest, box, 2, temperature_c=90.0)
        assert deliver_due_alerts() == 1
        assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["To"] == "oncall@example.com"
    subject = str(make_header(decode_header(message["Subject"])))
    assert subject.startswith(f"[FIRING] hot GPU on {box.slug}: GPU 0 at 98% is throttled")
    assert "/?server=gpu-box-01&range=24h&from=" in message.get_payload(decode=True).decode()


def test_the_test_command_sends_through_a_channel():
    with Receiver() as receiver:
        AlertChannel.objects.create(name="ops", kind="webhook", url=receiver.url(), secret="k")
        out = StringIO()
        call_command("alerts", "test", "ops", stdout=out)
        assert "sent a test notice through ops" in out.getvalue()
        assert receiver.received[0].json()["event"] == "test"
    with pytest.raises(CommandError, match="no channel named 'nope'"):
        call_command("alerts", "test", "nope")


def test_the_silence_command_mutes_a_server(ingest, box):
    webhook_rule(None, for_="0s")
    out = StringIO()
    call_command("alerts", "silence", "--server", box.slug, "--for", "2h", "--comment", "maintenance", stdout=out)
    assert out.getvalue().startswith("silence ")
    feed(ingest, box, 2, temperature_c=90.0)
    assert AlertEpisode.objects.get().silenced
    out = StringIO()
    call_command("alerts", "silences", stdout=out)
    assert f"server={box.slug}" in out.getvalue() and "maintenance" in out.getvalue()


# --- the API --------------------------------------------------------------------------------


def test_the_api_lists_firing_and_recent_episodes(ingest, box, alice, bob):
    webhook_rule(None, for_="0s")
    feed(ingest, box, 3, temperature_c=90.0)
    data = client_for(alice).get("/api/alerts/").json()
    assert data["ok"] is True
    assert [(a["rule"], a["server"], a["status"]) for a in data["firing"]] == [("hot GPU", box.slug, "firing")]
    feed(ingest, box, 2, start=T0 + timedelta(seconds=10), temperature_c=50.0)
    data = client_for(alice).get("/api/alerts/", {"server": box.slug}).json()
    assert data["firing"] == [] and data["recent"][0]["status"] == "resolved"
    assert data["recent"][0]["ended_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert client_for(bob).get("/api/alerts/").status_code == 403
