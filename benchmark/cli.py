"""Command line: ``python -m benchmark run | sweep | analyze | plan | list | cache | check-adapter | leaderboard |
verify | export``."""

from __future__ import annotations

import argparse
import sys

from .errors import BenchmarkError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (flag, problem, where to look) and exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _add_analyze_options(an) -> None:
    """The `analyze` options (AnalysisOptions and the run they read)."""
    from .analyses import AnalysisOptions
    from .config import REGIMES

    o = AnalysisOptions()
    an.add_argument("--model", required=True, help="adapter name of the run")
    an.add_argument("--task", required=True, help="task name of the run")
    an.add_argument("--analysis", type=_str_list, default=(),
                    help="comma-separated analyses (default: all; see `list analyses`)")
    an.add_argument("--regimes", type=_str_list, default=REGIMES,
                    help=f"model states: subset of {','.join(REGIMES)} (zero-shot = the original weights)")
    an.add_argument("--seeds", type=_int_list, default=(0,), help="seeds of the run (default: 0)")
    an.add_argument("--max-per-class", type=int, help="analyse the limited run made with this --max-per-class")
    an.add_argument("--drop-duplicates", action="store_true",
                    help="require that the run dropped the test images byte-identical to training images (the "
                         "analyses always test on the run's test images: they follow the run's --drop-duplicates)")
    an.add_argument("--results-dir", help="results folder of the run (default ./results or $PROJBENCH_RESULTS)")
    an.add_argument("--cache-dir", help="feature cache of the run (default ~/.cache/projbench or $PROJBENCH_CACHE)")
    an.add_argument("--device", default="auto")
    an.add_argument("--probe-max-epochs", type=int, default=o.probe_max_epochs, help="layer-probe epochs")
    an.add_argument("--tokens-per-image", type=int, default=o.tokens_per_image,
                    help="token states kept per image, layer and modality (mir, logit-lens)")
    an.add_argument("--mir-compat", action="store_true",
                    help="mir: reproduce the reference code's fast mode, Tr(S_V S_T) instead of Tr((S_V S_T)^1/2)")
    an.add_argument("--knockout-window", type=int, default=o.knockout_window,
                    help="knockout: blocks blocked at once (default 0 = max(1, blocks // 8))")
    an.add_argument("--knockout-max-images", type=int, default=o.knockout_max_images,
                    help="knockout: test images scored (each costs 2 x (windows + 1) forwards)")
    an.add_argument("--permutations", type=int, default=o.permutations, help="modality-gap permutation baseline")
    an.add_argument("--batch-size", type=int, default=o.batch_size)
    an.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    p.commands = sub.choices  # command -> its parser, for unknown_arguments

    r = sub.add_parser("run", help="run the protocol (zero-shot, FT-Proj, FT-E2E, probes) for one model and task")
    _add_run_options(r)

    _add_sweep_options(sub)

    an = sub.add_parser("analyze", help="layer-wise analyses of a finished run's model states (see `list analyses`)")
    _add_analyze_options(an)

    pl = sub.add_parser("plan", help="memory, FLOPs and time of a run on given GPUs, from the real architecture "
                                     "built without weights")
    from .plan.command import add_options as add_plan_options  # torch-free: plan checks its flags first

    add_plan_options(pl)

    ls = sub.add_parser("list", help="list registered models, tasks, analyses or plugins")
    ls.add_argument("what", choices=["models", "tasks", "analyses", "plugins"])
    ls.add_argument("--verbose", "-v", action="store_true",
                    help="every detail of each entry (projector modules, sources, citations), one block per entry")

    ca = sub.add_parser("cache", help="list the cache (tiny twins, vision features, plugin verdicts), or clean it")
    ca.add_argument("action", choices=["list", "clean"])
    ca.add_argument("--all", dest="everything", action="store_true",
                    help="clean: every entry projbench made, not only stale tiny twins")
    ca.add_argument("--dry-run", action="store_true", help="clean: print what would be removed, remove nothing")
    ca.add_argument("--cache-dir", help="the cache (default ~/.cache/projbench or $PROJBENCH_CACHE)")

    ck = sub.add_parser("check-adapter", help="run the adapter conformance suite on registered adapters")
    ck.add_argument("names", nargs="*", help="adapter names (normally tiny twins), e.g. my-model-tiny")
    ck.add_argument("-k", dest="keyword", help="only the checks whose names match this pytest -k expression")
    ck.add_argument("--list", action="store_true", help="print the checks (names usable with -k) and exit")

    lb = sub.add_parser("leaderboard", help="render the leaderboard from result folders")
    lb.add_argument("--results", help="results folder (default ./results)")
    lb.add_argument("--format", choices=["markdown", "csv", "json", "html"], default="markdown",
                    help="html writes a static site folder (index.html, leaderboard.json, leaderboard.csv)")
    lb.add_argument("--output", help="write to this file instead of stdout (with --format html: the site folder)")
    lb.add_argument("--plot", help="also draw the richness-vs-gain plot to this PNG")
    lb.add_argument("--reference", action="store_true", help="include the paper's LLaVA-1.5-7B reference rows")
    lb.add_argument("--analysis-plots", metavar="DIR",
                    help="also draw the per-layer curves of every analysis (one PNG per model, task, analysis) here")
    from .verify.runner import add_parsers

    add_parsers(sub)
    return p


