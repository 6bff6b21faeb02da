"""Producer ids for idempotent (and, later, transactional) producers, handed out from controller blocks.

As in Kafka's KRaft mode, a broker asks the controller for a block of ids (AllocateProducerIds) and serves
InitProducerId from it until it runs out. The controller records each block in the metadata log before
answering, so an id is never handed out twice, even across restarts: ids of a block left unused are lost.
"""

from __future__ import annotations

from collections.abc import Callable

from strom.metadata.controller import ProducerIdBlock

PRODUCER_ID_BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE


class ProducerIdManager:
    """The broker's current block of producer ids; ``allocate_block`` asks the controller for the next one."""

    def __init__(self, allocate_block: Callable[[], ProducerIdBlock]) -> None:
        self._allocate_block = allocate_block
        self._next_id = 0
        self._end_id = 0  # exclusive: no block yet

    def next_id(self) -> int:
        """A producer id no one has had before."""
        if self._next_id >= self._end_id:
            block = self._allocate_block()
            self._next_id, self._end_id = block.first_id, block.first_id + block.size
        producer_id = self._next_id
        self._next_id += 1
        return producer_id
