"""--policy-file: a user's policy as a Python file (formal.cli.policies.load_file), the
tutorial of docs/policies.md run as written, and what a malformed file says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from formal.cli import policies
from formal.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "v6_6_no_smap_reset.py"


@pytest.fixture(autouse=True)
def forget_loaded_policies(monkeypatch):
    """Each test loads its files afresh (the registry of loaded policies is per process)."""
    monkeypatch.setattr(policies, "_LOADED", {})
    monkeypatch.setattr(policies, "_FILES", {})


def tutorial() -> list[tuple[str, int]]:
    text = (ROOT / "docs" / "policies.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    out = []
    for line in block.splitlines():
        cmd, _, want = line.partition("# exits ")
        out.append((cmd.strip(), int(want)))
    return out


def test_the_tutorial_runs_as_written(tmp_path, monkeypatch, capsys):
    """In a copy of the tree's examples/ and traces/, so that cex.json lands in tmp_path."""
    for d in ("examples", "traces"):
        (tmp_path / d).symlink_to(ROOT / d)
    monkeypatch.chdir(tmp_path)
    steps = tutorial()
    assert len(steps) == 5
    for cmd, want in steps:
        argv = shlex.split(cmd)
        assert argv[0] == "flushproof"
        assert main(argv[1:]) == want, cmd
        out = capsys.readouterr().out
        if "--cex" in argv:
            assert "metadata violated at event 0, 1 events" in out
            assert "concrete replay: confirmed: event 0, L1: KVM's emulated supervisor read of " \
                "VA 0x400000" in out
            assert f"--policy-file {EXAMPLE}" in out  # how to simulate the file again
        if argv[1] == "corpus":
            assert re.search(r"^new  lai-jiangshan\.json +v6\.6-no-smap-reset +holds$", out,
                             re.M)
            assert "0 failed" in out
    assert (tmp_path / "cex.json").read_text().count('"v6.6-no-smap-reset"') == 1


BROKEN = {
    "syntax": ("def x(:\n", "line 1: syntax error: "),
    "import": ("raise ValueError('no')\n", "importing it raised ValueError: no (line 1)"),
    "empty": ("x = 1\n", "defines no policy class (a subclass of a shipped policy"),
    "two": ("from specs.v6_6 import V6_6\nclass A(V6_6):\n    name = 'a'\n"
            "class B(V6_6):\n    name = 'b'\n",
            "defines several policy classes (A, B): name one, as "),
    "raises": ("from specs.v6_6 import V6_6\nclass R(V6_6):\n    name = 'r'\n"
               "    def kvm_post_set_cr4(self, v, old, new):\n        raise RuntimeError('x')\n",
               "R raised RuntimeError: x (line 5) in shadow"),
    "registers": ("from formal.model import bits\nfrom specs.v6_6 import V6_6\n"
                  "class W(V6_6):\n    name = 'w'\n    def vendor_set_cr4(self, v, cr4):\n"
                  "        super().vendor_set_cr4(v, cr4 ^ bits.CR4_SMEP)\n",
                  "W contradicts the architecture in shadow: event 4 (mov_cr4): w left "
                  "registers"),
    "shipped-name": ("from specs.v6_6 import V6_6\nclass S(V6_6):\n    pass\n"
                     "S.name = 'v6.6'\n",
                     "policy name 'v6.6' is a shipped policy's; give S a name of its own"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_policy_file_is_one_line_of_bad_input(case, tmp_path, capsys):
    text, needle = BROKEN[case]
    f = tmp_path / f"{case.replace('-', '_')}.py"
    f.write_text(text)
    code = main(["simulate", str(ROOT / "traces" / "lai-jiangshan.json"), "--policy-file",
                 str(f)])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and err.startswith(f"flushproof: {f}: ")
    assert needle in err


def test_a_class_is_named_with_path_colon_class(tmp_path):
    f = tmp_path / "two.py"
    f.write_text(BROKEN["two"][0])
    assert policies.load_file(f"{f}:B") == "b"
    with pytest.raises(policies.PolicyFileError, match="defines no policy class 'C'"):
        policies.load_file(f"{f}:C")


def test_an_unnamed_class_is_named_after_its_file(tmp_path):
    f = tmp_path / "mypatch.py"
    f.write_text("from specs.v6_6 import V6_6\nclass Fix(V6_6):\n    pass\n")
    assert policies.load_file(str(f)) == "mypatch.Fix"
    assert policies.source("mypatch.Fix") == f.resolve()


def test_a_failure_later_in_the_files_code_names_the_file(tmp_path, capsys):
    """A handler the load-time exercise does not reach (INVLPG of another page) raising during
    a simulation: bad input, naming the file and line."""
    f = tmp_path / "late.py"
    f.write_text("from specs.v6_6 import V6_6\nclass L(V6_6):\n    name = 'late'\n"
                 "    def kvm_mmu_invlpg(self, v, gva):\n"
                 "        if gva == 0x123000:\n            raise KeyError(gva)\n"
                 "        super().kvm_mmu_invlpg(v, gva)\n")
    t = tmp_path / "t.json"
    t.write_text('{"format": "flushproof-trace/1", "policy": "late", "config": "shadow", '
                 '"initial": {"cr0": "0x80010033", "cr3": "0x1000", "cr4": "0x20", '
                 '"efer": "0xd00"}, "events": [{"op": "invlpg", "va": "0x123000"}]}')
    assert main(["simulate", str(t), "--policy-file", str(f)]) == 3
    err = capsys.readouterr().err
    assert err == f"flushproof: {f}: line 6: the policy raised KeyError: 1191936\n"
