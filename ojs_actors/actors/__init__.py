"""The actor runtime: actors with bounded mailboxes, supervised OTP-style on trio."""

from ._actor import Actor, ActorCell, ActorRef, SnapshotStore
from ._errors import ActorCrashed, ActorError, ActorStopped, MailboxFull, SupervisorEscalation
from ._mailbox import Envelope, Mailbox, Reply
from ._supervisor import ActorKilled, Backoff, ChildSpec, Restart, Strategy, Supervisor
from ._tree import TreeNode, supervision_tree

__all__ = [
    "Actor", "ActorCell", "ActorCrashed", "ActorError", "ActorKilled", "ActorRef", "ActorStopped",
    "Backoff", "ChildSpec", "Envelope", "Mailbox", "MailboxFull", "Reply", "Restart", "SnapshotStore",
    "Strategy", "Supervisor", "SupervisorEscalation", "TreeNode", "supervision_tree",
]  # fmt: skip
