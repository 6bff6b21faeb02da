"""Kafka's protocol error codes, and the exception handlers raise to answer with one.

The codes and their retriable flags are Kafka's (clients decide whether to retry from them); the
descriptions are short explanations for logs and for responses that carry an error message.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """A Kafka error code, with `retriable` (may a client simply retry?) and a default `message`."""

    retriable: bool
    message: str

    def __new__(cls, code: int, retriable: bool, message: str) -> ErrorCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.retriable = retriable
        member.message = message
        return member

    @classmethod
    def from_code(cls, code: int) -> ErrorCode:
        """The member for `code`; codes this broker does not know map to UNKNOWN_SERVER_ERROR."""
        member = cls._value2member_map_.get(code)
        return member if isinstance(member, ErrorCode) else cls.UNKNOWN_SERVER_ERROR

    UNKNOWN_SERVER_ERROR = (-1, False, "The server hit an unexpected error while handling the request.")
    NONE = (0, False, "")
    OFFSET_OUT_OF_RANGE = (1, False, "The requested offset is outside the range the server holds.")
    CORRUPT_MESSAGE = (2, True, "A record failed its checksum, has an invalid size, or is otherwise corrupt.")
    UNKNOWN_TOPIC_OR_PARTITION = (3, True, "This server does not host this topic-partition.")
    INVALID_FETCH_SIZE = (4, False, "The requested fetch size is invalid.")
    LEADER_NOT_AVAILABLE = (5, True, "The partition has no leader right now; an election is in progress.")
    NOT_LEADER_OR_FOLLOWER = (6, True, "This server is not the leader (or not a replica) of the partition.")
    REQUEST_TIMED_OUT = (7, True, "The request timed out.")
    BROKER_NOT_AVAILABLE = (8, False, "The broker is not available.")
    REPLICA_NOT_AVAILABLE = (9, True, "The replica is not available for this topic-partition.")
    MESSAGE_TOO_LARGE = (10, False, "The request contains a record batch larger than the server accepts.")
    STALE_CONTROLLER_EPOCH = (11, False, "The controller has moved to another broker.")
    OFFSET_METADATA_TOO_LARGE = (12, False, "The metadata attached to the committed offset is too large.")
    NETWORK_EXCEPTION = (13, True, "The server disconnected before a response was received.")
    COORDINATOR_LOAD_IN_PROGRESS = (14, True, "The coordinator is still loading its state.")
    COORDINATOR_NOT_AVAILABLE = (15, True, "The coordinator is not available.")
    NOT_COORDINATOR = (16, True, "This server is not the coordinator for this group or transaction.")
    INVALID_TOPIC_EXCEPTION = (17, False, "The topic name is invalid, or the operation is not allowed on it.")
    RECORD_LIST_TOO_LARGE = (18, False, "The record batch is larger than the topic's segment size.")
    NOT_ENOUGH_REPLICAS = (19, True, "Fewer in-sync replicas than min.insync.replicas: write rejected.")
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = (20, True, "Written, but to fewer in-sync replicas than required.")
    INVALID_REQUIRED_ACKS = (21, False, "The produce request has an invalid acks value.")
    ILLEGAL_GENERATION = (22, False, "The group generation id is not the current one.")
    INCONSISTENT_GROUP_PROTOCOL = (23, False, "The member's protocols are incompatible with the group's.")
    INVALID_GROUP_ID = (24, False, "The group id is invalid.")
    UNKNOWN_MEMBER_ID = (25, False, "The coordinator does not know this member id.")
    INVALID_SESSION_TIMEOUT = (26, False, "The session timeout is outside the broker's allowed range.")
    REBALANCE_IN_PROGRESS = (27, False, "The group is rebalancing; the member must rejoin.")
    INVALID_COMMIT_OFFSET_SIZE = (28, False, "The offset commit is too large.")
    TOPIC_AUTHORIZATION_FAILED = (29, False, "Not authorized to access the topic.")
    GROUP_AUTHORIZATION_FAILED = (30, False, "Not authorized to access the group.")
    CLUSTER_AUTHORIZATION_FAILED = (31, False, "Not authorized for this cluster operation.")
    INVALID_TIMESTAMP = (32, False, "A record timestamp is outside the accepted range.")
    UNSUPPORTED_SASL_MECHANISM = (33, False, "The broker does not support this SASL mechanism.")
    ILLEGAL_SASL_STATE = (34, False, "The request is not valid in the current SASL state.")
    UNSUPPORTED_VERSION = (35, False, "This version of the API is not supported.")
    TOPIC_ALREADY_EXISTS = (36, False, "A topic with this name already exists.")
    INVALID_PARTITIONS = (37, False, "The number of partitions is invalid.")
    INVALID_REPLICATION_FACTOR = (38, False, "The replication factor is invalid.")
    INVALID_REPLICA_ASSIGNMENT = (39, False, "The replica assignment is invalid.")
    INVALID_CONFIG = (40, False, "The configuration is invalid.")
    NOT_CONTROLLER = (41, True, "This server is not the active controller.")
    INVALID_REQUEST = (42, False, "The request is malformed or not valid for this broker; see its logs.")
    UNSUPPORTED_FOR_MESSAGE_FORMAT = (43, False, "The request needs a newer message format.")
    POLICY_VIOLATION = (44, False, "The request violates a configured policy.")
    OUT_OF_ORDER_SEQUENCE_NUMBER = (45, False, "The producer sequence number is out of order.")
    DUPLICATE_SEQUENCE_NUMBER = (46, False, "The producer sequence number is a duplicate.")
    INVALID_PRODUCER_EPOCH = (47, False, "The producer epoch is old: a newer producer took over.")
    INVALID_TXN_STATE = (48, False, "The transactional operation is invalid in the current state.")
    INVALID_PRODUCER_ID_MAPPING = (49, False, "The producer id is not assigned to this transactional id.")
    INVALID_TRANSACTION_TIMEOUT = (50, False, "The transaction timeout exceeds max.transaction.timeout.ms.")
    CONCURRENT_TRANSACTIONS = (51, True, "Another operation on this transaction is still in progress.")
    TRANSACTION_COORDINATOR_FENCED = (52, False, "The transaction coordinator is no longer current.")
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = (53, False, "Not authorized to use this transactional id.")
    SECURITY_DISABLED = (54, False, "Security features are disabled.")
    OPERATION_NOT_ATTEMPTED = (55, False, "The operation was not attempted because another one failed.")
    KAFKA_STORAGE_ERROR = (56, True, "A disk error occurred while accessing the log.")
    LOG_DIR_NOT_FOUND = (57, False, "The log directory does not exist.")
    SASL_AUTHENTICATION_FAILED = (58, False, "SASL authentication failed.")
    UNKNOWN_PRODUCER_ID = (59, False, "The broker has no state for this producer id.")
    REASSIGNMENT_IN_PROGRESS = (60, False, "A partition reassignment is in progress.")
    DELEGATION_TOKEN_AUTH_DISABLED = (61, False, "Delegation token authentication is disabled.")
    DELEGATION_TOKEN_NOT_FOUND = (62, False, "The delegation token was not found.")
    DELEGATION_TOKEN_OWNER_MISMATCH = (63, False, "The principal does not own this delegation token.")
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = (64, False, "Delegation tokens need an authenticated channel.")
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = (65, False, "Not authorized for this delegation token.")
    DELEGATION_TOKEN_EXPIRED = (66, False, "The delegation token has expired.")
    INVALID_PRINCIPAL_TYPE = (67, False, "The principal type is not supported.")
    NON_EMPTY_GROUP = (68, False, "The group is not empty.")
    GROUP_ID_NOT_FOUND = (69, False, "The group does not exist.")
    FETCH_SESSION_ID_NOT_FOUND = (70, True, "The fetch session was not found.")
    INVALID_FETCH_SESSION_EPOCH = (71, True, "The fetch session epoch is invalid.")
    LISTENER_NOT_FOUND = (72, True, "The leader has no endpoint on the listener the request came through.")
    TOPIC_DELETION_DISABLED = (73, False, "Topic deletion is disabled.")
    FENCED_LEADER_EPOCH = (74, True, "The request's leader epoch is older than the broker's.")
    UNKNOWN_LEADER_EPOCH = (75, True, "The request's leader epoch is newer than the broker's.")
    UNSUPPORTED_COMPRESSION_TYPE = (76, False, "The requesting client does not support the compression type.")
    STALE_BROKER_EPOCH = (77, False, "The broker epoch has changed.")
    OFFSET_NOT_AVAILABLE = (78, True, "The leader's high watermark has not caught up; offset unavailable.")
    MEMBER_ID_REQUIRED = (79, False, "The group member needs a member id to join; rejoin with the given id.")
    PREFERRED_LEADER_NOT_AVAILABLE = (80, True, "The preferred leader is not available.")
    GROUP_MAX_SIZE_REACHED = (81, False, "The group has reached its maximum size.")
    FENCED_INSTANCE_ID = (82, False, "Another member with the same group.instance.id took over.")
    ELIGIBLE_LEADERS_NOT_AVAILABLE = (83, True, "No eligible leader is available for the election.")
    ELECTION_NOT_NEEDED = (84, True, "The leader election is not needed.")
    NO_REASSIGNMENT_IN_PROGRESS = (85, False, "No partition reassignment is in progress.")
    GROUP_SUBSCRIBED_TO_TOPIC = (86, False, "The group is subscribed to the topic; its offsets stay.")
    INVALID_RECORD = (87, False, "A record failed the broker's validation.")
    UNSTABLE_OFFSET_COMMIT = (88, True, "Pending transactional offset commits exist for the partitions.")
    THROTTLING_QUOTA_EXCEEDED = (89, True, "The throttling quota has been exceeded.")
    PRODUCER_FENCED = (90, False, "A newer producer with the same transactional id fenced this one.")
    RESOURCE_NOT_FOUND = (91, False, "The resource does not exist.")
    DUPLICATE_RESOURCE = (92, False, "The resource appears more than once in the request.")
    UNACCEPTABLE_CREDENTIAL = (93, False, "The credential does not meet the broker's requirements.")
    INCONSISTENT_VOTER_SET = (94, False, "The voter set differs from the receiver's.")
    INVALID_UPDATE_VERSION = (95, False, "The update version is invalid.")
    FEATURE_UPDATE_FAILED = (96, False, "The feature update could not be applied.")
    PRINCIPAL_DESERIALIZATION_FAILURE = (97, False, "The forwarded principal could not be deserialized.")
    SNAPSHOT_NOT_FOUND = (98, False, "The requested snapshot does not exist.")
    POSITION_OUT_OF_RANGE = (99, False, "The requested position is outside the snapshot.")
    UNKNOWN_TOPIC_ID = (100, True, "This server does not host a topic with this id.")
    DUPLICATE_BROKER_REGISTRATION = (101, False, "This broker id is already registered.")
    BROKER_ID_NOT_REGISTERED = (102, False, "This broker id is not registered.")
    INCONSISTENT_TOPIC_ID = (103, True, "The topic id differs from the one in the log.")
    INCONSISTENT_CLUSTER_ID = (104, False, "The cluster id differs from the receiver's.")
    TRANSACTIONAL_ID_NOT_FOUND = (105, False, "The transactional id does not exist.")
    FETCH_SESSION_TOPIC_ID_ERROR = (106, True, "The fetch session met topics with and without ids.")
    INELIGIBLE_REPLICA = (107, False, "The new ISR contains at least one ineligible replica.")
    NEW_LEADER_ELECTED = (108, False, "A new leader was elected; the update was not applied.")
    OFFSET_MOVED_TO_TIERED_STORAGE = (109, False, "The offset has moved to tiered storage.")
    FENCED_MEMBER_EPOCH = (110, False, "The member epoch is fenced; the member must rejoin with epoch 0.")
    UNRELEASED_INSTANCE_ID = (111, False, "The group.instance.id is still used by another member.")
    UNSUPPORTED_ASSIGNOR = (112, False, "The group does not support the requested assignor.")
    STALE_MEMBER_EPOCH = (113, False, "The member epoch is stale; retry with the current epoch.")
    MISMATCHED_ENDPOINT_TYPE = (114, False, "The request went to an endpoint of the wrong type.")
    UNSUPPORTED_ENDPOINT_TYPE = (115, False, "This endpoint type does not support the request.")
    UNKNOWN_CONTROLLER_ID = (116, False, "This controller id is not known.")
    UNKNOWN_SUBSCRIPTION_ID = (117, False, "The client telemetry subscription id is unknown.")
    TELEMETRY_TOO_LARGE = (118, False, "The client telemetry payload is too large.")
    INVALID_REGISTRATION = (119, False, "The controller considers the broker registration invalid.")
    TRANSACTION_ABORTABLE = (120, False, "The transaction failed; aborting it lets the producer continue.")
    INVALID_RECORD_STATE = (121, False, "The record state is invalid; the acknowledgement was not applied.")
    SHARE_SESSION_NOT_FOUND = (122, True, "The share session was not found.")
    INVALID_SHARE_SESSION_EPOCH = (123, True, "The share session epoch is invalid.")
    FENCED_STATE_EPOCH = (124, False, "The share-group state epoch does not match.")
    INVALID_VOTER_KEY = (125, False, "The voter key does not match the receiving replica.")
    DUPLICATE_VOTER = (126, False, "The voter is already in the voter set.")
    VOTER_NOT_FOUND = (127, False, "The voter is not in the voter set.")
    INVALID_REGULAR_EXPRESSION = (128, False, "The regular expression is invalid.")
    REBOOTSTRAP_REQUIRED = (129, False, "The client's metadata is stale; it must rebootstrap.")
    STREAMS_INVALID_TOPOLOGY = (130, False, "The streams topology is invalid.")
    STREAMS_INVALID_TOPOLOGY_EPOCH = (131, False, "The streams topology epoch is invalid.")
    STREAMS_TOPOLOGY_FENCED = (132, False, "The streams topology epoch is outdated.")
    SHARE_SESSION_LIMIT_REACHED = (133, True, "The limit on share sessions has been reached.")


class KafkaError(Exception):
    """Raised by broker code to answer a request (or one part of it) with a Kafka error code."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.code.retriable

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message or self.code.message}"
