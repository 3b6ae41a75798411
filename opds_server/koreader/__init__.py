"""KOReader's side that touches the world: the index of document keys of the files we serve
(``keys``) and what progress sync needs around the pure protocol logic of ``sync.koreader``.

Storage goes through ``opds_server.db`` (``document_keys`` for the key index); the HTTP surface is
in ``opds_server.routes``.
"""
