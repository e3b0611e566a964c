"""
Knobs: the UPPERCASE constants at the top of a script are its settings; the script being run overrides them from its
own command line and nowhere else.

    python -m inference.method1 [config.py ...] [--NAME=value ...]

- A config file (nanoGPT's configurator, made safe): `NAME = literal` lines, read with `ast.literal_eval`, never
  executed. Later files and then flags win.
- `--NAME=value`, `--NAME value`, `--name-with-dashes=value`; a bare `--FLAG` turns a boolean knob on.
- Types are checked against the default written in the file; unknown names are refused with the known ones listed.
- The environment is read only for the documented contract, here and once: `SMOKE=1` applies the script's
  `SMOKE_OVERRIDES` and is `cfg.SMOKE` from then on (tiny models: see models.py), and `DATA_DIR` / `OUT_DIR`
  set the knobs of those names (flags still win). Nothing else in the environment changes a knob, so a shell with
  SEED=7 or MODEL=... exported for another tool changes nothing here.

`configure` never touches the module: it returns a `Config` that the script passes to its functions, so importing a
stage has no side effects and tests build configs with `configure(module, argv, env={})` or `cfg.replace(...)`.
"""
import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ENV_KNOBS = ("DATA_DIR", "OUT_DIR")  # the only knobs the environment may set (README: the run/*.sh contract)
KNOB_TYPES = (bool, int, float, str, tuple, type(None))


class InputError(Exception):
    """Bad input the user can fix: the message names the row, file, column or knob at fault."""


class Config:
    """A script's knob values, read-only: `cfg.STEPS`. `replace(NAME=value)` gives a changed copy (types checked).
    `cfg.SMOKE`: whether SMOKE=1 was set when it was configured (not a knob: no flag sets it)."""

    def __init__(self, values, doc="", source="", smoke=False):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_doc", doc)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "SMOKE", bool(smoke))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no knob {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a Config is read-only: use cfg.replace(NAME=value)")

    def replace(self, **changes):
        values = dict(self._values)
        for name, value in changes.items():
            if name not in values:
                raise InputError(f"unknown knob {name}; known: {', '.join(values)}")
            values[name] = _check_type(value, values[name], name)
        return Config(values, self._doc, self._source, self.SMOKE)

    def as_dict(self):
        return dict(self._values)

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def _scope(module):
    return vars(module) if isinstance(module, ModuleType) else module


def _own(scope):
    return {k: v for k, v in scope.items()
            if k.isupper() and not k.startswith("_") and k not in ("SMOKE_OVERRIDES", "SHARED_KNOBS")
            and isinstance(v, KNOB_TYPES)
            and not (isinstance(v, tuple) and not all(isinstance(x, (bool, int, float, str)) for x in v))}


@dataclass(frozen=True)
class Shared:
    """Another module's knobs that a script offers as its own (an entry of its SHARED_KNOBS), but those named in
    `without`. A plain module in SHARED_KNOBS shares all of its knobs."""
    module: ModuleType
    without: tuple = ()

    def knobs(self):
        return {k: v for k, v in _own(vars(self.module)).items() if k not in self.without}

    def names(self):
        return tuple(self.knobs())


def _shared(scope):
    return [s if isinstance(s, Shared) else Shared(s) for s in scope.get("SHARED_KNOBS") or ()]


def defaults(module):
    """{NAME: default} of every knob of a script (a module or its globals dict), in file order, then the knobs of the
    modules it names in SHARED_KNOBS (e.g. the run machinery's, common to both generation methods), where the script
    does not set them itself."""
    scope = _scope(module)
    values = _own(scope)
    for shared in _shared(scope):
        for name, value in shared.knobs().items():
            values.setdefault(name, value)
    return values


def smoke_enabled(env=None):
    """SMOKE=1 in the environment: tiny random models, few steps (the run/*.sh contract). Only `configure` reads it,
    once, into cfg.SMOKE; stages pass cfg.SMOKE on to every model load."""
    return (os.environ if env is None else env).get("SMOKE", "0").strip().lower() in ("1", "true", "yes", "on")


def configure(module, argv=None, env=None):
    """The script's Config: defaults < SMOKE_OVERRIDES (SMOKE=1) < DATA_DIR/OUT_DIR from the environment < config
    files < flags. `argv` defaults to sys.argv[1:]; `--help` prints the knobs and exits."""
    scope = _scope(module)
    argv = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if env is None else env
    values = defaults(scope)
    smoke = smoke_enabled(env)
    if smoke:
        for name, value in (scope.get("SMOKE_OVERRIDES") or {}).items():
            values[name] = _check_type(value, values[name], name)
    for name in ENV_KNOBS:
        if name in values and env.get(name):
            values[name] = _parse(env[name], values[name], name)
    flags = []
    for arg in argv:
        if arg in ("-h", "--help"):
            print(help_text(scope))
            sys.exit(0)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            if arg.endswith(".py") or arg.endswith(".cfg"):
                for name, value in read_config_file(arg, values).items():
                    values[name] = value
                i += 1
                continue
            raise InputError(f"unexpected argument {arg!r} (knobs are passed as --NAME=value or a config file "
                             f"NAME.py; see --help)")
        key, has_value, raw = arg[2:].partition("=")
        name = key.replace("-", "_").upper()
        if name not in values:
            raise InputError(f"unknown knob {arg!r}; known: {', '.join(values)}")
        if not has_value:
            if isinstance(values[name], bool) and (i + 1 >= len(argv) or argv[i + 1].startswith("--")):
                raw = "1"  # a bare --FLAG turns a boolean knob on
            elif i + 1 >= len(argv):
                raise InputError(f"knob --{key} needs a value")
            else:
                i += 1
                raw = argv[i]
        flags.append((name, raw))
        i += 1
    for name, raw in flags:
        values[name] = _parse(raw, values[name], name)
    return Config(values, scope.get("__doc__") or "", scope.get("__file__", ""), smoke)


