"""Build hook: ship ``schedgym-gymnasium-plugin.pth`` at the root of site-packages.

Everything else lives in pyproject.toml. The .pth lets ``gymnasium.make("schedgym/...")`` work
without importing schedgym (see ``_schedgym_gymnasium_plugin.py``).
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "schedgym-gymnasium-plugin.pth"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