def _add_sweep_options(sub) -> None:
    """``sweep``: its own options; every other flag is a ``run`` flag, handed to each cell's run unchanged."""
    sw = sub.add_parser("sweep", allow_abbrev=False,
                        help="run a grid of models x tasks (all seeds in one run per cell) here or as SLURM jobs",
                        description="Every flag not listed here is a `run` flag (see `run --help`), given to the run "
                                    "of every cell; e.g. --seeds 0,1,2 --max-per-class 100. Docs: docs/sweeps.md")
    sw.add_argument("--models", type=_str_list, default=(), help="comma-separated models (see `list models`)")
    sw.add_argument("--tasks", type=_str_list, default=(), help="comma-separated tasks (see `list tasks`)")
    sw.add_argument("--executor", choices=["local", "slurm"],
                    help="local: run the cells on this machine; slurm: one job per cell (default: local, or what "
                         "sweep.json recorded)")
    sw.add_argument("--jobs", type=int, default=1, help="local: cells run at the same time (default 1)")
    sw.add_argument("--status", action="store_true", help="show every cell's state and exit")
    sw.add_argument("--resume", action="store_true",
                    help="re-submit the failed and missing cells recorded in sweep.json (no grid needed)")
    sl = sw.add_argument_group("SLURM (default: from `plan` for each model and task)")
    sl.add_argument("--slurm-partition")
    sl.add_argument("--slurm-account")
    sl.add_argument("--slurm-qos")
    sl.add_argument("--slurm-constraint")
    sl.add_argument("--slurm-gpus-per-node", type=int, help="GPUs per job (0: none)")
    sl.add_argument("--slurm-gpu-type", help="the nodes' GPU as `plan` names it, for sizing jobs (default A100-80GB)")
    sl.add_argument("--slurm-time", help="time limit: minutes, H:MM:SS or D-HH:MM:SS")
    sl.add_argument("--slurm-mem-gb", type=int, help="host memory per job")
    sl.add_argument("--slurm-cpus-per-task", type=int)
    sl.add_argument("--slurm-max-requeues", type=int, default=3,
                    help="requeues after pre-emption or time limit (the run resumes from its saved state)")


def _config_options(cls, dest_prefix: str = ""):
    """(field, dest) of every field of the dataclass ``cls`` that is a ``run`` option, in declaration order."""
    import dataclasses

    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "section" not in meta or meta.get("cli_kind") == "none":
            continue
        flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        if meta.get("cli_kind") == "negated":  # --no-progress: argparse's own dest, the field is its negation
            yield f, flags, flags[0].removeprefix("--").replace("-", "_")
        else:
            yield f, flags, dest_prefix + f.name


