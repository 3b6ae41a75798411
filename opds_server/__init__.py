"""The server: everything that touches the world.

Configuration, HTTP routes, the Calibre reader, storage, caches and the CLI live here, and this is
the one package that imports ``feeds`` and ``sync``. ``opds_server.bootstrap`` and this file import
nothing beyond the standard library, so ``python3 -m opds_server`` can set up its own virtual
environment on a fresh clone.
"""

__version__ = "0.1.0"
