"""The inference core shared by the hub, the CLIs and validation: Predictor, Output, evaluate."""
from .evaluate import Evaluation, evaluate, merge_by_index, shard_indices  # noqa: F401
from .outputs import Output  # noqa: F401
from .predictor import Predictor  # noqa: F401
