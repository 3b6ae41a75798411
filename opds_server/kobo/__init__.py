"""Kobo sync's side that touches the world: devices, the library as a Kobo sees it, sessions.

The protocol's decisions live in ``sync.kobo``; ``routes/kobo.py`` is the HTTP surface.
"""
