"""KOReader progress-sync ("kosync") protocol logic: document keys and the sync decisions.

Pure: callers hand in open byte streams, names and ``now``; these modules return values. This
package imports neither ``opds_server`` nor ``feeds``, and no I/O library (no SQLAlchemy, no HTTP
client, no file-system walking): storage is reached only through Protocols declared here.
"""
