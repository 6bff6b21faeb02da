"""Coordinators: the sans-I/O state machines behind consumer groups and transactions.

Each coordinator is a plain object driven by calls and a clock. Its durable state lives in an internal,
compacted topic (`internal_topic`), written through the broker's ordinary log path and replayed into the
coordinator at start-up.
"""
