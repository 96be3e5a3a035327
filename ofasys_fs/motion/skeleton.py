"""Skeleton: the BVH hierarchy (joints, offsets, channels, end sites) with forward kinematics.

ofasys_fs reads skeletons whose root has 3 position and 3 rotation channels and whose other joints have 3
rotation channels, in any order; that is what motion capture exports (CMU, LaFAN, Mixamo, Truebones).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np

from .errors import MotionError

ROTATIONS = ("Xrotation", "Yrotation", "Zrotation")
POSITIONS = ("Xposition", "Yposition", "Zposition")


@dataclasses.dataclass(frozen=True)
class Node:
    """A joint (with channels) or an End Site (no channels) of the hierarchy."""

    name: str
    parent: int  # index of the parent node, -1 for the root
    offset: tuple[float, float, float]
    channels: tuple[str, ...] = ()
    line: Optional[int] = None  # where the node starts in its BVH file, for messages

    @property
    def is_end(self) -> bool:
        return not self.channels


class Skeleton:
    """Nodes in file order (parents before children). `joints` are the nodes with rotation channels, in file
    order: rotation arrays [..., J, 3, 3] follow it, and so do the 6-D features."""

    def __init__(self, nodes: list[Node], source: str = "skeleton"):
        self.nodes, self.source = list(nodes), source
        if not self.nodes or self.nodes[0].parent != -1 or any(n.parent == -1 for n in self.nodes[1:]):
            raise MotionError(source, "expected one ROOT followed by its joints")
        self.joints = [i for i, node in enumerate(self.nodes) if not node.is_end]
        self.joint_of_node = {index: joint for joint, index in enumerate(self.joints)}
        columns, rotation_columns, orders = 0, [], []
        self.position_columns = np.zeros(3, dtype=np.int64)
        for i in self.joints:
            node = self.nodes[i]
            self._check_channels(node, root=i == 0)
            rotations = [c for c in node.channels if c in ROTATIONS]
            rotation_columns.append([columns + node.channels.index(c) for c in rotations])
            orders.append("".join(c[0] for c in rotations))
            if i == 0:
                self.position_columns = np.array([node.channels.index(c) for c in POSITIONS])
            columns += len(node.channels)
        self.num_channels = columns
        self.rotation_columns = np.array(rotation_columns, dtype=np.int64)
        self.rotation_orders = orders
        self.parents = np.array([node.parent for node in self.nodes])
        self.offsets = np.array([node.offset for node in self.nodes], dtype=np.float64)

    def _check_channels(self, node: Node, root: bool) -> None:
        where = f"{self.source}, line {node.line}" if node.line is not None else self.source
        expected = POSITIONS + ROTATIONS if root else ROTATIONS
        kind = "the root" if root else "a joint"
        if sorted(node.channels) != sorted(expected):
            raise MotionError(where, f"{'ROOT' if root else 'JOINT'} {node.name!r} has CHANNELS "
                                     f"{' '.join(node.channels) or '(none)'}; {kind} needs exactly "
                                     f"{', '.join(expected)} (in any order)")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [self.nodes[i].name for i in self.joints]

    def layout(self) -> tuple:
        """What two clips must share to be one skeleton: names, parents and channels (not the bone lengths)."""
        return tuple((node.name, node.parent, node.channels) for node in self.nodes)

    def check_matches(self, other: "Skeleton", what: str, expected: str = "the training skeleton") -> None:
        """Raise MotionError naming `what` and the first node where `other`'s hierarchy differs from this one."""
        if self.layout() == other.layout():
            return
        mine, theirs = self.layout(), other.layout()
        for index, (a, b) in enumerate(zip(mine, theirs)):
            if a != b:
                detail = (f"node {index} is {_describe(b, theirs)} where {expected} has {_describe(a, mine)}")
                break
        else:
            detail = f"it has {len(theirs)} nodes where {expected} has {len(mine)}"
        raise MotionError(what, f"its skeleton ({other.num_joints} joints) differs from {expected} "
                                f"({self.num_joints} joints): {detail}; every clip of a task must use one skeleton")

    def forward_kinematics(self, root_positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """World positions [T, nodes, 3] from root positions [T, 3] and local joint rotations [T, J, 3, 3];
        the root's channels give its position (its OFFSET is not added), every other node sits at its OFFSET
        in its parent's frame."""
        frames = root_positions.shape[0]
        positions = np.zeros((frames, len(self.nodes), 3))
        world = np.zeros((frames, len(self.nodes), 3, 3))
        for i, node in enumerate(self.nodes):
            local = rotations[:, self.joint_of_node[i]] if not node.is_end else np.eye(3)
            if node.parent < 0:
                positions[:, i], world[:, i] = root_positions, local
            else:
                parent_world = world[:, node.parent]
                positions[:, i] = positions[:, node.parent] + parent_world @ self.offsets[i]
                world[:, i] = parent_world @ local
        return positions

    @functools.cached_property
    def rest_height(self) -> float:
        """Vertical extent of the rest pose (all rotations identity): the skeleton's natural length unit."""
        rest = self.forward_kinematics(np.zeros((1, 3)), np.broadcast_to(np.eye(3), (1, self.num_joints, 3, 3)))[0]
        extent = np.ptp(rest[:, 1])
        return float(extent) if extent > 0 else float(np.ptp(rest, axis=0).max() or 1.0)

    def header(self) -> str:
        """The HIERARCHY section in BVH syntax; offsets written exactly (shortest round-trip repr)."""
        lines = ["HIERARCHY"]
        children: dict[int, list[int]] = {}
        for i, node in enumerate(self.nodes):
            children.setdefault(node.parent, []).append(i)

        def write(i: int, depth: int) -> None:
            node, pad = self.nodes[i], "\t" * depth
            keyword = "ROOT " + node.name if node.parent < 0 else ("End Site" if node.is_end else "JOINT " + node.name)
            lines.extend([pad + keyword, pad + "{", pad + "\tOFFSET " + " ".join(map(repr, map(float, node.offset)))])
            if node.channels:
                lines.append(f"{pad}\tCHANNELS {len(node.channels)} {' '.join(node.channels)}")
            for child in children.get(i, []):
                write(child, depth + 1)
            lines.append(pad + "}")

        write(0, 0)
        return "\n".join(lines) + "\n"


def _describe(entry: tuple, layout: tuple) -> str:
    name, parent, channels = entry
    parent_name = layout[parent][0] if parent >= 0 else None
    kind = "End Site" if not channels else "joint"
    return f"{kind} {name!r} (parent {parent_name!r}, channels {' '.join(channels) or 'none'})"
