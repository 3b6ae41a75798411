"""Kobo and KOReader sync protocol logic.

Wire formats as Structs, sync-token encoding and the sync decisions as pure functions. Storage is
reached only through the Protocols declared here; this package imports neither ``opds_server`` nor
``feeds`` nor any I/O library.
"""
