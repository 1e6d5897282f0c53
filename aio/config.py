"""Registers aio's structured-config schemas and OmegaConf resolvers with Hydra.

Call :func:`register_configs` before composing (the console scripts and tests do).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from aio.paths import REPO_ROOT, outputs_dir

_registered = False


def register_configs() -> None:
    """Store the `trainer` and `dataset` schemas in the ConfigStore and add aio's resolvers (idempotent)."""
    global _registered
    if _registered:
        return
    from aio.data.config import DatasetConfig
    from aio.train.config import TrainerConfig
    from aio.train.phases import StrategyConfig

    cs = ConfigStore.instance()
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="strategy", name="base_strategy", node=StrategyConfig)
    OmegaConf.register_new_resolver("aio_repo_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("aio_outputs_dir", lambda: str(outputs_dir()), replace=True)
    _registered = True


# ------------------------------------------------------------------------------------ command-line checks
# Hydra silently drops an unknown option of an *optional* group (`experiment=ful`), accepts `+key=value`
# under a structured node only when the key exists in no schema check, and runs a sweep file without
# `-m` as a single job. The checks below run on the raw command line before Hydra composes anything.

import difflib  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields, is_dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Union, get_args, get_origin, get_type_hints  # noqa: E402

# conf/ sub-folders that are not config groups selectable on the command line
NOT_GROUPS = ("local",)


class ConfigError(ValueError):
    """A command-line mistake found before any work starts; the message is one line with the fix."""


def config_groups(conf_dir=None) -> dict[str, list[str]]:
    """``{group: [options]}`` for every folder of ``conf/`` (the folder is the truth, not a list)."""
    from aio.paths import CONF_DIR

    conf_dir = Path(conf_dir or CONF_DIR)
    groups = {}
    for d in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name not in NOT_GROUPS):
        groups[d.name] = sorted(str(f.relative_to(d).with_suffix("")) for f in d.rglob("*.yaml"))
    return groups


def _schemas() -> dict[str, type]:
    from aio.data.config import DatasetConfig
    from aio.train.config import TrainerConfig

    return {"trainer": TrainerConfig, "dataset": DatasetConfig}


def _unwrap(tp):
    """``Optional[X]`` -> ``X``."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


def schema_keys(schema: type, prefix: str) -> list[str]:
    """Every dotted key of a dataclass schema (nested dataclasses expanded), e.g. ``trainer.ema.decay``."""
    out = []
    hints = get_type_hints(schema)
    for f in fields(schema):
        tp = _unwrap(hints[f.name])
        out.append(f"{prefix}.{f.name}")
        if is_dataclass(tp):
            out += schema_keys(tp, f"{prefix}.{f.name}")
    return out


def _schema_allows(schema: type, parts: list[str]) -> bool:
    """Whether the dotted key ``parts`` (below the schema's node) is declared by the schema."""
    tp: Any = schema
    for part in parts:
        tp = _unwrap(tp)
        if is_dataclass(tp):
            hints = get_type_hints(tp)
            if part not in {f.name for f in fields(tp)}:
                return False
            tp = hints[part]
        elif get_origin(tp) in (dict, dict.__class__) or get_origin(tp) is dict:
            tp = get_args(tp)[1] if get_args(tp) else Any
        else:  # Any, lists, free-form dicts: anything below is the node's own business
            return True
    return True


def closest(word: str, choices, prefix: str = "") -> str:
    """`` (did you mean `X`?)`` for the closest choice, or an empty string: the shortest choice that extends
    ``word`` (``dataset.patch`` -> ``dataset.patch_size``), else difflib's closest match."""
    longer = sorted((c for c in choices if c.startswith(word)), key=len)
    match = longer[:1] or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean `{prefix}{match[0]}`?)" if match else ""


def _launcher_is_basic(conf_dir: Path, choice: str) -> bool:
    from omegaconf import OmegaConf

    path = conf_dir / "launcher" / f"{choice}.yaml"
    if not path.is_file():
        return False
    defaults = OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []
    return any(isinstance(d, dict) and d.get("override /hydra/launcher") == "basic" for d in defaults)


def primary_defaults(config_name: str, conf_dir=None) -> dict[str, str]:
    """``{group: option}`` chosen by the defaults list of ``conf/<config_name>.yaml``."""
    from omegaconf import OmegaConf

    from aio.paths import CONF_DIR

    path = Path(conf_dir or CONF_DIR) / f"{config_name}.yaml"
    out = {}
    if path.is_file():
        for d in OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []:
            if isinstance(d, dict):
                for k, v in d.items():
                    out[str(k).replace("optional ", "").strip()] = v
    return out


