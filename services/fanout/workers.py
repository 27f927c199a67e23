"""The fan-out example's three groups on ``users.created`` (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.messaging import worker

__all__ = ["GROUPS", "SINKS", "Sinks", "create_contact", "track_signup", "welcome_email"]

TOPIC = "users.created"
GROUPS = ("fanout.email", "fanout.analytics", "fanout.crm")


@dataclass
class Sinks:
    """What each group did, so that the demo and the tests can look."""

    emails: list[str] = field(default_factory=list)
    signups: list[str] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        self.emails.clear()
        self.signups.clear()
        self.contacts.clear()


SINKS = Sinks()


@worker(topic=TOPIC, group_id="fanout.email")
async def welcome_email(user: dict[str, Any]) -> None:
    SINKS.emails.append(f"Welcome, {user['name']}! <{user['email']}>")


@worker(topic=TOPIC, group_id="fanout.analytics", consumers=2)
async def track_signup(user: dict[str, Any]) -> None:
    SINKS.signups.append(user["id"])


@worker(topic=TOPIC, group_id="fanout.crm")
async def create_contact(user: dict[str, Any]) -> None:
    SINKS.contacts[user["email"]] = user["name"]
