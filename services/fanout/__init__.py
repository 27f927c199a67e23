"""Fan-out: one ``users.created`` event, three subscriber groups, each getting every event.

:func:`welcome_email` (group ``fanout.email``), :func:`track_signup` (``fanout.analytics``)
and :func:`create_contact` (``fanout.crm``) read the same topic independently: a slow or
failing group never holds the others back, and each group's consumers share its load.
"""

from services.fanout.workers import (
    GROUPS,
    SINKS,
    Sinks,
    create_contact,
    track_signup,
    welcome_email,
)

__all__ = ["GROUPS", "SINKS", "Sinks", "create_contact", "track_signup", "welcome_email"]