def _values(override) -> list[str]:
    if not override.is_sweep_override():
        v = override.value()
        return [] if v is None else [str(v)]
    try:
        return [str(v) for v in override.sweep_string_iterator()]
    except Exception:  # noqa: BLE001 - glob() and friends: Hydra expands those itself
        return []


def check_overrides(overrides, *, multirun: bool = False, config_name: str = "train", conf_dir=None,
                    prog: str = "aio-train") -> None:
    """Refuse, with a one-line :class:`ConfigError`, the command-line mistakes Hydra lets through:

    * an unknown option of any group of ``conf/`` (optional groups included), naming the valid options and
      the closest one;
    * ``sweep=<name>`` without ``-m``;
    * a key under a schema'd node (``trainer.*``, ``dataset.*``) that the schema does not declare, also when
      appended with ``+`` (with the closest declared key);
    * ``hydra.launcher.*`` settings while the basic launcher (``launcher=local``) is selected.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from aio.paths import CONF_DIR

    conf_dir = Path(conf_dir or CONF_DIR)
    groups = config_groups(conf_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # a syntax error: Hydra's own message says where
    choices = primary_defaults(config_name, conf_dir)
    schemas = _schemas()
    for o in parsed:
        key = o.key_or_group.lstrip("/")
        if key in groups and not o.is_delete():
            sign = "+" if o.is_add() else ""  # an appended group (`+abair=...`) is echoed as typed
            for value in _values(o):
                if value not in groups[key] and value not in ("null", "None"):
                    raise ConfigError(
                        f"{sign}{key}={value}: no such option in conf/{key}/; valid options: "
                        f"{', '.join(groups[key])}{closest(value, groups[key], sign + key + '=')}")
                choices[key] = value
        top, _, rest = key.partition(".")
        if rest and top in schemas and not o.is_delete():
            if not _schema_allows(schemas[top], rest.split(".")):
                known = schema_keys(schemas[top], top)
                raise ConfigError(
                    f"{o.input_line}: `{key}` is not a key of the {top} schema, so it would be ignored"
                    f"{closest(key, known)}; see `aio-train --cfg job` for the keys")
    selected = next((o for o in parsed if o.key_or_group == "sweep" and not o.is_delete()), None)
    if selected is not None and config_name in ("train", "eval"):
        rest = " ".join(str(o.input_line) for o in parsed if o.key_or_group != "sweep")
        sweep = selected.input_line
        name = str(choices.get("sweep"))
        app = config_name if name in ("null", "None") else sweep_app(conf_dir, name)
        if app != config_name:  # an evaluation sweep run by aio-train, or a training sweep by aio-eval
            raise ConfigError(f"{sweep} is a sweep of aio-{app} (sweep.app: {app}): run it as "
                              f"aio-{app} -m {sweep}{(' ' + rest) if rest else ''}")
        if not multirun:
            raise ConfigError(f"{sweep} selects a sweep (several jobs): run it as a multirun: "
                              f"{prog} -m {sweep}{(' ' + rest) if rest else ''}")
    launcher_keys = [o for o in parsed if o.key_or_group.startswith("hydra.launcher.")]
    launcher = str(choices.get("launcher", "local"))
    if launcher_keys and _launcher_is_basic(conf_dir, launcher):
        raise ConfigError(
            f"{launcher_keys[0].input_line}: launcher={launcher} is Hydra's basic launcher, which runs the jobs "
            f"one after another and has no such setting; to run jobs in parallel use launcher=joblib "
            f"(e.g. {prog} -m launcher=joblib hydra.launcher.n_jobs=2 ...) or launcher=submitit_local on this "
            f"machine, or launcher=slurm on a cluster")


def sweep_app(conf_dir: Path, name: str) -> str:
    """The program a sweep file is run with: its ``sweep.app`` (``train`` unless it says ``eval``; a missing
    file counts as ``train``)."""
    from omegaconf import OmegaConf

    path = Path(conf_dir) / "sweep" / f"{name}.yaml"
    node = (OmegaConf.load(path).get("sweep") or {}) if path.is_file() else {}
    return str(node.get("app") or "train")


def check_command_line(prog: str, argv, config_name: str) -> None:
    """Run :func:`check_overrides` on a Hydra app's raw ``argv``; prints the error and exits 2 on a mistake."""
    from hydra._internal.utils import get_args_parser

    try:
        args, _ = get_args_parser().parse_known_args(list(argv))
    except SystemExit:
        return  # let Hydra report its own usage errors
    if args.help or args.hydra_help or args.shell_completion:
        return
    try:
        conf_dir = args.config_dir or (args.config_path if args.config_path and Path(args.config_path).is_absolute()
                                       else None)
        check_overrides(args.overrides, multirun=bool(args.multirun), config_name=args.config_name or config_name,
                        conf_dir=conf_dir, prog=prog)
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