def read_config_file(path, known):
    """{NAME: value} from a file of `NAME = literal` lines (comments allowed); unknown names and wrong types refused."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise InputError(f"{path}: line {e.lineno}: not a config file of NAME = value lines") from None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # a docstring
            continue
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise InputError(f"{path}: line {node.lineno}: only NAME = value lines are allowed")
        name = node.targets[0].id
        if name not in known:
            raise InputError(f"{path}: line {node.lineno}: unknown knob {name}; known: {', '.join(known)}")
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise InputError(f"{path}: line {node.lineno}: {name} must be a literal (number, string, tuple, "
                             f"True/False)") from None
        out[name] = _check_type(value, known[name], name)
    return out


def _check_type(value, default, name):
    if default is None or value is None and isinstance(default, str):
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(f"knob {name}: expected True/False, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, type(default)) or isinstance(value, bool) and not isinstance(default, bool):
        raise InputError(f"knob {name}: expected {type(default).__name__} like {default!r}, got {value!r}")
    if isinstance(default, tuple) and default and value:
        kinds = {type(x) for x in default}
        if len(kinds) == 1 and not all(isinstance(x, tuple(kinds)) or isinstance(x, int) and float in kinds
                                       for x in value):
            raise InputError(f"knob {name}: expected a tuple like {default!r}, got {value!r}")
    return value


def _parse(raw, default, name):
    """A command-line string as the type of the knob's default."""
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InputError(f"knob {name}: expected a boolean (0/1/true/false), got {raw!r}")
    if isinstance(default, str) or default is None:
        return raw
    if isinstance(default, tuple):
        text = raw.strip()
        if not text.startswith(("(", "[")):
            text = f"({text},)" if text else "()"  # --GEN_SIZE=1024,536 as well as --GEN_SIZE="(1024, 536)"
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if all(isinstance(x, str) for x in default):  # --SEEDS=a,b for a tuple of strings
                return tuple(s.strip() for s in raw.split(",") if s.strip())
            raise InputError(f"knob {name}: expected a tuple like {_tuple_flag(default)}, got {raw!r}") from None
        return _check_type(value, default, name)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise InputError(f"knob {name}: expected a value like {default!r}, got {raw!r}") from None
    return _check_type(value, default, name)


def _tuple_flag(value):
    return ",".join(str(x) for x in value) if value else "a,b"


def _comments(path):
    """{NAME: comment} from `NAME = value  # comment` lines of the script's source, for --help."""
    comments = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return comments
    for line in lines:
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if m and m.group(1) not in comments:
            comments[m.group(1)] = (m.group(2), (m.group(3) or "").strip())
    return comments


def help_text(module):
    """The script's docstring, every knob with its default as written in the file, and what SMOKE=1 changes."""
    scope = _scope(module)
    comments = _comments(scope.get("__file__", ""))
    lines = [(scope.get("__doc__") or "").strip(), "",
             "knobs (edit them at the top of the script, or pass --NAME=value; config files NAME.py of NAME = value "
             "lines come before flags):"]

    def knob_line(name, value, comments):
        written, comment = comments.get(name, (repr(value), ""))
        how = f"  [on the command line: --{name}={_tuple_flag(value)}]" if isinstance(value, tuple) else ""
        return f"  --{name}={written}" + (f"  # {comment}" if comment else "") + how

    own = _own(scope)
    lines += [knob_line(name, value, comments) for name, value in own.items()]
    for shared in _shared(scope):
        theirs = {k: v for k, v in shared.knobs().items() if k not in own}
        if theirs:
            path = Path(shared.module.__file__)
            lines += ["", f"shared knobs, edited at the top of {path.parent.name}/{path.name}:"]
            lines += [knob_line(name, value, _comments(path)) for name, value in theirs.items()]
    smoke = scope.get("SMOKE_OVERRIDES") or {}
    if smoke:
        lines += ["", "SMOKE=1 (tiny random models, offline) changes:"]
        lines += [f"  {name}={value!r}" for name, value in smoke.items()]
    env = [n for n in ENV_KNOBS if n in defaults(scope)]
    if env:
        lines += ["", f"from the environment: {', '.join(env)} (the run/*.sh contract); every other knob only from "
                      f"this file, a config file or a flag"]
    return "\n".join(lines)


def run_main(main, argv=None):
    """Run a stage's main(argv): user errors print one clear line and exit 2 instead of a traceback."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if not e.filename:
            raise  # not about a file the user can look at: the traceback says more
        # a folder made read-only, a full disk, a file gone: the file and the reason, not a traceback
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished items are kept, a rerun resumes", file=sys.stderr)
        sys.exit(130)


def announce_smoke(stage, smoke):
    """The loud SMOKE banner on stderr when `smoke` (the stage's cfg.SMOKE)."""
    if smoke:
        bar = "!" * 88
        print(f"{bar}\n!! SMOKE=1 ({stage}): tiny RANDOM models, few steps. Outputs are noise, not banners.\n{bar}",
              file=sys.stderr, flush=True)
