"""Registration: every id in the table is registered on ``import schedgym``; nothing of schedgym
runs at interpreter start-up, and Gymnasium's ``"schedgym:..."`` id form reaches the ids from code
that never imports schedgym, in a plain install and an editable one alike."""

from __future__ import annotations

import json
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


def test_plain_install_runs_nothing_at_startup_and_the_prefixed_id_works(tmp_path):
    """Build the wheel, unpack it as a plain install would, and check from a Python that sees
    the wheel and the dependencies but not this checkout: the wheel ships no start-up hook
    (.pth) and no top-level module but the package, starting Python or importing Gymnasium
    imports nothing of schedgym, and Gymnasium's own "schedgym:schedgym/..." form makes the env
    (a bare id without the import is Gymnasium's NamespaceNotFound, as documented)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next((tmp_path / "dist").glob("schedgym-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert not [name for name in names if name.endswith(".pth")]
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"schedgym"}
    assert _probe(tmp_path / "site", tmp_path) == {
        "after_start": [],
        "after_gymnasium": [],
        "bare_id": "NamespaceNotFound",
        "prefixed_id_obs_keys": True,
    }


def test_editable_install_behaves_like_a_plain_one(tmp_path):
    """This checkout (an editable install in the dev setup) gives the same answers."""
    assert _probe(None, tmp_path) == {
        "after_start": [],
        "after_gymnasium": [],
        "bare_id": "NamespaceNotFound",
        "prefixed_id_obs_keys": True,
    }


def _probe(site_dir: Path | None, cwd: Path) -> dict:
    """Start a fresh Python (with ``site_dir`` as its only schedgym when given) and report what
    of schedgym is imported at start-up and after ``import gymnasium``, and how the two id forms
    fare."""
    if site_dir is None:
        prelude = f"import sys; sys.path.insert(0, {str(REPO)!r})"
        flags: list[str] = []
    else:
        deps_dir = sysconfig.get_paths()["purelib"]
        prelude = textwrap.dedent(
            f"""
            import site, sys
            sys.path.append({deps_dir!r})        # numpy, gymnasium: no .pth processing there
            site.addsitedir({str(site_dir)!r})   # the plain install, with any .pth it ships
            """
        )
        flags = ["-S"]
    code = prelude + textwrap.dedent(
        """
        import json, sys
        def ours():
            return sorted(m for m in sys.modules if m.split(".")[0] in
                          ("schedgym", "_schedgym_gymnasium_plugin"))
        out = {"after_start": ours()}
        import gymnasium as gym
        out["after_gymnasium"] = ours()
        try:
            gym.make("schedgym/SoCDAG-v0", preset="tiny")
            out["bare_id"] = "made"
        except gym.error.Error as error:
            out["bare_id"] = type(error).__name__
        env = gym.make("schedgym:schedgym/SoCDAG-v0", preset="tiny")
        obs, info = env.reset(seed=0)
        out["prefixed_id_obs_keys"] = set(obs) == set(env.observation_space.spaces)
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
