"""The catalogue: which feeds exist, what each holds, and their links, as ``feeds.model`` Structs.

Both OPDS representations are built here from the same queries; an ``Hrefs`` decides only where
the links point and how they are typed.
"""
