"""The `rdv` command's own checks of its arguments, before anything starts: a clear message on
stderr that names what is missing, and exit code 2."""

from __future__ import annotations

import pytest

from rdv import commands
from tests.helpers import write_conf


@pytest.mark.parametrize("action", ["add", "start", "stop"])
def test_a_model_action_without_the_models_name_says_so(tmp_path, capsys, action):
    conf = write_conf(tmp_path)
    assert commands.main(["--conf", str(conf), "model", action]) == 2
    assert capsys.readouterr().err == f"rdv model: rdv model {action} needs the model's name\n"


def test_model_add_without_a_uri_says_so(tmp_path, capsys):
    conf = write_conf(tmp_path)
    assert commands.main(["--conf", str(conf), "model", "add", "fraud-v3"]) == 2
    assert capsys.readouterr().err == "rdv model: rdv model add needs --uri\n"
