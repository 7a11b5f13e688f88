"""scripts/explain_output_diff.py: the differences the named features
account for pass, anything else fails."""

from __future__ import annotations

import importlib.util
import json

from support import REPO

_spec = importlib.util.spec_from_file_location("explain_output_diff",
                                               REPO / "scripts" / "explain_output_diff.py")
explain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(explain)


def _output(doc) -> str:
    """One recorded output, as record_outputs.py writes it."""
    body = json.dumps(doc, indent=2) if not isinstance(doc, str) else doc
    return f"exit 0\n--- stdout\n{body}\n--- stderr\n"


def _runs(tmp_path, old: dict, new: dict):
    for side, files in (("old", old), ("new", new)):
        for rel, doc in files.items():
            f = tmp_path / side / "case" / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(_output(doc))
    return [str(tmp_path / "old"), str(tmp_path / "new"), "--repo", "/a", "/b"]


def test_added_members_and_findings_are_explained(tmp_path, capsys):
    old = {"findings": [{"code": "branch-empty"}], "total": 1}
    new = {"findings": [{"code": "branch-empty"}, {"code": "newest-commit-damaged"}],
           "total": 2, "commits": {"rule": "most-complete"}}
    argv = _runs(tmp_path, {"check-json": old, "repair-json": {"input": "/a/x"}},
                 {"check-json": new, "repair-json": {"input": "/b/x",
                                                     "commits": {"rule": "newest"}}})
    assert explain.main(argv) == 0
    assert "added 2" in capsys.readouterr().out


def test_a_changed_record_is_unexplained(tmp_path, capsys):
    old = {"records": [{"key": "a", "value": "1"}]}
    new = {"records": [{"key": "a", "value": "2"}], "commits": {}}
    argv = _runs(tmp_path, {"dump-json": old}, {"dump-json": new})
    assert explain.main(argv) == 1
    assert "unexplained: case/dump-json" in capsys.readouterr().out


def test_a_text_output_with_words_its_json_does_not_add_is_unexplained(tmp_path, capsys):
    argv = _runs(tmp_path, {"check": "1 problems: branch-empty x1",
                            "check-json": {"findings": [{"code": "branch-empty"}]}},
                 {"check": "2 problems: branch-empty x1 meta-bad-magic x1",
                  "check-json": {"findings": [{"code": "branch-empty"},
                                              {"code": "newest-commit-damaged"}]}})
    assert explain.main(argv) == 1
    assert "unexplained: case/check\n" in capsys.readouterr().out


def test_a_rolled_back_case_may_differ_everywhere(tmp_path, capsys):
    argv = _runs(tmp_path, {"dump": "a=1", "repair-json": {"kept": 1}},
                 {"dump": "a=0", "repair-json": {"kept": 0,
                                                 "commits": {"rule": "rolled-back"}}})
    assert explain.main(argv) == 0
    assert "rule 2" in capsys.readouterr().out
