"""ofasys_fs as a fairseq user-dir (docs/fairseq.md):

    fairseq-train DATA --user-dir ofasys_fs/fairseq_plugin --task ofasys --arch micro --criterion ofasys_ce ...
    fairseq-generate DATA --user-dir ofasys_fs/fairseq_plugin --task ofasys --path CKPT --gen-subset test ...

Registers the fairseq task `ofasys`, the model `ofasys` with one arch per ofasys_fs arch known at import, the
criterion `ofasys_ce`, and the torch safe globals fairseq's checkpoints need. fairseq imports this folder as the
top-level module `fairseq_plugin`; the imports here are absolute, so the registering modules load once, as
ofasys_fs.fairseq_plugin.*, however the folder was imported. Nothing in ofasys_fs imports this package.
"""
import os
import sys

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
