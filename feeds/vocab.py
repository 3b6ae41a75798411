"""The OPDS vocabulary: namespaces, link relations and media types, declared once."""

from typing import Final

ATOM_NS: Final = "http://www.w3.org/2005/Atom"
DC_NS: Final = "http://purl.org/dc/terms/"
OPDS_NS: Final = "http://opds-spec.org/2010/catalog"
OPENSEARCH_NS: Final = "http://a9.com/-/spec/opensearch/1.1/"
THR_NS: Final = "http://purl.org/syndication/thread/1.0"
PSE_NS: Final = "http://vaemendis.net/opds-pse/ns"
XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
CALIBRE_NS: Final = "http://calibre.kovidgoyal.net/2009/metadata"

ATOM_NSMAP: Final = {
    None: ATOM_NS,
    "dc": DC_NS,
    "opds": OPDS_NS,
    "opensearch": OPENSEARCH_NS,
    "thr": THR_NS,
    "pse": PSE_NS,
}

# Media types (OPDS 1.2 section 5, OPDS 2.0, OpenSearch 1.1).
NAVIGATION_TYPE: Final = "application/atom+xml;profile=opds-catalog;kind=navigation"
ACQUISITION_TYPE: Final = "application/atom+xml;profile=opds-catalog;kind=acquisition"
ENTRY_TYPE: Final = "application/atom+xml;type=entry;profile=opds-catalog"
OPDS2_FEED_TYPE: Final = "application/opds+json"
OPDS2_PUBLICATION_TYPE: Final = "application/opds-publication+json"
OPENSEARCH_TYPE: Final = "application/opensearchdescription+xml"
AUTHENTICATION_TYPE: Final = "application/opds-authentication+json"
HTML_TYPE: Final = "text/html"

# Link relations.
REL_SELF: Final = "self"
REL_START: Final = "start"
REL_UP: Final = "up"
REL_NEXT: Final = "next"
REL_PREVIOUS: Final = "previous"
REL_FIRST: Final = "first"
REL_LAST: Final = "last"
REL_SEARCH: Final = "search"
REL_ALTERNATE: Final = "alternate"
REL_SUBSECTION: Final = "subsection"
REL_RELATED: Final = "related"
REL_ACQUISITION: Final = "http://opds-spec.org/acquisition"
REL_OPEN_ACCESS: Final = "http://opds-spec.org/acquisition/open-access"
REL_IMAGE: Final = "http://opds-spec.org/image"
REL_THUMBNAIL: Final = "http://opds-spec.org/image/thumbnail"
REL_FACET: Final = "http://opds-spec.org/facet"
REL_SORT_NEW: Final = "http://opds-spec.org/sort/new"
REL_SORT_POPULAR: Final = "http://opds-spec.org/sort/popular"
REL_PSE_STREAM: Final = "http://vaemendis.net/opds-pse/stream"
REL_AUTH_DOCUMENT: Final = "http://opds-spec.org/auth/document"
