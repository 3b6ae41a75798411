"""Feed building: plain frozen Structs in, bytes out.

This package turns the catalogue model of ``feeds.model`` into OPDS 1.2 Atom, OPDS 2.0 JSON and
OpenSearch documents. It does no I/O: it never looks at a request, reads settings, calls the clock,
logs or queries anything, and it imports neither ``opds_server`` nor ``sync`` nor any I/O library.
Hrefs arrive ready-made and timestamps arrive in UTC.
"""
