"""Files of a Debian package without root: the installed copy when there is one, else the .deb fetched once with
`apt-get download` and unpacked with `dpkg-deb -x` into a cache folder (used for the Reuters texts of r-cran-tm
and the CMU motion-capture clips of assimp-testmodels)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ofasys_fs"


class PackageUnavailable(RuntimeError):
    """The package's files are neither installed nor cached, and apt-get could not fetch them."""


def run(command: list[str], cwd: Path, package: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise PackageUnavailable(
            f"the files come from Debian's package {package}, fetched with `apt-get download {package}` and "
            f"unpacked with `dpkg-deb -x`, but {command[0]} is not installed; run on Debian/Ubuntu, install the "
            f"package, or unpack it by hand into the cache folder") from err


def package_files(package: str, folder: str, cache_dir: Path, expected: tuple[str, ...] = ()) -> Path:
    """The folder `folder` (a path inside the package, e.g. "usr/share/assimp/models/BVH") holding every name
    in `expected`: from the installed package when present, else from `cache_dir/<package>/`, unpacked there
    on first use."""
    found = find_package_files(package, folder, cache_dir, expected)
    if found is not None:
        return found
    target = cache_dir / package / Path(folder).name
    with tempfile.TemporaryDirectory() as work:
        deb = _download(package, Path(work))
        unpacked = run(["dpkg-deb", "-x", str(deb), "unpacked"], Path(work), package)
        if unpacked.returncode != 0:
            raise PackageUnavailable(f"`dpkg-deb -x {deb.name}` failed: {unpacked.stderr.strip()[-500:]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(work) / "unpacked" / folder, target)
        (target.parent / "VERSION").write_text(deb.name + "\n")
    if not _complete(target, expected):
        raise PackageUnavailable(f"{package} has no {', '.join(expected)} in /{folder}")
    return target


def find_package_files(package: str, folder: str, cache_dir: Path, expected: tuple[str, ...] = ()) -> Optional[Path]:
    """Where `package_files` finds the folder without fetching anything: installed, cached, or None."""
    for candidate in (Path("/") / folder, cache_dir / package / Path(folder).name):
        if _complete(candidate, expected):
            return candidate
    return None


def _complete(folder: Path, expected: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / name).exists() for name in expected)


def _download(package: str, work: Path) -> Path:
    result = run(["apt-get", "download", package], work, package)
    if result.returncode != 0:  # a fresh machine has no package lists yet
        update = run(["apt-get", "update"], work, package)
        result = run(["apt-get", "download", package], work, package) if update.returncode == 0 else update
    debs: list[Path] = sorted(work.glob(f"{package}_*.deb"))
    deb: Optional[Path] = debs[0] if debs else None
    if result.returncode != 0 or deb is None:
        raise PackageUnavailable(f"`apt-get download {package}` failed: {result.stderr.strip()[-500:]}")
    return deb
