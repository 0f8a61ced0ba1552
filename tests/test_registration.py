"""Registration: every id in the table is registered, and a plain install exposes the ids to code
that only imports Gymnasium."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import gymnasium as gym

import schedgym
from schedgym.registration import ENVS, env_ids, register_envs

REPO = Path(__file__).resolve().parents[1]


def test_every_table_entry_is_registered_and_idempotent():
    register_envs()
    register_envs()
    for entry in ENVS:
        assert entry.env_id in gym.registry
        assert gym.registry[entry.env_id].entry_point == entry.entry_point
    assert env_ids() == [entry.env_id for entry in ENVS]


def test_importing_schedgym_does_not_import_torch():
    code = "import sys, schedgym, schedgym.envs.soc.env, schedgym.baselines.soc; "
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert schedgym.__version__


def test_plain_install_registers_for_code_that_only_imports_gymnasium(tmp_path):
    """Build the wheel, unpack it as a plain install would, and call gymnasium.make from a
    Python that sees the wheel and the dependencies but not this checkout or its editable hook."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next((tmp_path / "dist").glob("schedgym-*.whl"))
    site_dir = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site_dir)
    deps_dir = sysconfig.get_paths()["purelib"]
    code = textwrap.dedent(
        f"""
        import site, sys
        sys.path.append({deps_dir!r})        # numpy, gymnasium: no .pth processing there
        site.addsitedir({str(site_dir)!r})   # the plain install, with its .pth
        import gymnasium as gym
        env = gym.make("schedgym/SoCDAG-v0", preset="tiny")
        obs, info = env.reset(seed=0)
        import schedgym
        print(schedgym.__file__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site_dir))