def _add_config_option(group, f, flags, dest) -> None:
    """One field as one argparse option, from the field's metadata (config.option)."""
    meta = f.metadata
    kind = meta.get("cli_kind")
    kw = {k: meta[k] for k in ("type", "choices", "metavar", "required") if k in meta}
    if kind in ("flag", "negated"):
        kw["action"] = "store_true"
    elif kind == "append":
        kw["action"] = "append"
    else:
        kw["type"] = {"int_list": _int_list, "str_list": _str_list}.get(kind, kw.get("type"))
        if not meta.get("required"):
            kw["default"] = f.default
    group.add_argument(*flags, dest=dest, help=meta["help"], **{k: v for k, v in kw.items() if v is not None})


def _add_run_options(r) -> None:
    """The ``run`` options, generated from RunConfig's field declarations: one argument group per section."""
    from .config import SECTIONS, ProbeConfig, RunConfig

    groups = {name: r.add_argument_group(title) for name, title in SECTIONS.items()}
    for f, flags, dest in _config_options(RunConfig):
        if f.metadata.get("cli_kind") == "fields":  # the probe's own settings
            for pf, pflags, pdest in _config_options(ProbeConfig, dest_prefix=f.name + "_"):
                _add_config_option(groups[pf.metadata["section"]], pf, pflags, pdest)
        else:
            _add_config_option(groups[f.metadata["section"]], f, flags, dest)
    groups["baselines"].add_argument(
        "--baselines", action="store_true",
        help="also run the baselines stage: random (exact expectation), CLIP zero-shot and the probe on CLIP's "
             "pooled embedding (paper Tables 1 and 3), via open_clip")
    groups["execution"].add_argument(
        "--accelerate-config", metavar="FILE",
        help="start the run as a multi-process job with this accelerate config (e.g. "
             "configs/accelerate/2x80gb-fsdp.yaml): the file and the flags are checked first, then "
             "`accelerate launch --config_file FILE -m benchmark run <the other flags>` takes over")
    r.add_argument("--grad-accum", type=int, help=argparse.SUPPRESS)  # replaced by --global-batch: refused


def _config_values(cls, a, dest_prefix: str = "") -> dict:
    """The values of ``cls``'s options in the parsed namespace ``a`` (the inverse of _add_config_option)."""
    values = {}
    for f, _flags, dest in _config_options(cls, dest_prefix):
        kind = f.metadata.get("cli_kind")
        if kind == "fields":
            values[f.name] = f.default_factory(**_config_values(f.default_factory, a, dest_prefix=f.name + "_"))
        elif kind == "negated":
            values[f.name] = not getattr(a, dest)
        elif kind == "append":  # not given: the field's default
            values[f.name] = tuple(getattr(a, dest)) if getattr(a, dest) else f.default
        else:
            values[f.name] = getattr(a, dest)
    return values


def run_config(a):
    """The RunConfig of a parsed ``run`` command line (not yet validated: :class:`Runner` does that first)."""
    from .config import BASELINES, RunConfig

    if a.grad_accum is not None:
        raise BenchmarkError("--grad-accum is replaced by --global-batch G: accumulation steps are derived as "
                             "G / (--micro-batch x processes). For the old behaviour pass "
                             f"--global-batch {(a.micro_batch or 8) * a.grad_accum}.")
    values = _config_values(RunConfig, a)
    if a.baselines and BASELINES not in values["regimes"]:
        values["regimes"] = (*values["regimes"], BASELINES)
    for t in a.clip_templates or ():
        if "{}" not in t:
            raise BenchmarkError(f"--clip-template {t!r} has no {{}} where the class name goes, e.g. "
                                 "'a photo of a {}, a texture.'")
    return RunConfig(**values)


