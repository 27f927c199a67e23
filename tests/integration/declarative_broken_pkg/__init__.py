"""A package that fails at import."""

raise RuntimeError("broken package")
