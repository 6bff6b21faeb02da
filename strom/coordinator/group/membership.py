"""The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup, as Kafka runs them.

A rebalance has two phases. In the join phase (PreparingRebalance) every member sends JoinGroup and the
coordinator parks the requests until all known members have rejoined or the rebalance timeout (the largest
of the members' ``rebalance.timeout.ms``) passes; members that did not rejoin are dropped. Completing the
phase starts a new generation, picks the protocol (assignor) all members support, and answers everyone; the
leader's answer lists all members with their subscriptions. In the sync phase (CompletingRebalance) every
member sends SyncGroup; the leader's carries the assignment, which is stored in ``__consumer_offsets`` and
then handed to each member, and the group is Stable. A member that never syncs is dropped after the
rebalance timeout.

Between rebalances members heartbeat. A member that misses ``session.timeout.ms`` is dropped; any change in
membership starts a rebalance, which members learn of from REBALANCE_IN_PROGRESS on their next heartbeat (or
commit). Also from Kafka:

- KIP-394: from JoinGroup v4 a new dynamic member first gets MEMBER_ID_REQUIRED with an id, and only counts
  once it rejoins with that id (so a client that gives up never becomes a member).
- KIP-345 static membership: a member with ``group.instance.id`` keeps its place across restarts. Rejoining
  without its member id within its session timeout, it gets a new id and its old assignment, with no
  rebalance when its metadata leaves the group's protocol unchanged; requests under the old id are fenced
  with FENCED_INSTANCE_ID. Static members are not dropped for missing a rebalance, only by their session.
- ``group.initial.rebalance.delay.ms``: a new group waits this long for more members before its first
  rebalance, extended while members keep arriving, up to the rebalance timeout.

Incremental (cooperative-sticky) rebalancing needs nothing more: its extra rounds are ordinary rejoins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.state import ClassicGroup, GroupState, Member, Respond, new_member_id
from strom.coordinator.group.timer import Timer
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages.heartbeat import HeartbeatRequest
from strom.protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from strom.protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from strom.protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

log = logging.getLogger(__name__)

EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

#: Stores the group with the given assignment as its metadata record; raises KafkaError when the append fails.
StoreGroup = Callable[[ClassicGroup, dict[str, bytes]], None]

JoinedMember = JoinGroupResponse.JoinGroupResponseMember
LeavingMember = LeaveGroupRequest.MemberIdentity
LeftMember = LeaveGroupResponse.MemberResponse


def _join_error(code: ErrorCode, member_id: str = "") -> JoinGroupResponse:
    return JoinGroupResponse(error_code=code, member_id=member_id)


def append_error(code: ErrorCode) -> ErrorCode:
    """What a client is told when writing to ``__consumer_offsets`` failed (Kafka's mapping)."""
    if code in (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.REQUEST_TIMED_OUT,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return code


class Membership:
    """Runs the rebalance protocol over the coordinator's groups; timers drive every timeout."""

    def __init__(
        self,
        groups: dict[str, ClassicGroup],
        timer: Timer,
        config: GroupConfig,
        clock: Callable[[], int],
        store_group: StoreGroup,
    ) -> None:
        self._groups = groups
        self._timer = timer
        self._config = config
        self._clock = clock
        self._store_group = store_group

    # ================================================================== JoinGroup
    def join_group(
        self,
        request: JoinGroupRequest,
        client_id: str,
        client_host: str,
        api_version: int,
        respond: Respond,
    ) -> None:
        """Park the JoinGroup until its join phase completes; `respond` gets the JoinGroupResponse."""
        config = self._config
        if not request.group_id:
            respond(_join_error(ErrorCode.INVALID_GROUP_ID, request.member_id))
            return
        if not config.min_session_timeout_ms <= request.session_timeout_ms <= config.max_session_timeout_ms:
            respond(_join_error(ErrorCode.INVALID_SESSION_TIMEOUT, request.member_id))
            return
        is_unknown_member = request.member_id == ""
        group = self._groups.get(request.group_id)
        if group is None:  # Kafka creates the group even if this join is then refused: it stays Empty
            if not is_unknown_member:
                respond(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, request.member_id))
                return
            group = ClassicGroup(request.group_id, state_timestamp=self._clock())
            self._groups[request.group_id] = group
        if not self._accepts_joining_member(group, request.member_id):
            group.remove(request.member_id)
            respond(_join_error(ErrorCode.GROUP_MAX_SIZE_REACHED))
        elif is_unknown_member:
            self._join_new_member(group, request, client_id, client_host, api_version, respond)
        else:
            self._join_existing_member(group, request, client_id, client_host, api_version, respond)

    def _accepts_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        """group.max.size: new members are refused once the group is full; known ones always pass."""
        limit = self._config.max_size
        if group.is_in(EMPTY, DEAD):
            return True
        if group.is_in(PREPARING_REBALANCE):
            member = group.members.get(member_id)
            # Counting awaiting members (not all members) also turns away the last to rejoin when the limit
            # was lowered below the group's size.
            return (
                member is not None and member.awaiting_join is not None
            ) or group.num_awaiting_join < limit
        return member_id in group.members or len(group.members) < limit

    def _join_new_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        client_id: str,
        client_host: str,
        api_version: int,
        respond: Respond,
    ) -> None:
        if group.is_in(DEAD):
            respond(_join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(request.protocol_type, [p.name for p in request.protocols]):
            respond(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        member_id = new_member_id(client_id, request.group_instance_id)
        if request.group_instance_id is not None:
            existing = group.static_member_id(request.group_instance_id)
            if existing is not None:
                self._replace_static_member(group, request, existing, member_id, api_version, respond)
            else:
                self._add_member_then_rebalance(group, request, member_id, client_id, client_host, respond)
        elif api_version >= 4:
            # KIP-394: hand out the id and wait for the member to come back with it.
            group.pending_join_members.add(member_id)
            self._schedule_heartbeat_expiry(group.group_id, member_id, request.session_timeout_ms)
            respond(_join_error(ErrorCode.MEMBER_ID_REQUIRED, member_id))
        else:
            self._add_member_then_rebalance(group, request, member_id, client_id, client_host, respond)

    def _join_existing_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        client_id: str,
        client_host: str,
        api_version: int,
        respond: Respond,
    ) -> None:
        member_id = request.member_id
        protocols = [(p.name, p.metadata) for p in request.protocols]
        if group.is_in(DEAD):
            respond(_join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(request.protocol_type, [name for name, _ in protocols]):
            respond(_join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if group.is_pending_member(member_id):
            if request.group_instance_id is not None:  # pending ids are only ever handed to dynamic members
                respond(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                return
            self._add_member_then_rebalance(group, request, member_id, client_id, client_host, respond)
            return
        try:
            group.validate_member(member_id, request.group_instance_id)
        except KafkaError as exc:
            respond(_join_error(exc.code, member_id))
            return
        member = group.members[member_id]
        if group.is_in(PREPARING_REBALANCE):
            self._update_member_then_rebalance(group, member, request, respond)
        elif group.is_in(COMPLETING_REBALANCE):
            if member.matches(protocols):
                # A repeat of a join whose response was lost: answer with the current generation.
                respond(self._joined_response(group, member, with_members=group.is_leader(member_id)))
            else:
                self._update_member_then_rebalance(group, member, request, respond)
        elif group.is_in(STABLE):
            if group.is_leader(member_id) or not member.matches(protocols):
                # The leader rejoins to trigger a rebalance (e.g. new partitions); others when they change.
                self._update_member_then_rebalance(group, member, request, respond)
            else:
                respond(self._joined_response(group, member, with_members=False))
        else:  # Empty: the member is gone, so it must rejoin from scratch
            respond(_join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _add_member_then_rebalance(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        member_id: str,
        client_id: str,
        client_host: str,
        respond: Respond,
    ) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=request.group_instance_id,
            client_id=client_id,
            client_host=client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=[(p.name, p.metadata) for p in request.protocols],
            is_new=True,
        )
        if group.is_in(PREPARING_REBALANCE) and group.previous_state is EMPTY:
            group.new_member_added = True  # lets the initial rebalance delay be extended
        group.add(member, respond)
        # A new member cannot heartbeat while its JoinGroup is parked, so it gets a generous join timeout
        # instead of its session timeout: a client that went away does not stay in the rebalance forever.
        self._schedule_heartbeat_expiry(group.group_id, member_id, self._config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(group, f"adding new member {member_id}")

    def _update_member_then_rebalance(
        self, group: ClassicGroup, member: Member, request: JoinGroupRequest, respond: Respond
    ) -> None:
        group.update_member(
            member,
            [(p.name, p.metadata) for p in request.protocols],
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            respond,
        )
        self._maybe_prepare_rebalance_or_complete_join(group, f"member {member.member_id} rejoined")

    def _replace_static_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        old_member_id: str,
        member_id: str,
        api_version: int,
        respond: Respond,
    ) -> None:
        """A known static member rejoined without its member id: it takes over under a new id (KIP-345)."""
        assert request.group_instance_id is not None
        current_leader = group.leader_id
        old = group.replace_static_member(request.group_instance_id, old_member_id, member_id)
        group.complete_join(old, _join_error(ErrorCode.FENCED_INSTANCE_ID, old_member_id))
        group.complete_sync(old, SyncGroupResponse(error_code=ErrorCode.FENCED_INSTANCE_ID))
        self._timer.cancel(_heartbeat_key(group.group_id, old_member_id))
        member = group.members[member_id]
        self._schedule_heartbeat_expiry(group.group_id, member_id, member.session_timeout_ms)
        previous = (member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms)
        group.update_member(
            member,
            [(p.name, p.metadata) for p in request.protocols],
            request.rebalance_timeout_ms,
            request.session_timeout_ms,
            respond,
        )
        if group.is_in(STABLE):
            if group.select_protocol() != group.protocol_name:
                self._maybe_prepare_rebalance_or_complete_join(
                    group, f"static member {request.group_instance_id} rejoined with another protocol"
                )
                return
            # Same protocol: no rebalance, just remember the new member id.
            try:
                self._store_group(group, {m.member_id: m.assignment for m in group.members.values()})
            except KafkaError as exc:
                group.update_member(member, *previous, None)
                group.replace_static_member(request.group_instance_id, member_id, old_member_id)
                self._timer.cancel(_heartbeat_key(group.group_id, member_id))
                self._schedule_heartbeat_expiry(group.group_id, old_member_id, previous[2])
                respond(
                    JoinGroupResponse(
                        error_code=append_error(exc.code),
                        generation_id=group.generation_id,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol_name,
                        leader=current_leader or "",
                    )
                )
                return
            if api_version >= 9:
                is_leader = group.is_leader(member_id)
                response = self._joined_response(group, member, with_members=is_leader)
                response.skip_assignment = is_leader
            else:
                # The old leader id, so a restarted leader does not recompute an assignment nobody asked for.
                response = self._joined_response(group, member, with_members=False)
                response.leader = current_leader or ""
            group.complete_join(member, response)
        elif group.is_in(COMPLETING_REBALANCE):
            # The leader may already be assigning to the old id: start over so the new id gets partitions.
            self._prepare_rebalance(group, f"static member {request.group_instance_id} rejoined")
        else:
            self._maybe_complete_join_phase(group)

    # ------------------------------------------------------------------ the join phase
    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join_phase(group)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_in(COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_with_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        initial = group.is_in(EMPTY)
        if initial:
            delay = self._config.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            self._schedule_initial_join(group.group_id, delay, remaining)
        group.transition_to(PREPARING_REBALANCE, self._clock())
        log.info(
            "preparing to rebalance group %s with old generation %d (%s)",
            group.group_id,
            group.generation_id,
            reason,
        )
        if initial:
            return
        if group.has_all_members_joined():
            self._complete_join(group)
        else:
            self._schedule_join_completion(group.group_id, group.rebalance_timeout_ms())

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> None:
        """Complete the join phase once everyone is in, but never inside the initial rebalance delay."""
        if (
            group.is_in(PREPARING_REBALANCE)
            and group.previous_state is not EMPTY
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _schedule_initial_join(self, group_id: str, delay_ms: int, remaining_ms: int) -> None:
        def expire() -> None:
            group = self._groups.get(group_id)
            if group is None:
                return
            if group.new_member_added and remaining_ms != 0:
                group.new_member_added = False
                next_delay = min(self._config.initial_rebalance_delay_ms, remaining_ms)
                self._schedule_initial_join(group_id, next_delay, max(remaining_ms - delay_ms, 0))
            else:
                self._complete_join(group)

        self._timer.schedule(_join_key(group_id), self._clock() + delay_ms, expire)

    def _schedule_join_completion(self, group_id: str, timeout_ms: int) -> None:
        def expire() -> None:
            group = self._groups.get(group_id)
            if group is not None:
                self._complete_join(group)

        self._timer.schedule(_join_key(group_id), self._clock() + timeout_ms, expire)

    def _complete_join(self, group: ClassicGroup) -> None:
        """End the join phase: drop dynamic members that did not rejoin, start the next generation."""
        self._timer.cancel(_join_key(group.group_id))
        for member in group.not_yet_rejoined():
            if not member.is_static:
                group.remove(member.member_id)
                self._timer.cancel(_heartbeat_key(group.group_id, member.member_id))
                log.info(
                    "group %s dropped member %s: it did not rejoin in time", group.group_id, member.member_id
                )
        if group.is_in(DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members that have not rejoined remain: wait for them (or their sessions) longer.
            self._schedule_join_completion(group.group_id, group.rebalance_timeout_ms())
            return
        group.init_next_generation(self._clock())
        if group.is_in(EMPTY):
            log.info("group %s with generation %d is now empty", group.group_id, group.generation_id)
            try:
                self._store_group(group, {})
            except KafkaError as exc:  # no member depends on it; the next change is stored again
                log.warning("could not store empty group %s: %s", group.group_id, exc)
            return
        log.info(
            "group %s stabilising generation %d with %d members",
            group.group_id,
            group.generation_id,
            len(group.members),
        )
        for member in list(group.members.values()):
            response = self._joined_response(group, member, with_members=group.is_leader(member.member_id))
            group.complete_join(member, response)
            self._schedule_heartbeat_expiry(group.group_id, member.member_id, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        self._schedule_pending_sync_expiry(group)

    def _joined_response(
        self, group: ClassicGroup, member: Member, *, with_members: bool
    ) -> JoinGroupResponse:
        members = []
        if with_members:
            members = [
                JoinedMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
                for m in group.members.values()
            ]
        return JoinGroupResponse(
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            member_id=member.member_id,
            members=members,
        )

    # ================================================================== SyncGroup
    def sync_group(self, request: SyncGroupRequest, respond: Respond) -> None:
        """Answer now, or park a member's SyncGroup until the leader's brings the assignment."""
        group = self._groups.get(request.group_id)
        if group is None:
            respond(SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID))
            return
        error = self._sync_error(group, request)
        if error is not None:
            respond(SyncGroupResponse(error_code=error))
        elif group.is_in(PREPARING_REBALANCE):
            respond(SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS))
        elif group.is_in(COMPLETING_REBALANCE):
            member = group.members[request.member_id]
            member.awaiting_sync = respond
            self._remove_pending_sync_member(group, request.member_id)
            if group.is_leader(request.member_id):
                self._store_assignment(group, request)
        elif group.is_in(STABLE):
            self._remove_pending_sync_member(group, request.member_id)
            member = group.members[request.member_id]
            respond(
                SyncGroupResponse(
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    assignment=member.assignment,
                )
            )

    @staticmethod
    def _sync_error(group: ClassicGroup, request: SyncGroupRequest) -> ErrorCode | None:
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            group.validate_member(request.member_id, request.group_instance_id)
        except KafkaError as exc:
            return exc.code
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if _inconsistent(request.protocol_type, group.protocol_type) or _inconsistent(
            request.protocol_name, group.protocol_name
        ):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    def _store_assignment(self, group: ClassicGroup, request: SyncGroupRequest) -> None:
        """The leader's SyncGroup: store the assignment, then hand every member its part (empty if none)."""
        given = {a.member_id: a.assignment for a in request.assignments}
        assignment = {member_id: given.get(member_id, b"") for member_id in group.members}
        missing = [member_id for member_id in group.members if member_id not in given]
        if missing:
            log.warning(
                "group %s generation %d: no assignment for %s", group.group_id, group.generation_id, missing
            )
        try:
            self._store_group(group, assignment)
        except KafkaError as exc:
            error = append_error(exc.code)
            self._reset_and_propagate_assignment_with_error(group, error)
            self._maybe_prepare_rebalance_or_complete_join(
                group, f"storing the assignment failed: {error.name}"
            )
            return
        for member in group.members.values():
            member.assignment = assignment[member.member_id]
        self._propagate_assignment(group, ErrorCode.NONE)
        group.transition_to(STABLE, self._clock())
        log.info("group %s is stable at generation %d", group.group_id, group.generation_id)

    def _reset_and_propagate_assignment_with_error(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error is ErrorCode.NONE
        for member in group.members.values():
            response = SyncGroupResponse(
                error_code=error,
                protocol_type=group.protocol_type if ok else None,
                protocol_name=group.protocol_name if ok else None,
                assignment=member.assignment,
            )
            if group.complete_sync(member, response):
                # Its session was on hold while it waited; it starts again now.
                self._schedule_heartbeat_expiry(group.group_id, member.member_id, member.session_timeout_ms)

    def _schedule_pending_sync_expiry(self, group: ClassicGroup) -> None:
        group_id, generation = group.group_id, group.generation_id

        def expire() -> None:
            group = self._groups.get(group_id)
            if (
                group is None
                or group.generation_id != generation
                or not group.is_in(COMPLETING_REBALANCE, STABLE)
            ):
                return
            if group.pending_sync_members:
                late = sorted(group.pending_sync_members)
                for member_id in late:
                    group.remove(member_id)
                    self._timer.cancel(_heartbeat_key(group_id, member_id))
                self._prepare_rebalance(group, f"members {late} did not send SyncGroup in time")

        self._timer.schedule(_sync_key(group_id), self._clock() + group.rebalance_timeout_ms(), expire)

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.pending_sync_members or not group.is_in(COMPLETING_REBALANCE, STABLE):
            self._timer.cancel(_sync_key(group.group_id))

    def _remove_sync_expiration(self, group: ClassicGroup) -> None:
        group.pending_sync_members.clear()
        self._timer.cancel(_sync_key(group.group_id))

    # ================================================================== Heartbeat
    def heartbeat(self, request: HeartbeatRequest) -> ErrorCode:
        group = self._groups.get(request.group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        try:
            group.validate_member(request.member_id, request.group_instance_id)
        except KafkaError as exc:
            return exc.code
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        self.keep_alive(group, request.member_id)
        if group.is_in(PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def keep_alive(self, group: ClassicGroup, member_id: str) -> None:
        """Push the member's session expiry out by its session timeout (heartbeats and offset commits)."""
        member = group.members.get(member_id)
        if member is not None:
            self._schedule_heartbeat_expiry(group.group_id, member_id, member.session_timeout_ms)

    def _schedule_heartbeat_expiry(self, group_id: str, member_id: str, timeout_ms: int) -> None:
        self._timer.schedule(
            _heartbeat_key(group_id, member_id),
            self._clock() + timeout_ms,
            lambda: self._expire_heartbeat(group_id, member_id),
        )

    def _expire_heartbeat(self, group_id: str, member_id: str) -> None:
        group = self._groups.get(group_id)
        if group is None or group.is_in(DEAD):
            return
        if group.is_pending_member(member_id):
            log.info("group %s: pending member %s never joined with its id", group_id, member_id)
            group.remove(member_id)
            if group.is_in(PREPARING_REBALANCE) and group.has_all_members_joined():
                self._complete_join(group)
            return
        member = group.members.get(member_id)
        if member is None:
            return
        # A member parked in JoinGroup or SyncGroup is alive by definition (its session restarts when it is
        # answered); a new member is not, since it joined but never completed a rebalance.
        if not member.is_new and (member.awaiting_join is not None or member.awaiting_sync is not None):
            return
        log.info("group %s: member %s missed its session timeout and is removed", group_id, member_id)
        self._remove_member_and_update_group(group, member, "session timeout")

    def _remove_member_and_update_group(self, group: ClassicGroup, member: Member, reason: str) -> None:
        # A new member may still be parked in JoinGroup: answer it, so a live client simply rejoins.
        group.complete_join(member, _join_error(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        if group.is_in(STABLE, COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group, f"removing {member.member_id}: {reason}")
        elif group.is_in(PREPARING_REBALANCE) and group.has_all_members_joined():
            self._complete_join(group)

    # ================================================================== LeaveGroup
    def leave_group(self, group_id: str, leaving: list[LeavingMember]) -> LeaveGroupResponse:
        """LeaveGroup, with the member list of v3+ (older versions are one member without instance id)."""
        group = self._groups.get(group_id)
        if group is None:
            return LeaveGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(DEAD):
            return LeaveGroupResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
        results: list[LeftMember] = []
        removed = []
        for identity in leaving:
            error = ErrorCode.NONE
            if identity.member_id == "":
                # An admin removing a static member by instance id alone.
                member_id = group.static_member_id(identity.group_instance_id)
                if member_id is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                else:
                    self._remove_leaving_member(group, member_id, identity.reason)
                    removed.append(member_id)
            elif group.is_pending_member(identity.member_id):
                group.remove(identity.member_id)
                self._timer.cancel(_heartbeat_key(group_id, identity.member_id))
            else:
                try:
                    group.validate_member(identity.member_id, identity.group_instance_id)
                except KafkaError as exc:
                    error = exc.code
                else:
                    self._remove_leaving_member(group, identity.member_id, identity.reason)
                    removed.append(identity.member_id)
            results.append(LeftMember(identity.member_id, identity.group_instance_id, error))
        if any(r.error_code == ErrorCode.NONE for r in results):
            if group.is_in(STABLE, COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group, f"members {removed} left")
            elif group.is_in(PREPARING_REBALANCE):
                self._maybe_complete_join_phase(group)
        return LeaveGroupResponse(members=results)

    def _remove_leaving_member(self, group: ClassicGroup, member_id: str, reason: str | None) -> None:
        self._timer.cancel(_heartbeat_key(group.group_id, member_id))
        log.info("group %s: member %s left (reason: %s)", group.group_id, member_id, reason or "not provided")
        member = group.members[member_id]
        group.complete_join(member, _join_error(ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member_id)

    # ================================================================== loading and deletion
    def on_loaded(self, group: ClassicGroup) -> None:
        """A group replayed from the log: its members' sessions start now; an oversized group rebalances."""
        for member in group.members.values():
            self._schedule_heartbeat_expiry(group.group_id, member.member_id, member.session_timeout_ms)
        if len(group.members) > self._config.max_size:
            self._prepare_rebalance(group, f"loaded with {len(group.members)} members, over group.max.size")

    def forget(self, group: ClassicGroup) -> None:
        """The group is gone (deleted or replaced by a replayed record): drop its timers and parked calls."""
        for member_id, member in group.members.items():
            self._timer.cancel(_heartbeat_key(group.group_id, member_id))
            group.complete_join(member, _join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            group.complete_sync(member, SyncGroupResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE))
        for member_id in group.pending_join_members:
            self._timer.cancel(_heartbeat_key(group.group_id, member_id))
        self._timer.cancel(_join_key(group.group_id))
        self._timer.cancel(_sync_key(group.group_id))


def _inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current


def _heartbeat_key(group_id: str, member_id: str) -> tuple[str, str, str]:
    return ("heartbeat", group_id, member_id)


def _join_key(group_id: str) -> tuple[str, str]:
    return ("join", group_id)


def _sync_key(group_id: str) -> tuple[str, str]:
    return ("sync", group_id)
