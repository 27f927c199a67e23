"""Example microservices built on the toolkit, and the demo that runs them together.

- :mod:`services.inventory`: stock levels; reserves stock for orders (and one action that
  always fails, to show retries and dead letters).
- :mod:`services.orders`: an HTTP API that places orders by calling inventory pseudo-
  synchronously, or asynchronously with a callback that its own workers handle.
- :mod:`services.demo`: ``python -m services.demo`` runs both in one process with a scripted
  client and prints what happened.
"""
