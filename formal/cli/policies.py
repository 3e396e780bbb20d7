"""Policies by name for the face: the shipped registry (specs/) and the policy files a user
loads with --policy-file.  Trace files name their policy, and the commands resolve it here
before anything runs.

A policy file is Python code, and loading it runs it, as pytest runs a conftest.py: load only
files you trust.  It defines a subclass of a shipped policy (as specs/v6_7.py extends v6_6),
overriding the kernel functions a patch changes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from formal.cli import schemas
from formal.concrete import replay as concrete_replay
from formal.errors import InputError, Malformed
from formal.model import events as ev
from formal.model import jsondoc, trace
from formal.model import simulate as model_simulate
from formal.model.kvm import Mechanism
from formal.model.machine import StepRecord
from formal.model.properties import ModelError
from formal.model.state import CONFIGS, Config, Regs
from formal.model.trace import Trace, TraceError
from specs import POLICIES

# Policies loaded from files in this process, by name, and the files they came from.
_LOADED: dict[str, type[Mechanism]] = {}
_FILES: dict[str, Path] = {}


class PolicyFileError(Malformed):
    """A policy file that cannot be loaded or whose handlers fail; the message names the
    file."""


def known() -> dict[str, type[Mechanism]]:
    """Every policy by name: the shipped ones, then the loaded ones."""
    return POLICIES | _LOADED


def resolve(name: str, source: str = "command line") -> type[Mechanism]:
    """The policy class registered under name; TraceError naming source if there is none."""
    cls = known().get(name)
    if cls is None:
        raise TraceError(f"{source}: field 'policy': unknown policy {json.dumps(name)} "
                         f"(known: {', '.join(known())})")
    return cls


def load_file(spec: str) -> str:
    """Load a policy file, PATH or PATH:CLASS, check that its handlers run, and register its
    policy; returns the policy's name (its class's own `name`, else FILE-STEM.CLASS)."""
    path_text, _, wanted = spec.rpartition(":") if _has_class(spec) else (spec, "", "")
    path = Path(path_text)
    module = _import(path)
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Mechanism)
               and c.__module__ == module.__name__]
    if wanted:
        classes = [c for c in classes if c.__name__ == wanted]
        if not classes:
            raise PolicyFileError(f"{path}: defines no policy class {wanted!r}")
    if not classes:
        raise PolicyFileError(f"{path}: defines no policy class (a subclass of a shipped "
                              "policy, e.g. specs.v6_6.V6_6)")
    if len(classes) > 1:
        names = ", ".join(c.__name__ for c in classes)
        raise PolicyFileError(f"{path}: defines several policy classes ({names}): name one, "
                              f"as {path}:CLASS")
    cls = classes[0]
    if "name" not in vars(cls) or not cls.name:
        cls.name = f"{path.stem}.{cls.__name__}"
    if cls.name in POLICIES:
        raise PolicyFileError(f"{path}: policy name {cls.name!r} is a shipped policy's; give "
                              f"{cls.__name__} a name of its own")
    _exercise(path, cls)
    _LOADED[cls.name] = cls
    _FILES[cls.name] = path.resolve()
    return cls.name


def _has_class(spec: str) -> bool:
    head, sep, tail = spec.rpartition(":")
    return bool(sep) and tail.isidentifier() and not Path(spec).exists()


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise PolicyFileError(f"{path}: no such policy file")
    name = f"flushproof_policy_{len(_FILES)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise PolicyFileError(f"{path}: line {exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is bad input
        raise PolicyFileError(f"{path}: importing it raised {_one_line(exc)}"
                              f"{_line_in(exc, path)}") from None
    return module


# A sequence that runs every handler once from 64-bit paging, per configuration: a policy
# whose handler raises, or leaves registers the architecture does not give, fails here.
_LONG = Regs(0x8001_0033, 0x1000, 0x20, 0xD00)
_EXERCISE = (
    ev.MovCr3(0x2000), ev.GuestPteWrite(0x1000), ev.GuestPteWriteOther(0x1000),
    ev.Invlpg(0x40_0000), ev.MovCr4(0x200A0),
    ev.MovCr4(0x20020), ev.MovCr3(0x8000_0000_0000_1000), ev.Invpcid(0, 0, 0x40_0000),
    ev.Invpcid(1, 0, 0), ev.Invpcid(2, 0, 0), ev.Invpcid(3, 0, 0), ev.PvTlbFlush(),
    ev.MovCr4(0x20), ev.MovCr0(0x8000_0033), ev.MovCr0(0x8001_0033), ev.WrmsrEfer(0x500),
    ev.WrmsrEfer(0xD00), ev.Smi(), ev.Rsm(), ev.SetSregs(0x8001_0033, 0x2000, 0x20, 0xD00),
    ev.CpuidUpdate(), ev.MovCr0(0x33), ev.MovCr0(0x8001_0033),
)


def _nested(cfg: Config) -> tuple[ev.Event, ...]:
    """L2 entered twice (VMX: the second time without a VPID; SVM needs a nonzero ASID), with
    L1's EPT/NPT at 0x9000 under nested TDP."""
    if cfg.nested is None:
        return (ev.Init(),)
    ept = 0x9000 if cfg.nested_tdp else 0
    again = 0 if cfg.nested == "vmx" else 2
    flush = ev.Invvpid(1, 1, 0) if cfg.nested == "vmx" else ev.Invlpga(0x40_0000, 1)
    return (ev.VmEntry(0x8001_0033, 0x3000, 0x20, 0xD00, ept, 1), ev.GuestPteWrite(0x3000),
            ev.MovCr3(0x1000), ev.VmExit(), flush,
            ev.VmEntry(0x8001_0033, 0x3000, 0x20, 0xD00, ept, again), ev.VmExit())


