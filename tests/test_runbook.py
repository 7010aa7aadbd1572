"""The runbooks name only commands the Makefile really has."""

from __future__ import annotations

import re

from devstack.template import ROOT


def _targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))


def test_every_make_command_in_the_docs_is_a_target():
    docs = [ROOT / "README.md", ROOT / "docs" / "DEPLOY.md"]
    named = set()
    for doc in docs:
        named |= set(re.findall(r"\bmake ([a-z][\w-]*)", doc.read_text()))
    assert {"deploy", "smoke", "rollback-deploy", "test"} <= named
    assert named - _targets() == set()


def test_runbook_module_commands_exist():
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
