"""ofasys_fs as a fairseq user-dir (docs/fairseq.md):

    fairseq-train DATA --user-dir ofasys_fs/fairseq_plugin --task ofasys --arch micro --criterion ofasys_ce ...
    fairseq-generate DATA --user-dir ofasys_fs/fairseq_plugin --task ofasys --path CKPT --gen-subset test ...

Registers the fairseq task `ofasys`, the model `ofasys` with one arch per ofasys_fs arch known at import, the
criterion `ofasys_ce`, and the torch safe globals fairseq's checkpoints need. fairseq imports this folder as the
top-level module `fairseq_plugin`; the imports here are absolute, so the registering modules load once, as
ofasys_fs.fairseq_plugin.*, however the folder was imported. Nothing in ofasys_fs imports this package.
"""
import contextlib
import logging
import os
import sys


@contextlib.contextmanager
def root_logging_kept():
    """Importing fairseq configures the root logger (fairseq-fixed's wav2vec2_classification sets DEBUG with a
    stderr handler); when this package is the first to import it, that is undone. fairseq's own commands import
    fairseq first and keep their set-up."""
    root, first = logging.getLogger(), "fairseq" not in sys.modules
    level, handlers = root.level, list(root.handlers)
    yield
    if first:
        root.setLevel(level)
        for handler in [handler for handler in root.handlers if handler not in handlers]:
            root.removeHandler(handler)


with root_logging_kept():
    from ofasys_fs.fairseq_plugin import criterion, task  # noqa: F401  (importing registers them)
    from ofasys_fs.fairseq_plugin.checkpoints import allow_fairseq_globals
    from ofasys_fs.fairseq_plugin.model import register_archs

allow_fairseq_globals()
register_archs()

# fairseq put the folder above this one (the ofasys_fs package folder) first on sys.path to import us; left
# there, its modules (config, data, models, ...) would shadow top-level packages of those names.
_PACKAGE_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "fairseq_plugin" and sys.path and os.path.abspath(sys.path[0]) == _PACKAGE_FOLDER:
    del sys.path[0]
