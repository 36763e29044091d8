"""URIs as logs and error messages may show them. Torch-free (job drivers import it before Ray starts)."""

from __future__ import annotations

import re

__all__ = ["redact_uri"]


def redact_uri(uri: str) -> str:
    """Strip credentials and query strings from a URI so it can be logged."""
    uri = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", str(uri))
    return uri.split("?", 1)[0]
