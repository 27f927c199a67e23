"""Keeping secrets out of text: connection URLs as logs, reprs and error messages show them."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "SECRET_QUERY_OPTIONS", "redact_url"]

REDACTED = "***"
# Query options of a Redis URL whose values are secrets.
SECRET_QUERY_OPTIONS = frozenset({"password", "ssl_password"})


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@``, ``?password=``) replaced by ``***``.

    A URL that cannot be taken apart is reduced to its scheme: what cannot be parsed cannot be
    known to hold no secret.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _scheme_only(url)
    if not parts.scheme:
        return REDACTED if url else url
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        # A '/', '?' or '#' in an unquoted password splits it: which part is secret is unknown.
        return _scheme_only(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name in SECRET_QUERY_OPTIONS for name, _ in pairs):
            query = urlencode(
                [(n, REDACTED if n in SECRET_QUERY_OPTIONS else v) for n, v in pairs], safe="*"
            )
    if netloc == parts.netloc and query == parts.query and not parts.fragment:
        return url  # nothing secret: byte for byte as given
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _scheme_only(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://{REDACTED}" if sep else REDACTED
