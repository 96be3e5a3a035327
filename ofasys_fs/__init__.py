"""ofasys_fs: one generalist encoder-decoder trained on many multi-modal tasks declared by instructions."""
from importlib import import_module

from .registry import (  # noqa: F401
    import_user_dir,
    load_builtins,
    register_adaptor,
    register_criterion,
    register_generator,
    register_image_tokenizer,
    register_lr_scheduler,
    register_metric,
    register_model,
    register_model_architecture,
    register_optimizer,
    register_preprocessor,
    register_reranker,
    register_task,
)

__version__ = "0.1.0"

# Public names resolved on first use, so `import ofasys_fs` stays light and free of import cycles.
_LAZY = {
    "Instruction": "ofasys_fs.instruction",
    "InstructionError": "ofasys_fs.instruction",
    "register_attr_schema": "ofasys_fs.instruction",
    "VocabConfig": "ofasys_fs.vocab",
    "Vocabulary": "ofasys_fs.vocab",
    "Task": "ofasys_fs.tasks.base",
    "GeneralistModel": "ofasys_fs.models.generalist",
    "Trainer": "ofasys_fs.engine.trainer",
    "OFASys": "ofasys_fs.hub",
    "Output": "ofasys_fs.hub",
    "train_image_tokenizer": "ofasys_fs.engine.tokenizer_training",
    "TokenizerTrainConfig": "ofasys_fs.engine.tokenizer_training",
    "load_image_tokenizer": "ofasys_fs.image_tokenizers.files",
    "save_image_tokenizer": "ofasys_fs.image_tokenizers.files",
    "convert_ofa": "ofasys_fs.pretrained.convert",
}

__all__ = sorted(_LAZY) + ["import_user_dir", "load_builtins", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ofasys_fs' has no attribute {name!r}")
