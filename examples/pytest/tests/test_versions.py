"""One test per version of demo_lib, each in a virtualenv of its own: the versions never meet."""

import pytest


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_each_version_in_its_own_environment(ptest_env_factory, demo_lib_wheel, version):
    env = ptest_env_factory(level="virtualenv")
    env.install_packages([str(demo_lib_wheel(version))])
    out = env.exec(["python", "-c", "import demo_lib; print(demo_lib.__version__)"], check=True)
    assert out.stdout == f"{version}\n"
    assert env.installed_packages()["demo-lib"] == version
