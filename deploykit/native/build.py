"""Build the native data plane into this package: ``python -m deploykit.native.build``.

Needs a C++17 compiler, CMake, Debian's gRPC C++ packages and pybind11::

    apt-get install -y libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev pkg-config cmake g++
    pip install pybind11

The extension lands beside this file (``_dataplane.*.so``), where :mod:`deploykit.native` finds it.
Exit code 0 built, 1 build failed, 2 a prerequisite is missing (the message names it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APT_PACKAGES = "libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev pkg-config cmake g++"


def missing_prerequisites() -> list[str]:
    """What the build needs and this machine lacks (empty: ready to build)."""
    missing = [tool for tool in ("cmake", "pkg-config", "protoc", "g++") if shutil.which(tool) is None]
    if shutil.which("pkg-config") and subprocess.run(["pkg-config", "--exists", "grpc++"]).returncode != 0:
        missing.append("grpc++ (pkg-config)")
    try:
        import pybind11  # noqa: F401
    except ImportError:
        missing.append("pybind11 (pip install pybind11)")
    return missing


def build(build_dir: Path, jobs: int, quiet: bool = False) -> Path:
    """Configure and compile with CMake; copy the extension into the package. Returns its path."""
    import pybind11

    output = subprocess.DEVNULL if quiet else None
    configure = [
        "cmake", "-S", str(HERE), "-B", str(build_dir), f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", "-DCMAKE_BUILD_TYPE=Release",
    ]  # fmt: skip
    subprocess.run(configure, check=True, stdout=output)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs)], check=True, stdout=output)
    built = sorted(build_dir.glob("_dataplane*.so"))
    if not built:
        raise FileNotFoundError(f"the build produced no _dataplane*.so in {build_dir}")
    target = HERE / built[0].name
    shutil.copy2(built[0], target.with_suffix(".tmp"))
    os.replace(target.with_suffix(".tmp"), target)  # a running server keeps the old file's mapping
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=HERE / "build", help="CMake build directory")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile jobs")
    parser.add_argument("--quiet", action="store_true", help="only errors")
    args = parser.parse_args(argv)
    missing = missing_prerequisites()
    if missing:
        print(
            f"error: cannot build the native data plane: missing {', '.join(missing)}; "
            f"on Debian/Ubuntu: apt-get install -y {APT_PACKAGES} && pip install pybind11",
            file=sys.stderr,
        )
        return 2
    try:
        target = build(args.build_dir, args.jobs, args.quiet)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"error: building the native data plane failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
