"""OpenSearch 1.1 description documents, as KOReader, Thorium and Moon+ read them."""

from lxml import etree
from lxml.builder import ElementMaker

from feeds import vocab
from feeds.model import SearchDescription

_OS = ElementMaker(namespace=vocab.OPENSEARCH_NS, nsmap={None: vocab.OPENSEARCH_NS})


def render_search_description(description: SearchDescription) -> bytes:
    """Render an OpenSearch description whose ``Url`` template uses only ``{searchTerms}``.

    Args:
        description: names and the result template.

    Returns:
        The UTF-8 XML document (``application/opensearchdescription+xml``).
    """
    parts = [
        _OS.ShortName(description.short_name[:16]),
        _OS.Description(description.description),
        _OS.InputEncoding("UTF-8"),
        _OS.OutputEncoding("UTF-8"),
    ]
    if description.icon_href:
        parts.append(_OS.Image(description.icon_href))
    parts.append(_OS.Url(type=description.type, template=description.template))
    root = _OS.OpenSearchDescription(*parts)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
