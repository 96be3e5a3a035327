"""Rotation conversions in float64 numpy: BVH Euler channels, matrices, the 6-D representation (Zhou et al.,
CVPR 2019: the first two matrix columns), heading about the vertical axis, and quaternion slerp.

Conventions: matrices act on column vectors (v_parent = R v_child); Y is up; BVH channels
"Zrotation Yrotation Xrotation" mean R = Rz(z) Ry(y) Rx(x), the first listed axis outermost.
"""
from __future__ import annotations

import numpy as np

AXES = "XYZ"
GIMBAL_EPS = 1e-12  # cos(middle angle) below this: the first and last axes coincide


def axis_rotation(axis: int, radians: np.ndarray) -> np.ndarray:
    """Rotations by `radians` [...] about axis 0, 1 or 2 (X, Y, Z) -> [..., 3, 3]."""
    radians = np.asarray(radians, dtype=np.float64)
    cos, sin = np.cos(radians), np.sin(radians)
    first, second = (axis + 1) % 3, (axis + 2) % 3
    matrix = np.zeros(radians.shape + (3, 3))
    matrix[..., axis, axis] = 1.0
    matrix[..., first, first] = cos
    matrix[..., first, second] = -sin
    matrix[..., second, first] = sin
    matrix[..., second, second] = cos
    return matrix


def _axis_indices(order: str) -> tuple[int, int, int]:
    if len(order) != 3 or sorted(order.upper()) != list(AXES):
        raise ValueError(f"Euler order {order!r}: expected a permutation of XYZ, e.g. 'ZYX'")
    first, middle, last = (AXES.index(axis) for axis in order.upper())
    return first, middle, last


def euler_to_matrix(degrees: np.ndarray, order: str) -> np.ndarray:
    """Euler angles [..., 3] in degrees, in the axis order given (e.g. "ZYX") -> R = R_1 R_2 R_3 [..., 3, 3]."""
    degrees = np.asarray(degrees, dtype=np.float64)
    radians = np.deg2rad(degrees)
    first, middle, last = _axis_indices(order)
    return (axis_rotation(first, radians[..., 0]) @ axis_rotation(middle, radians[..., 1])
            @ axis_rotation(last, radians[..., 2]))


def matrix_to_euler(matrix: np.ndarray, order: str) -> np.ndarray:
    """Inverse of `euler_to_matrix`: the middle angle in [-90, 90], the others in (-180, 180]; at gimbal lock
    the last angle is 0."""
    i, j, k = _axis_indices(order)
    sign = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for the cyclic orders XYZ, YZX, ZXY
    m = np.asarray(matrix, dtype=np.float64)
    cos_middle = np.hypot(m[..., i, i], m[..., i, j])
    middle = np.arctan2(sign * m[..., i, k], cos_middle)
    locked = cos_middle < GIMBAL_EPS
    first = np.where(locked, np.arctan2(sign * m[..., k, j], m[..., j, j]),
                     np.arctan2(-sign * m[..., j, k], m[..., k, k]))
    last = np.where(locked, 0.0, np.arctan2(-sign * m[..., i, j], m[..., i, i]))
    return np.rad2deg(np.stack([first, middle, last], axis=-1))


def matrix_to_6d(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 6]: the first column followed by the second (OFASys's layout)."""
    return np.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)


def sixd_to_matrix(sixd: np.ndarray) -> np.ndarray:
    """[..., 6] -> the nearest rotation [..., 3, 3] by Gram-Schmidt: exact for the 6-D of a rotation, and a valid
    rotation for any other input (e.g. a network's output) whose two vectors are not parallel."""
    sixd = np.asarray(sixd, dtype=np.float64)
    first = sixd[..., :3] / np.linalg.norm(sixd[..., :3], axis=-1, keepdims=True)
    second = sixd[..., 3:] - np.sum(first * sixd[..., 3:], axis=-1, keepdims=True) * first
    second = second / np.linalg.norm(second, axis=-1, keepdims=True)
    return np.stack([first, second, np.cross(first, second)], axis=-1)


def heading(matrix: np.ndarray) -> np.ndarray:
    """Yaw (radians) of rotations [..., 3, 3]: the angle about Y of their local Z axis projected on the ground."""
    return np.arctan2(matrix[..., 0, 2], matrix[..., 2, 2])


def yaw_matrix(radians: np.ndarray) -> np.ndarray:
    """Rotations about the vertical (Y) axis."""
    return axis_rotation(1, radians)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> unit quaternions [..., 4] (w, x, y, z) with w >= 0, from the largest diagonal term."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - trace], -1),
    ], axis=-2)  # row r is 4 q_r q (r = w, x, y, z): the best conditioned row has the largest q_r
    best = np.argmax(np.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1), axis=-1)
    quaternion = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    quaternion /= np.linalg.norm(quaternion, axis=-1, keepdims=True)
    return np.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """Unit quaternions [..., 4] (w, x, y, z) -> [..., 3, 3]."""
    w, x, y, z = np.moveaxis(np.asarray(quaternion, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def slerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Spherical interpolation between rotation matrices [..., 3, 3] along the shorter arc; weight [...] in [0, 1]
    (0 gives `start` exactly, 1 gives `end` up to rounding)."""
    q0, q1 = matrix_to_quaternion(start), matrix_to_quaternion(end)
    dot = np.sum(q0 * q1, axis=-1)
    q1 = np.where(dot[..., None] < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    angle = np.arccos(dot)
    sin = np.sin(angle)
    weight = np.asarray(weight, dtype=np.float64)
    close = sin < 1e-9  # nearly equal rotations: linear interpolation is exact to rounding
    safe = np.where(close, 1.0, sin)
    w0 = np.where(close, 1 - weight, np.sin((1 - weight) * angle) / safe)
    w1 = np.where(close, weight, np.sin(weight * angle) / safe)
    quaternion = w0[..., None] * q0 + w1[..., None] * q1
    blended = quaternion_to_matrix(quaternion / np.linalg.norm(quaternion, axis=-1, keepdims=True))
    return np.where((weight == 0)[..., None, None], start, blended)
