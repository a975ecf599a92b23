"""Retention per tier, for DBAs.

manage.py retention show              each tier: policy, size, chunks, oldest/newest, compression
manage.py retention set TIER DAYS     change a policy (raw, 1m or 1h)
manage.py retention apply --dry-run   the chunks that would be dropped, with their sizes
manage.py retention apply             drop them (with a progress bar)
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from monitoring import tiers


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


class Command(BaseCommand):
    help = "Show, change and apply the retention policy of each tier (raw, 1m, 1h)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show", help="each tier: policy, size on disk, chunks, oldest and newest data")
        change = sub.add_parser("set", help="change a tier's policy")
        change.add_argument("tier", choices=tiers.RETENTION_TIERS)
        change.add_argument("days", type=int)
        run = sub.add_parser("apply", help="drop the chunks past each policy")
        run.add_argument("--dry-run", action="store_true", help="only list what would be dropped")

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _show(self, options):
        rows = []
        for r in tiers.retention_report():
            ratio = f"{r.compression_ratio:.1f}x ({r.compressed_chunks} chunks)" if r.compression_ratio else "-"
            rows.append(
                [
                    r.tier,
                    f"{r.days} d",
                    r.relation,
                    human_bytes(r.bytes),
                    str(r.chunks),
                    when(r.oldest),
                    when(r.newest),
                    ratio,
                ]
            )
        headers = ["tier", "keep", "relation", "size", "chunks", "oldest", "newest", "compression"]
        self.stdout.write(table(headers, rows))

    def _set(self, options):
        try:
            policy = tiers.set_retention_policy(options["tier"], options["days"])
        except tiers.RetentionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{policy.tier} data is now kept {policy.days} days. "
            "Preview what that drops with: manage.py retention apply --dry-run"
        )

    def _apply(self, options):
        plan = tiers.chunks_to_drop()
        if not plan:
            self.stdout.write("Nothing to drop: every chunk is within its tier's policy.")
            return
        total = sum(c.bytes for c in plan)
        if options["dry_run"]:
            rows = [
                [c.tier, c.relation, c.name, when(c.range_start), when(c.range_end), human_bytes(c.bytes)] for c in plan
            ]
            self.stdout.write(table(["tier", "relation", "chunk", "from", "to", "size"], rows))
            self.stdout.write(f"\n{len(plan)} chunk(s), {human_bytes(total)} would be dropped. Nothing was changed.")
            return
        bar = tqdm(total=len(plan), unit="chunk", desc="dropping", file=sys.stderr)
        try:
            dropped = tiers.apply_retention(progress=lambda chunk: bar.update(1))
        except tiers.RetentionError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        self.stdout.write(f"Dropped {len(dropped)} chunk(s), {human_bytes(sum(c.bytes for c in dropped))}.")
