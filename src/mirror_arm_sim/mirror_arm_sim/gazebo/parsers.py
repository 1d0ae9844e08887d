"""Real parsers for the generated Gazebo artefacts (used by the tests and by `--check`).

- SDFormat: the SDFormat C++ library itself (libsdformat), through the tiny program
  ``sdf_check.cc`` shipped beside this module. It is compiled on first use against whichever
  ``sdformat<N>`` pkg-config module is installed (Debian 12: ``libsdformat-dev`` = sdformat12;
  Gazebo Harmonic: sdformat14) and cached under ``$XDG_CACHE_HOME/mirror_arm_sim``. It runs the
  checks of ``gz sdf -k`` and prints what the library resolved (poses, axes, limits, cameras).
- URDF: urdfdom (the C++ parser ``robot_state_publisher`` uses) through its ``check_urdf`` tool
  (Debian ``liburdfdom-tools``), and ``urdf_parser_py`` (PyPI ``urdfdom-py``).

Every function here says "not available" (``None`` / raises ``ParserUnavailable``) rather than
pretending: callers (tests) skip with the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SDF_CHECK_SRC = Path(__file__).with_name("sdf_check.cc")
SDFORMAT_PKGS = ("sdformat16", "sdformat15", "sdformat14", "sdformat13", "sdformat12")


class ParserUnavailable(RuntimeError):
    """The real parser is not installed on this machine."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mirror_arm_sim"


def sdformat_pkg() -> str | None:
    """The pkg-config module name of the installed SDFormat library, or None."""
    if shutil.which("pkg-config") is None:
        return None
    for pkg in SDFORMAT_PKGS:
        if subprocess.run(["pkg-config", "--exists", pkg], check=False).returncode == 0:
            return pkg
    return None


def sdf_check_binary() -> Path:
    """Path to the compiled ``sdf_check`` (compiled once per source/library version)."""
    pkg = sdformat_pkg()
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if pkg is None or cxx is None:
        raise ParserUnavailable(
            "libsdformat development files (pkg-config sdformat12..16) or a C++ compiler not found; "
            "Debian: apt-get install libsdformat-dev g++"
        )
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", pkg], check=True, capture_output=True, text=True
    ).stdout.split()
    version = subprocess.run(
        ["pkg-config", "--modversion", pkg], check=True, capture_output=True, text=True
    ).stdout.strip()
    key = hashlib.sha256(SDF_CHECK_SRC.read_bytes() + f"{pkg}-{version}".encode()).hexdigest()[:16]
    out = _cache_dir() / f"sdf_check-{key}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        cmd = [cxx, "-O1", "-std=c++17", str(SDF_CHECK_SRC), *flags, "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ParserUnavailable(f"compiling sdf_check against {pkg} failed:\n{res.stderr[-2000:]}")
        os.replace(tmp, out)
    return out


@dataclass
class SdfReport:
    """What libsdformat made of a file: ``errors`` (empty = valid) and the resolved ``data``."""

    errors: list[str]
    data: dict
    library: str

    def world(self, index: int = 0) -> dict:
        """The `index`-th world of the parsed data."""
        return self.data["worlds"][index]

    def model(self, name: str, world: int = 0) -> dict:
        """The model called `name` in world `world` (KeyError if absent)."""
        for m in self.world(world)["models"]:
            if m["name"] == name:
                return m
        raise KeyError(name)


def check_sdf(path: str | os.PathLike) -> SdfReport:
    """Load ``path`` with libsdformat; never raises on SDF errors (they are in ``errors``)."""
    exe = sdf_check_binary()
    res = subprocess.run([str(exe), str(path)], capture_output=True, text=True, check=False)
    try:
        data = json.loads(res.stdout)
    except json.JSONDecodeError:
        return SdfReport([f"sdf_check crashed (rc {res.returncode}): {res.stderr[-2000:]}"], {}, "")
    return SdfReport(list(data.get("errors", [])), data, sdformat_pkg() or "")


def check_urdf_cli(path: str | os.PathLike) -> tuple[bool, str]:
    """Run urdfdom's ``check_urdf``; returns (ok, output)."""
    exe = shutil.which("check_urdf")
    if exe is None:
        raise ParserUnavailable("urdfdom's check_urdf not found; Debian: apt-get install liburdfdom-tools")
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    out = res.stdout + res.stderr
    ok = res.returncode == 0 and "Successfully Parsed XML" in out and "Error" not in out
    return ok, out


def parse_urdf_py(xml: str):
    """Parse with urdf_parser_py (PyPI ``urdfdom-py``); returns ``urdf_parser_py.urdf.Robot``."""
    try:
        from urdf_parser_py import urdf as urdf_py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParserUnavailable("urdf_parser_py not installed (pip install urdfdom-py)") from exc
    return urdf_py.URDF.from_xml_string(xml)
