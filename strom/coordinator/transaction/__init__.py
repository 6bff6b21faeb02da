"""Transactions (KIP-98): transactional ids, their producers' epochs, and commit or abort across partitions.

`TransactionCoordinator` is the state machine the request handlers call; `TransactionStateTopic` stores its
records in ``__transaction_state`` and replays them at start-up.
"""

from strom.coordinator.transaction.coordinator import (
    ProducerIdAndEpoch,
    TransactionConfig,
    TransactionCoordinator,
)
from strom.coordinator.transaction.state import TransactionMetadata, TxnState
from strom.coordinator.transaction.storage import TRANSACTION_STATE_TOPIC, TransactionStateTopic

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "ProducerIdAndEpoch",
    "TransactionConfig",
    "TransactionCoordinator",
    "TransactionMetadata",
    "TransactionStateTopic",
    "TxnState",
]
