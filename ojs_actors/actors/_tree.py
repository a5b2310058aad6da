"""A read-only picture of a running supervision tree, for operators (the admin UI's
live tree): pure, no I/O, no await, so it sees one consistent moment of the tree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._actor import ActorCell
from ._supervisor import Supervisor, _Child

NodeState = Literal["running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class TreeNode:
    name: str
    kind: Literal["supervisor", "actor"]
    type: str
    """The class of the running instance (of the last one, when not running)."""
    state: NodeState
    restarts: int
    """How often its supervisor restarted it (this supervisor instance's count)."""
    restart: str | None = None
    """Its restart type (permanent, transient, temporary); ``None`` for the root."""
    mailbox_depth: int | None = None
    """Messages waiting in an actor's mailbox; ``None`` for a supervisor (it has none)."""
    mailbox_capacity: int | None = None
    strategy: str | None = None
    """A supervisor's restart strategy."""
    children: tuple[TreeNode, ...] = ()
    children_total: int = 0
    """A supervisor's children, including any beyond the listing's limit."""


def supervision_tree(root: Supervisor, limit: int | None = None) -> TreeNode:
    """``root`` and everything below it; each supervisor lists at most ``limit`` children
    (in start order), so a tree of many thousand workflow actors stays cheap to show."""
    state: NodeState = "running" if root.started and not root._closed else "stopped"
    return _supervisor_node(root, root.name, state, 0, None, limit)


def _supervisor_node(
    supervisor: Supervisor,
    name: str,
    state: NodeState,
    restarts: int,
    restart: str | None,
    limit: int | None,
) -> TreeNode:
    # the supervisor's own bookkeeping, read in place: a copy per child would be a cost
    # on every poll, and nothing here awaits, so it cannot change while being read
    members = list(supervisor._children.values())
    listed = members if limit is None else members[:limit]
    return TreeNode(
        name=name,
        kind="supervisor",
        type=type(supervisor).__name__,
        state=state,
        restarts=restarts,
        restart=restart,
        strategy=supervisor.strategy.value,
        children=tuple(_child_node(supervisor, child, limit) for child in listed),
        children_total=len(members),
    )


def _child_node(parent: Supervisor, child: _Child, limit: int | None) -> TreeNode:
    state: NodeState
    if child.running and not child.stopping:
        state = "running"
    elif child.stopping or parent._closed:
        state = "stopped"
    else:  # exited, and its supervisor has not started it again yet
        state = "restarting"
    runner = child.runner
    if isinstance(runner, Supervisor):
        return _supervisor_node(
            runner, child.spec.id, state, child.restarts, child.spec.restart.value, limit
        )
    actor_type = type(runner.actor).__name__ if isinstance(runner, ActorCell) else "Actor"
    return TreeNode(
        name=child.spec.id,
        kind="actor",
        type=actor_type,
        state=state,
        restarts=child.restarts,
        restart=child.spec.restart.value,
        mailbox_depth=len(child.mailbox),
        mailbox_capacity=child.mailbox.capacity,
    )


__all__ = ["NodeState", "TreeNode", "supervision_tree"]
