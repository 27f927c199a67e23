"""A package of declarative workers for the command-line runner's tests."""
