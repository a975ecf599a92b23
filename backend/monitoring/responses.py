"""One JSON shape for every error: {"ok": false, "error": "<one line a person can act on>"}."""

from __future__ import annotations

from django.http import JsonResponse


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message}, status=status)
