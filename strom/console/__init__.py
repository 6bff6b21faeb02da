"""Strom's web console: a browser UI and JSON API for any Kafka cluster, Strom or Apache Kafka.

The console is only a client: ``cluster`` reaches the cluster through the Kafka protocol, ``metrics``
samples it, ``api`` and ``app`` serve both over HTTP, and ``static`` holds the pages. It runs as
``strom console`` or as the child process ``strom serve`` starts beside its broker.

This module stays free of imports so that ``strom serve`` can read the defaults below without loading the
console's dependencies into the broker.
"""

DEFAULT_CONSOLE_HOST = "127.0.0.1"
DEFAULT_CONSOLE_PORT = 8989
