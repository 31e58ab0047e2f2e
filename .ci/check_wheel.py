"""Check a built wheel and sdist: every file of the package (code and data) is in the wheel, the license is
in both. Usage: ``python .ci/check_wheel.py dist/*.whl dist/*.tar.gz``; exit 1 with the missing files."""

import pathlib
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def package_files():
    """Paths (relative to the repository) of every file under aiida_irspec/, caches left out."""
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / "aiida_irspec").rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


def main(wheel, sdist):
    wheel_names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in package_files() if name not in wheel_names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel_names):
        missing.append("LICENSE (in the wheel's .dist-info/licenses)")
    with tarfile.open(sdist) as archive:
        if not any(name.endswith("/LICENSE") for name in archive.getnames()):
            missing.append("LICENSE (in the sdist)")
    for name in missing:
        print(f"Error: not in the built distribution: {name}", file=sys.stderr)
    data = [name for name in package_files() if not name.endswith(".py")]
    print(f"{pathlib.Path(wheel).name}: {len(wheel_names)} files; all {len(package_files())} package files "
          f"({len(data)} data files) present" if not missing else "")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
