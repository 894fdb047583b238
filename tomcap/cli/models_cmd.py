"""``tomcap models``: model versions and their aliases (list, register, promote, rollback); ``models clip``
lists the CLIP architectures open_clip knows."""
from __future__ import annotations

# Stage code (torch, FAISS, polars, Prefect) is imported inside the functions: every command module is
# imported to build the parser, and `tomcap --help` must stay light.

import argparse
import json
from pathlib import Path

ACTIONS_HELP = "list (default) | register | promote VERSION | rollback | clip"


def _data_dir_args(p: argparse.ArgumentParser, *, action: bool = True) -> None:
    """On the actions, unset options keep what ``tomcap models --data-dir X ACTION`` gave (argparse would
    otherwise overwrite them with the action's defaults)."""
    unset = argparse.SUPPRESS if action else None
    p.add_argument("--config", type=Path, default=unset, help="pipeline YAML (for its data_dir)")
    p.add_argument("--data-dir", type=Path, default=unset,
                   help="artifact root (default: config's data_dir, else $TOMCAP_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if action else False,
                   help="print the result as one JSON object on the last line")


def _gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", help="metric that decides promotion (default: CIDEr)")
    p.add_argument("--tolerance", type=float, help="promote if challenger >= champion - tolerance (default: 0)")


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help=f"model versions and aliases: {ACTIONS_HELP}")
    _data_dir_args(m, action=False)
    m.set_defaults(func=run_list)
    actions = m.add_subparsers(dest="models_action", metavar="ACTION")

    p = actions.add_parser("list", help="registered versions, their aliases and metrics")
    _data_dir_args(p)
    p.set_defaults(func=run_list)

    p = actions.add_parser("register", help="record a train + index + evaluate artifact as a new version (latest)")
    _data_dir_args(p)
    p.add_argument("--train", type=Path, required=True, help="train artifact folder (the checkpoint)")
    p.add_argument("--index", type=Path, required=True, help="index artifact folder (the datastore)")
    p.add_argument("--evaluate", type=Path, required=True, help="evaluate artifact folder (its metrics.json)")
    p.add_argument("--propose", action="store_true", help="then run the promotion gate against the champion")
    _gate_args(p)
    p.set_defaults(func=run_register)

    p = actions.add_parser("promote", help="make VERSION champion if it passes the gate (--force: regardless)")
    _data_dir_args(p)
    p.add_argument("version", help="version name (v3) or alias (latest)")
    p.add_argument("--force", action="store_true", help="promote without the gate (logged as forced)")
    _gate_args(p)
    p.set_defaults(func=run_promote)

    p = actions.add_parser("rollback", help="give the champion alias back to the previous champion")
    _data_dir_args(p)
    p.set_defaults(func=run_rollback)

    p = actions.add_parser("clip", help="list the CLIP model names open_clip knows (ours included)")
    p.set_defaults(func=run_clip)


def _registry(args: argparse.Namespace):
    from ..registry import Registry
    from ..settings import load_pipeline_config

    return Registry(load_pipeline_config(args.config).resolved_data_dir(args.data_dir))


def _policy(args: argparse.Namespace):
    from ..config import validate_config
    from ..registry import PromotionConfig

    given = {k: v for k, v in (("metric", args.metric), ("tolerance", args.tolerance)) if v is not None}
    return validate_config(PromotionConfig, given, source="--metric/--tolerance")


def _fmt(v) -> str:
    from ..report_md import for_reading

    return "-" if v is None else str(for_reading(v))


def _print_table(rows: list[dict], columns: list[str]) -> None:
    cells = [[_fmt(r.get(c)) if not isinstance(r.get(c), str) else r[c] for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(s.ljust(w) for s, w in zip(line, widths)).rstrip())


def _decision_out(reg, name: str, decision, args: argparse.Namespace) -> int:
    """The champion-vs-challenger table (against the champion the gate compared with), then the verdict."""
    from ..registry import comparison_table

    against = decision.against if decision.against != name else None
    rows = comparison_table(reg.get(name).metrics, reg.get(against).metrics if against else None)
    state = reg.state()
    if rows:
        _print_table(rows, ["metric", "champion", "challenger", "delta"])
    verdict = "promoted to champion" if decision.promote else "not promoted"
    print(f"{name}: {verdict} ({decision.reason}); champion is {state.aliases.get('champion', '-')}")
    if args.json:
        print(json.dumps({"version": name, "promoted": decision.promote, "reason": decision.reason,
                          "event": decision.event, "aliases": state.aliases, "comparison": rows}, sort_keys=True))
    return 0


def run_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    st = reg.state()
    versions = reg.versions()
    if not versions:
        print(f"no model versions in {reg.dir} (a retrain registers one; or: tomcap models register ...)")
    by_alias: dict[str, list[str]] = {}
    for alias, name in st.aliases.items():
        by_alias.setdefault(name, []).append(alias)
    metric_names = list(dict.fromkeys(k for v in versions for k in ("CIDEr", "Bleu_4", "METEOR", "CLIPScore")
                                      if isinstance(v.metrics.get(k), (int, float))))
    rows = [{"version": v.name, "aliases": ",".join(sorted(by_alias.get(v.name, []))) or "-",
             **{k: v.metrics.get(k) for k in metric_names}, "corpus": (v.record.corpus_fingerprint or "-")[:12],
             "checkpoint": v.record.checkpoint.key[:12], "created": v.created_at[:19]} for v in versions]
    if rows:
        _print_table(rows, list(rows[0]))
    if getattr(args, "models_action", None) is None and not args.json:
        print("(CLIP architectures: tomcap models clip)")
    if args.json:
        print(json.dumps({"aliases": st.aliases, "versions": [v.model_dump(mode="json") for v in versions]},
                         sort_keys=True))
    return 0


def run_register(args: argparse.Namespace) -> int:
    from ..artifacts import load_ref

    reg = _registry(args)
    v = reg.register(checkpoint=load_ref(args.train, stage="train"), datastore=load_ref(args.index, stage="index"),
                     evaluation=load_ref(args.evaluate, stage="evaluate"))
    print(f"{v.name}: registered (latest)")
    if args.propose:
        return _decision_out(reg, v.name, reg.propose(v.name, _policy(args)), args)
    if args.json:
        print(json.dumps(v.model_dump(mode="json"), sort_keys=True))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..registry import CHAMPION, GateDecision

    reg = _registry(args)
    name = reg.get(args.version).name
    if args.force:
        before = reg.state().aliases.get(CHAMPION)
        reg.promote(name)
        forced = GateDecision(True, f"forced, was {before or 'none'}", "-", None, None, before)
        return _decision_out(reg, name, forced, args)
    decision = reg.propose(name, _policy(args))
    if not decision.promote and reg.state().aliases.get(CHAMPION) != name:
        _decision_out(reg, name, decision, args)
        raise ConfigError(f"{name} not promoted: {decision.reason}",
                          fix=f"pass --tolerance, or --force to promote {name} anyway")
    return _decision_out(reg, name, decision, args)


def run_rollback(args: argparse.Namespace) -> int:
    reg = _registry(args)
    v = reg.rollback()
    print(f"champion is {v.name} again")
    if args.json:
        print(json.dumps({"aliases": reg.state().aliases}, sort_keys=True))
    return 0


def run_clip(args: argparse.Namespace) -> int:
    from ..clip import list_models

    print("\n".join(list_models()))
    return 0
