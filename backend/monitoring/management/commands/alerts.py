"""Alert rules and channels as code, and silences.

manage.py alerts import FILE [--prune]     create or update by name (--prune: delete the rest)
manage.py alerts export                    the rules file, to standard output
manage.py alerts test CHANNEL              send a test notice now
manage.py alerts silence (--rule NAME | --server SLUG | --label KEY=VALUE ...) --for 2h [--comment TEXT]
manage.py alerts silences                  the silences still in force
manage.py alerts unsilence ID
manage.py alerts status                    firing and pending episodes
"""

from __future__ import annotations

import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from monitoring.alerts import (
    AlertChannel,
    AlertEpisode,
    AlertRule,
    AlertSilence,
    RulesError,
    duration,
    export_text,
    import_text,
    send,
)
from monitoring.models import MonitoredServer


class Command(BaseCommand):
    help = "Alert rules and channels as code (import, export, test) and silences."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser("import", help="create or update channels and rules from a YAML file")
        imp.add_argument("file", help="the rules file, or - for standard input")
        imp.add_argument("--prune", action="store_true", help="delete channels and rules the file lacks")
        imp.add_argument("--if-empty", action="store_true", help="only when no channel or rule exists yet")
        sub.add_parser("export", help="write every channel and rule as YAML")
        test = sub.add_parser("test", help="send a test notice through a channel now")
        test.add_argument("channel")
        silence = sub.add_parser("silence", help="mute a rule, a server or a label selector for a while")
        silence.add_argument("--rule")
        silence.add_argument("--server")
        silence.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        silence.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h, 1d")
        silence.add_argument("--comment", default="")
        sub.add_parser("silences", help="the silences in force")
        unsilence = sub.add_parser("unsilence", help="end a silence now")
        unsilence.add_argument("id", type=int)
        sub.add_parser("status", help="firing and pending episodes")

    def handle(self, *args, action: str, **opts):
        getattr(self, "_" + action.replace("-", "_"))(opts)

    def _import(self, opts):
        if opts["if_empty"] and (AlertRule.objects.exists() or AlertChannel.objects.exists()):
            self.stdout.write("rules exist already: nothing imported")
            return
        text = sys.stdin.read() if opts["file"] == "-" else _read(opts["file"])
        try:
            result = import_text(text, prune=opts["prune"])
        except RulesError as exc:
            raise CommandError(f"{opts['file']}: {exc}") from None
        for word, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("deleted", result.deleted),
        ):
            for name in names:
                self.stdout.write(f"{word} {name}")
        self.stdout.write(
            f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged, "
            f"{len(result.deleted)} deleted"
        )

    def _export(self, opts):
        self.stdout.write(export_text(), ending="")

    def _test(self, opts):
        channel = AlertChannel.objects.filter(name=opts["channel"]).first()
        if channel is None:
            raise CommandError(f"no channel named {opts['channel']!r}")
        now = timezone.now().isoformat()
        data = {
            "status": "firing",
            "event": "test",
            "rule": "test notice",
            "condition": {},
            "server": {"slug": "test", "name": "Test", "labels": {}},
            "started_at": now,
            "fired_at": now,
            "ended_at": None,
            "value": None,
            "label": None,
            "reason": "a test notice from manage.py alerts test",
            "url": "",
        }
        try:
            send(channel, data)
        except Exception as exc:
            raise CommandError(f"{channel.name}: {exc}") from None
        self.stdout.write(f"sent a test notice through {channel.name} ({channel.kind})")

    def _silence(self, opts):
        rule = server = None
        if opts["rule"]:
            rule = AlertRule.objects.filter(name=opts["rule"]).first()
            if rule is None:
                raise CommandError(f"no rule named {opts['rule']!r}")
        if opts["server"]:
            server = MonitoredServer.objects.filter(slug=opts["server"]).first()
            if server is None:
                raise CommandError(f"no server {opts['server']!r}")
        labels = {}
        for item in opts["label"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--label takes KEY=VALUE, not {item!r}")
            labels[key] = value
        if rule is None and server is None and not labels:
            raise CommandError("say what to silence: --rule, --server and/or --label")
        try:
            seconds = duration(opts["duration"], "--for")
        except RulesError as exc:
            raise CommandError(str(exc)) from None
        silence = AlertSilence.objects.create(
            rule=rule,
            server=server,
            labels=labels,
            until=timezone.now() + timedelta(seconds=seconds),
            comment=opts["comment"],
        )
        self.stdout.write(f"silence {silence.pk} until {silence.until.isoformat()}")

    def _silences(self, opts):
        for s in AlertSilence.objects.filter(until__gt=timezone.now()).select_related("rule", "server"):
            what = [f"rule={s.rule.name!r}"] if s.rule else []
            what += [f"server={s.server.slug}"] if s.server else []
            what += [f"{k}={v}" for k, v in s.labels.items()]
            self.stdout.write(f"{s.pk}  until {s.until.isoformat()}  {' '.join(what)}  {s.comment}".rstrip())

    def _unsilence(self, opts):
        if not AlertSilence.objects.filter(pk=opts["id"]).update(until=timezone.now()):
            raise CommandError(f"no silence {opts['id']}")
        self.stdout.write(f"silence {opts['id']} ended")

    def _status(self, opts):
        open_states = [AlertEpisode.FIRING, AlertEpisode.PENDING]
        episodes = AlertEpisode.objects.filter(state__in=open_states).select_related("rule", "server")
        for e in episodes.order_by("state", "started_at"):
            muted = " (silenced)" if e.silenced else ""
            self.stdout.write(f"{e.state:8} {e.rule.name} on {e.server.slug} since {e.started_at.isoformat()}{muted}")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
