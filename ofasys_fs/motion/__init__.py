"""Motion capture: BVH in and out, forward kinematics, the motion_6d representation, resampling, windows,
normalisation statistics and stick-figure GIFs (docs/design.md §7)."""
from .bvh import format_bvh, parse_bvh, parse_hierarchy
from .clip import Motion
from .errors import MotionError
from .features import feature_dim, from_6d, to_6d
from .loading import load_motion
from .skeleton import Skeleton

__all__ = ["Motion", "MotionError", "Skeleton", "feature_dim", "format_bvh", "from_6d", "load_motion", "parse_bvh",
           "parse_hierarchy", "to_6d"]