def cmd_run(a) -> int:
    cfg = run_config(a)
    if a.accelerate_config:
        return launch_run(a, cfg)
    import os

    from .registry import plugins
    from .validation import resolve

    # The flags and names, as Runner checks them, before torch is imported (benchmark.distributed imports it, hence
    # WORLD_SIZE read here as distributed.launched_world_size reads it): a typo costs a fraction of a second.
    resolve(cfg, processes=int(os.environ.get("WORLD_SIZE", "1")))
    plugins().adapters.get(cfg.model)
    plugins().tasks.get(cfg.task)

    from .leaderboard.cli import run_table
    from .protocol import Runner
    from .schema import task_dir_name

    runner = Runner(cfg)
    try:
        runner.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished parts are saved under {runner.results}; run the same command to resume.",
              file=sys.stderr)
        return 130
    if not runner.dist.is_main:
        return 0
    print()
    print(f"{cfg.model} on {cfg.task}" + (f" (limited to {cfg.max_per_class} per class)" if cfg.max_per_class else ""))
    print(run_table(runner.results, cfg.model, task_dir_name(cfg.task, cfg.max_per_class)))
    print(f"\nresults: {runner.results}")
    return 0


def launch_run(a, cfg) -> int:
    """``run --accelerate-config F``: check F and the flags for its processes, then become accelerate launch."""
    from . import distributed, launch

    if distributed.launched_world_size() > 1 or launch.under_accelerate():
        raise BenchmarkError("--accelerate-config starts a job, but this process was already started by a launcher "
                             "(torchrun / accelerate launch): drop --accelerate-config from the command.")
    lc = launch.read_config(a.accelerate_config)
    launch.check_here(lc, cfg.device)
    launch.check_run(cfg, lc.num_processes)
    launch.hand_over(launch.launch_command(a.accelerate_config, a.argv))
    return 0  # not reached: the launcher replaced this process


def cmd_sweep(a) -> int:
    from .sweep.command import sweep_main

    def parse_run(flags: list[str]):
        parser = build_parser()
        r, rest = parser.parse_known_args(["run", *flags])  # a bad value: run's own one-line error
        if rest:
            raise unknown_arguments(parser, "sweep", rest)
        return run_config(r), r.accelerate_config

    return sweep_main(a, parse_run)


def cmd_analyze(a) -> int:
    from .analyses import AnalysisOptions
    from .analyses.runner import AnalysisRunner, AnalyzeConfig
    from .validation import MAX_SEED, InputError, check_device, check_int

    for field, low in (("probe_max_epochs", 1), ("tokens_per_image", 1), ("knockout_window", 0),
                       ("knockout_max_images", 1), ("permutations", 0), ("batch_size", 1), ("max_per_class", 1)):
        if getattr(a, field) is not None:
            check_int(field, getattr(a, field), low)
    if not a.seeds:
        raise InputError("--seeds is empty; give the seeds of the run, e.g. --seeds 0.")
    for s in a.seeds:
        check_int("seeds", s, 0, MAX_SEED, flag=f"--seeds (seed {s!r})")
    if not a.regimes:
        raise InputError("--regimes is empty; give one or more of zero-shot,ft-proj,ft-e2e.")
    check_device(a.device)
    options = AnalysisOptions(probe_max_epochs=a.probe_max_epochs, tokens_per_image=a.tokens_per_image,
                              mir_compat=a.mir_compat, knockout_window=a.knockout_window,
                              knockout_max_images=a.knockout_max_images, permutations=a.permutations,
                              batch_size=a.batch_size)
    cfg = AnalyzeConfig(model=a.model, task=a.task, analyses=a.analysis, regimes=a.regimes, seeds=a.seeds,
                        max_per_class=a.max_per_class, drop_duplicates=a.drop_duplicates,
                        results_dir=a.results_dir, cache_dir=a.cache_dir, device=a.device, options=options,
                        progress=not a.no_progress)
    runner = AnalysisRunner(cfg)
    try:
        written = runner.run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished analyses are saved under {runner.task_dir}; run the same command to resume.",
              file=sys.stderr)
        return 130
    from .leaderboard.analyses import draw_curves

    for png in draw_curves(runner.results, model=a.model, task_dir=runner.task_dir.name):
        print(f"curves: {png}")
    print(f"{len(written)} analysis result(s) written under {runner.task_dir / 'analyses'}")
    if runner.problems:
        print(f"{len(runner.problems)} problem(s): see [missing] / [refused] above.", file=sys.stderr)
        return 1
    return 0


