import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_python_code_is_a_package_the_build_finds():
    """pyproject.toml ships what ``packages.find`` finds: a code folder without ``__init__.py`` is left out."""
    from setuptools import find_packages

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = set(find_packages(str(ROOT), include=spec["include"]))
    code_dirs = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vap_env").rglob("*.py")}
    assert "vap_env.policies" in found
    assert code_dirs <= found, f"add __init__.py to {sorted(code_dirs - found)}"


def test_robot_descriptions_ship_with_the_package():
    import vap_env.description as d

    assert (Path(d.__file__).parent / "robots" / "panda.toml").is_file()


def test_the_default_model_files_are_package_data():
    """Every file of the shipped default model matches a package-data pattern, so wheels carry it."""
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = patterns["vap_env"]
    files = [p.relative_to(ROOT / "vap_env").as_posix() for p in (ROOT / "vap_env" / "default_model").rglob("*")
             if p.is_file()]  # fmt: skip
    assert files, "vap_env/default_model is empty"
    # fnmatch's "*" also crosses "/", as setuptools' "**" does: a file no pattern matches is left out
    missing = [f for f in files if not any(fnmatch(f, p) for p in patterns)]
    assert not missing, f"add package-data patterns for {missing}"
