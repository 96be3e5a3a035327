"""--user-dir: import plugin packages by path, memoised, and again in spawned workers."""
import multiprocessing
import textwrap

import pytest

from ofasys_fs import registry
from ofasys_fs.errors import PluginError
from ofasys_fs.registry import import_user_dir, imported_user_dirs, reimport_user_dirs

PLUGIN = textwrap.dedent('''
    from ofasys_fs import contracts, register_metric

    @register_metric("{name}_count")
    class Count(contracts.Metric):
        def compute(self, predictions, references):
            return {{"count": float(len(predictions))}}
''')


def make_plugin(root, name):
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text(PLUGIN.format(name=name))
    return folder


def test_absolute_and_relative_paths_memoised(tmp_path, monkeypatch):
    folder = make_plugin(tmp_path, "plugin_abs_rel")
    assert import_user_dir(str(folder)) == "plugin_abs_rel"
    assert registry.build_metric("plugin_abs_rel_count").compute([1, 2, 3], [1, 2, 3]) == {"count": 3.0}
    monkeypatch.chdir(tmp_path)
    assert import_user_dir("plugin_abs_rel") == "plugin_abs_rel"  # same folder again: no double registration
    assert str(folder) in imported_user_dirs()


def test_several_dirs_and_clear_errors(tmp_path):
    for name in ("plugin_one", "plugin_two"):
        import_user_dir(str(make_plugin(tmp_path, name)))
    assert {"plugin_one_count", "plugin_two_count"} <= set(registry.METRIC_REGISTRY.names())
    with pytest.raises(PluginError, match="no such folder"):
        import_user_dir(str(tmp_path / "missing"))
    (tmp_path / "not_a_package").mkdir()
    with pytest.raises(PluginError, match="no __init__.py"):
        import_user_dir(str(tmp_path / "not_a_package"))
    other = tmp_path / "elsewhere"
    other.mkdir()
    make_plugin(other, "plugin_one")
    with pytest.raises(PluginError, match="already imported"):
        import_user_dir(str(other / "plugin_one"))


def test_a_broken_plugin_can_be_fixed_and_reimported(tmp_path):
    folder = tmp_path / "plugin_broken"
    folder.mkdir()
    (folder / "__init__.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=r"plugin failed at .*__init__.py, line 1: RuntimeError: boom"):
        import_user_dir(str(folder))
    (folder / "__init__.py").write_text(PLUGIN.format(name="plugin_broken"))
    assert import_user_dir(str(folder)) == "plugin_broken"


def _names_in_spawned_worker(paths, queue):
    reimport_user_dirs(paths)
    queue.put(registry.METRIC_REGISTRY.names())


def test_spawned_worker_reimports(tmp_path):
    import_user_dir(str(make_plugin(tmp_path, "plugin_spawned")))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_names_in_spawned_worker, args=(imported_user_dirs(), queue))
    proc.start()
    names = queue.get(timeout=60)
    proc.join(timeout=30)
    assert "plugin_spawned_count" in names
