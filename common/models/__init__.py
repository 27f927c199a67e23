"""Envelopes exchanged between services."""

from common.models.actions import DomainAction, DomainActionResponse, ErrorDetail

__all__ = ["DomainAction", "DomainActionResponse", "ErrorDetail"]
