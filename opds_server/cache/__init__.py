"""Shared short-lived state: credential cache, rate-limit counters, the auth epoch.

One async interface (``Store``) over an in-process store (the default) and Redis (``REDIS_URL``),
the way Litestar's stores work. Anything two instances must agree on goes through Redis.
"""
