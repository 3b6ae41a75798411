"""Kobo sync: the device's wire format, sync tokens, the snapshot diff and KEPUB conversion.

Pure: the server hands in library snapshots, stored reading states and ``now``; these modules
return what to send and the next token. Storage is reached only through the Protocols in
``sync.kobo.ports``.
"""
