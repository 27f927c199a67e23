"""A module that fails at import (the runner reports it in one line)."""

raise RuntimeError("broken on purpose")
