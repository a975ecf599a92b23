"""A Redis cache that forgives Redis being down.

The cache holds only what can be lost (sign-in attempt counters): when Redis does not
answer, reads miss and writes are dropped, and the request goes on instead of failing.
"""

from __future__ import annotations

import logging
from functools import wraps

import redis
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)


def _missing(key, default=None, version=None):
    return default


# What each method answers while Redis is down.
_WHEN_DOWN = {
    "get": _missing,
    "get_many": lambda *args, **kwargs: {},
    "set_many": lambda *args, **kwargs: [],
    # As if added: a caller taking a lock with add() (allauth's rate limits) goes on, uncounted.
    "add": lambda *args, **kwargs: True,
    **dict.fromkeys(("touch", "delete", "has_key"), lambda *args, **kwargs: False),
    **dict.fromkeys(("set", "incr", "delete_many", "clear"), lambda *args, **kwargs: None),
}


def _forgiving(name: str):
    method, when_down = getattr(RedisCache, name), _WHEN_DOWN[name]

    @wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            log.warning("cache unavailable (%s): %s", name, exc)
            return when_down(*args, **kwargs)

    return call


class ForgivingRedisCache(RedisCache):
    pass


for _name in _WHEN_DOWN:
    setattr(ForgivingRedisCache, _name, _forgiving(_name))
