"""Example ofasys_fs plugin: load it with `--user-dir user_dir` or `import_user_dir("user_dir")`.

It adds one of each pluggable kind: an adaptor, a criterion, a generator and a task that uses them.
"""
from . import adaptor, criterion, generator, task  # noqa: F401  (importing registers them)