def _exercise(path: Path, cls: type[Mechanism]) -> None:
    for config, cfg in CONFIGS.items():
        events = _EXERCISE + _nested(cfg)
        t = Trace(cls.name, config, _LONG, events)
        try:
            model_simulate.run(t, cls, stop_at_violation=False)
        except InputError:
            continue  # an event outside the model for this policy: not the file's fault
        except ModelError as exc:
            raise PolicyFileError(f"{path}: {cls.__name__} contradicts the architecture in "
                                  f"{config}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - the user's code: any failure is bad input
            raise PolicyFileError(f"{path}: {cls.__name__} raised {_one_line(exc)}"
                                  f"{_line_in(exc, path)} in {config}") from None


def source(name: str) -> Path | None:
    """The file a loaded policy came from (None for a shipped one)."""
    return _FILES.get(name)


def blame(exc: BaseException) -> str | None:
    """If exc was raised inside a loaded policy file, a one-line message naming it."""
    files = {str(p) for p in _FILES.values()}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in files:
            return f"{frame.filename}: line {frame.lineno}: the policy raised {_one_line(exc)}"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _line_in(exc: BaseException, path: Path) -> str:
    here = str(path.resolve())
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == here]
    return f" (line {lines[-1]})" if lines else ""


STDIN = "-"


def load(path: str | Path) -> Trace:
    """A trace file (`-`: standard input) valid against its schema, whose policy is a
    registered one."""
    if str(path) == STDIN:
        source = "<stdin>"
        doc = jsondoc.loads(sys.stdin.buffer.read(), source)
    else:
        source = str(path)
        doc = jsondoc.load(path)
    try:
        schemas.check(doc, "trace", source)
    except Malformed as exc:
        raise TraceError(str(exc)) from None
    t = trace.from_doc(doc, source)
    resolve(t.policy, source)
    return t


def override(t: Trace, policy: str | None, config: str | None) -> Trace:
    """The same events under another policy and/or configuration, checked like a file's."""
    out = trace.override(t, policy, config)
    resolve(out.policy)
    return out


def simulate(t: Trace,
             on_record: Callable[[StepRecord], None] | None = None) -> model_simulate.Run:
    """t run on the model under its own policy (on_record: formal.model.simulate.run)."""
    return model_simulate.run(t, resolve(t.policy), on_record=on_record)


def replay(t: Trace) -> concrete_replay.ReplayOutcome:
    """t replayed on the concrete shadow MMU under its own policy."""
    return concrete_replay.replay(t, resolve(t.policy))
