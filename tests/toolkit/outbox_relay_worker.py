"""An outbox relay as a process of its own, for the tests that run several at once or SIGKILL one.

    python tests/toolkit/outbox_relay_worker.py --url URL --bootstrap HOST:PORT [--stall-before-mark]

It prints ``ready`` once relaying; on SIGTERM it stops cleanly and prints ``sent <rows it sent>``.
``--stall-before-mark`` makes it publish one batch, print ``published <ids>`` and hang before marking the
rows sent: the moment a crash costs duplicates, where the test kills it.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from sqlalchemy import Connection, create_engine

from strom.toolkit.outbox import Outbox, OutboxRelay, _Failure
from strom.toolkit.publisher import Publisher


class StallingRelay(OutboxRelay):
    """A relay that announces its first published batch and then never marks it."""

    def _mark(self, connection: Connection, sent_ids: list[int], failures: list[_Failure]) -> None:
        if sent_ids:
            print("published " + " ".join(map(str, sent_ids)), flush=True)
            threading.Event().wait()
        super()._mark(connection, sent_ids, failures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the database")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--table", default="strom_outbox")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--stall-before-mark", action="store_true")
    options = parser.parse_args(argv)

    engine = create_engine(options.url)
    outbox = Outbox(table_name=options.table)
    publisher = Publisher(bootstrap_servers=options.bootstrap).start()
    relay_class = StallingRelay if options.stall_before_mark else OutboxRelay
    relay = relay_class(
        engine, publisher, outbox, batch_size=options.batch_size, poll_interval_s=options.poll_interval
    )

    def stop(signum: int, frame: Any) -> None:
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    relay.run()
    print(f"sent {relay.sent_count}", flush=True)
    publisher.close()
    engine.dispose()


if __name__ == "__main__":
    main()