def cmd_plan(a) -> int:
    from .plan.command import run

    return run(a)


def cmd_list(a) -> int:
    import os

    from .listing import list_command

    try:
        print(list_command(a.what, a.verbose), flush=True)
    except BrokenPipeError:  # `list models | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_cache(a) -> int:
    from .cache_command import cache_command

    return cache_command(a.action, cache_dir=a.cache_dir, everything=a.everything, dry_run=a.dry_run)


def cmd_check_adapter(a) -> int:
    import os

    try:
        import pytest
    except ImportError:
        raise BenchmarkError("check-adapter runs the conformance suite with pytest: "
                             "`pip install 'projbench[test]'` first.") from None

    from .registry import plugins

    if a.list:
        from .conformance import list_checks

        for name, doc in list_checks():
            print(f"{name:50s} {doc}")
        return 0
    if not a.names:
        raise BenchmarkError("check-adapter needs at least one adapter name (see `list models`), or --list.")
    for name in a.names:
        plugins().adapters.get(name)  # unknown names fail here, with suggestions
    # Set before benchmark.conformance is imported: its parametrisation reads it at import time.
    os.environ["PROJBENCH_CONFORMANCE_MODELS"] = ",".join(a.names)
    args = ["-q", "-p", "no:cacheprovider", "--noconftest", "-o", "addopts=", "--pyargs", "benchmark.conformance"]
    return int(pytest.main(args + (["-k", a.keyword] if a.keyword else [])))


def cmd_leaderboard(a) -> int:
    from .leaderboard.cli import main as leaderboard_main

    return leaderboard_main(a)


def cmd_verify(a) -> int:
    from .verify.runner import cmd_verify as verify

    return verify(a)


def cmd_export(a) -> int:
    from .verify.runner import cmd_export as export

    return export(a)


def unknown_arguments(parser, command: str, rest: list[str]) -> BenchmarkError:
    """The one-line error for the arguments ``command`` does not take: each unknown flag with the closest flags it
    does take, and the --help that lists them. ``sweep`` gives every flag it does not define to each cell's ``run``,
    so its unknown flags are neither sweep's nor run's."""
    import difflib

    names = ("sweep", "run") if command == "sweep" else (command,)
    known = [o for n in names for a in parser.commands[n]._actions  # argparse lists its options nowhere public
             for o in a.option_strings if a.help != argparse.SUPPRESS]
    helps = " and ".join(f"`python -m benchmark {n} --help`" for n in names)
    flags = [t.split("=", 1)[0] for t in rest if t.startswith("-") and not t[1:2].isdigit()]  # -1: a value
    if not flags:
        return BenchmarkError(f"python -m benchmark {command} takes no argument {rest[0]!r}; see {helps}.")
    named = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        named.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return BenchmarkError(f"{', '.join(named)}: no such {' or '.join(names)} flag; see {helps}.")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.argv, args.run_flags = argv, rest  # as typed: `run --accelerate-config` hands the same flags on
    try:
        if rest and args.command != "sweep":  # only sweep takes flags it does not define: they are run flags
            raise unknown_arguments(parser, args.command, rest)
        return {"run": cmd_run, "sweep": cmd_sweep, "plan": cmd_plan, "analyze": cmd_analyze, "list": cmd_list,
                "cache": cmd_cache, "check-adapter": cmd_check_adapter, "leaderboard": cmd_leaderboard,
                "verify": cmd_verify, "export": cmd_export}[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
