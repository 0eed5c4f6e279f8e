"""Command line: ``python -m benchmark run | analyze | list | check-adapter | leaderboard``."""

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


def build_parser() -> argparse.ArgumentParser:
    from .config import BASELINES, EARLY_STOPPING, EVAL_MODES, REGIMES, SCORE_NORMS, RunConfig

    d = RunConfig(model="", task="")
    p = _Parser(prog="python -m benchmark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the protocol (zero-shot, FT-Proj, FT-E2E, probes) for one model and task")
    r.add_argument("--model", required=True, help="adapter name (see `list models`)")
    r.add_argument("--task", required=True, help="task name (see `list tasks`)")
    r.add_argument("--seeds", type=_int_list, default=d.seeds, help="comma-separated seeds (default: 0)")
    r.add_argument("--regimes", type=_str_list, default=d.regimes, help=f"subset of {','.join(REGIMES)}, plus {BASELINES} (see --baselines)")
    r.add_argument("--data-dir", help="local data: DIR/train/<class>/* and DIR/test/<class>/*")
    r.add_argument("--model-path", help="local checkpoint directory instead of the hub id")
    r.add_argument("--domain", help="override the task's domain phrase in the prompt")
    r.add_argument("--results-dir", help="where result folders go (default ./results or $PROJBENCH_RESULTS)")
    r.add_argument("--cache-dir", help="feature and tiny-model cache (default ~/.cache/projbench or $PROJBENCH_CACHE)")
    r.add_argument("--global-batch", type=int, default=d.global_batch,
                   help="examples per optimizer step over all processes (default: the paper's, 64 for FT-Proj and "
                        "32 for FT-E2E); the loss is the mean over all answer tokens of the global batch")
    r.add_argument("--micro-batch", "--batch-size", dest="micro_batch", type=int, default=d.micro_batch,
                   help="examples per process and forward (default: the largest divisor of the process's share "
                        "of the global batch up to 8); gradients accumulate over "
                        "global / (micro-batch x processes) micro-batches. Results do not depend on it")
    r.add_argument("--eval", dest="eval_mode", choices=EVAL_MODES, default=d.eval_mode,
                   help="loglik: score every class name (default); generate: greedy decoding + name matching, "
                        "reports the unmatched rate")
    r.add_argument("--score-norm", choices=SCORE_NORMS, default=d.score_norm,
                   help="loglik: rank classes by the summed log-probability of the answer tokens (default, as "
                        "scored by log-likelihood) or by its per-token mean; both are recorded either way")
    r.add_argument("--template", help="prompt template variant of the adapter (default: the adapter's own; "
                                      "llava15: llava_v1, or 'short')")
    r.add_argument("--drop-duplicates", action="store_true",
                   help="remove test images byte-identical to a training image (default: keep them and warn)")
    r.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    r.add_argument("--score-rows", type=int, default=d.score_rows,
                   help="loglik: KV-cache rows (examples x classes) scored at once; lower it if the GPU runs out "
                        "of memory (0.35-0.5 GB per row for LLaVA-1.5-7B in bf16)")
    r.add_argument("--engine", choices=("auto", "ddp", "fsdp2", "deepspeed"), default=d.engine,
                   help="several processes: auto = accelerate's (DDP, the FSDP of its config file on GPUs, or "
                        "DeepSpeed ZeRO-3 under a DeepSpeed config), ddp, fsdp2 = PyTorch fully_shard, or deepspeed "
                        "= DeepSpeed ZeRO-3 through accelerate (both shard parameters, gradients, optimizer; both "
                        "also on CPU). Results do not depend on it")
    r.add_argument("--accelerate-config", metavar="FILE",
                   help="start the run as a multi-process job with this accelerate config (e.g. "
                        "configs/accelerate/2x80gb-fsdp.yaml): the file and the flags are checked first, then "
                        "`accelerate launch --config_file FILE -m benchmark run <the other flags>` takes over")
    r.add_argument("--grad-accum", type=int, help=argparse.SUPPRESS)  # replaced by --global-batch: refused
    r.add_argument("--epochs", type=int, default=d.epochs)
    r.add_argument("--lr-proj", type=float, default=d.lr_proj)
    r.add_argument("--lr-e2e", type=float, default=d.lr_e2e)
    r.add_argument("--lora", action="store_true", help="FT-E2E with LoRA on the LLM (labelled in results)")
    r.add_argument("--lora-rank", type=int, default=d.lora_rank)
    r.add_argument("--lr-lora", type=float, default=d.lr_lora, help="learning rate of the LoRA weights")
    r.add_argument("--gradient-checkpointing", action="store_true")
    r.add_argument("--checkpoint-every", type=int,
                   help="optimizer steps between resumable training checkpoints (default: 10 per run when the "
                        "trained weights are small, none for full fine-tuning of a large LLM; 0 = never)")
    r.add_argument("--max-per-class", type=int, help="quick run: at most N images per class and split")
    r.add_argument("--probe-max-epochs", type=int, default=d.probe.max_epochs)
    r.add_argument("--baselines", action="store_true",
                   help="also run the baselines stage: random (exact expectation), CLIP zero-shot and the probe "
                        "on CLIP's pooled embedding (paper Tables 1 and 3), via open_clip")
    r.add_argument("--clip-model", help="open_clip model for the baselines (default: the CLIP matching the "
                                        "adapter's vision encoder); or local-dir:DIR")
    r.add_argument("--clip-pretrained", help="open_clip pretrained tag or weight file for --clip-model")
    r.add_argument("--clip-template", action="append", dest="clip_templates",
                   help="zero-shot prompt with {} for the class name; repeat to average several "
                        "(default: 'This is a photo of {}.')")
    r.add_argument("--probe-early-stopping", choices=EARLY_STOPPING, default=d.probe.early_stopping,
                   help=f"stop the probe on validation loss (default, as the paper) or macro-F1; patience "
                        f"{d.probe.patience} epochs")
    r.add_argument("--no-control-probe", action="store_true",
                   help="skip the control probes on shuffled labels (halves probe time; no selectivity reported)")
    r.add_argument("--device", default=d.device)
    r.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: bf16 on GPU, fp32 on CPU)")
    r.add_argument("--keep-checkpoints", action="store_true", help="keep the full trainable state after a run")
    r.add_argument("--no-progress", action="store_true")

    from .analyses import AnalysisOptions

    o = AnalysisOptions()
    an = sub.add_parser("analyze", help="layer-wise analyses of a finished run's model states (see `list analyses`)")
    an.add_argument("--model", required=True, help="adapter name of the run")
    an.add_argument("--task", required=True, help="task name of the run")
    an.add_argument("--analysis", type=_str_list, default=(),
                    help="comma-separated analyses (default: all; see `list analyses`)")
    an.add_argument("--regimes", type=_str_list, default=REGIMES,
                    help=f"model states: subset of {','.join(REGIMES)} (zero-shot = the original weights)")
    an.add_argument("--seeds", type=_int_list, default=(0,), help="seeds of the run (default: 0)")
    an.add_argument("--max-per-class", type=int, help="analyse the limited run made with this --max-per-class")
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

    pl = sub.add_parser("plan", help="memory, FLOPs and time of a run on given GPUs, from the real architecture "
                                     "built without weights")
    pl.add_argument("--model", required=True)
    pl.add_argument("--task", required=True)
    pl.add_argument("--gpus", required=True, help="COUNTxNAME, e.g. 2xA100-80GB, 1xH100-80GB, 8xA100-40GB")
    pl.add_argument("--model-path", help="a folder with config.json, for models whose config does not ship")
    pl.add_argument("--micro-batch", type=int, help="force this micro-batch (default: the largest that fits)")
    pl.add_argument("--mfu", type=float, default=0.35, help="model FLOP utilisation for time estimates")
    pl.add_argument("--peak-tflops", type=float, help="bf16 peak of a GPU not in the built-in table")
    pl.add_argument("--n-train", type=int, help="training images (default: the task's published size)")
    pl.add_argument("--n-test", type=int, help="test images (default: the task's published size)")
    pl.add_argument("--tokens", type=int, help="tokens per training sample (default: the task's real prompt)")
    pl.add_argument("--json", action="store_true", help="print JSON (keys: docs/plan.md)")

    ls = sub.add_parser("list", help="list registered models, tasks, analyses or plugins")
    ls.add_argument("what", choices=["models", "tasks", "analyses", "plugins"])
    ls.add_argument("--verbose", "-v", action="store_true")

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
    return p


def run_config(a):
    """The RunConfig of a parsed ``run`` command line (not yet validated: :class:`Runner` does that first)."""
    from .config import BASELINES, ProbeConfig, RunConfig

    if a.grad_accum is not None:
        raise BenchmarkError("--grad-accum is replaced by --global-batch G: accumulation steps are derived as "
                             "G / (--micro-batch x processes). For the old behaviour pass "
                             f"--global-batch {(a.micro_batch or 8) * a.grad_accum}.")
    regimes = tuple(a.regimes) + ((BASELINES,) if a.baselines and BASELINES not in a.regimes else ())
    for t in a.clip_templates or ():
        if "{}" not in t:
            raise BenchmarkError(f"--clip-template {t!r} has no {{}} where the class name goes, e.g. "
                                 "'a photo of a {}, a texture.'")
    cfg = RunConfig(
        model=a.model, task=a.task, seeds=a.seeds, regimes=regimes,
        clip_model=a.clip_model, clip_pretrained=a.clip_pretrained,
        clip_templates=tuple(a.clip_templates) if a.clip_templates else RunConfig.clip_templates, data_dir=a.data_dir, model_path=a.model_path,
        domain=a.domain, results_dir=a.results_dir, cache_dir=a.cache_dir, global_batch=a.global_batch,
        micro_batch=a.micro_batch, engine=a.engine,
        eval_batch_size=a.eval_batch_size, score_rows=a.score_rows, epochs=a.epochs, lr_proj=a.lr_proj,
        eval_mode=a.eval_mode,
        lr_e2e=a.lr_e2e, lora=a.lora, lora_rank=a.lora_rank, lr_lora=a.lr_lora, gradient_checkpointing=a.gradient_checkpointing,
        checkpoint_every=a.checkpoint_every,
        max_per_class=a.max_per_class, device=a.device, dtype=a.dtype,
        score_norm=a.score_norm, template=a.template, drop_duplicates=a.drop_duplicates,
        probe=ProbeConfig(max_epochs=a.probe_max_epochs, early_stopping=a.probe_early_stopping,
                          control=not a.no_control_probe), keep_checkpoints=a.keep_checkpoints,
        progress=not a.no_progress,
    )
    return cfg


def cmd_run(a) -> int:
    from .leaderboard.cli import run_table
    from .protocol import Runner
    from .schema import task_dir_name

    cfg = run_config(a)
    if a.accelerate_config:
        return launch_run(a, cfg)
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
                        max_per_class=a.max_per_class, results_dir=a.results_dir, cache_dir=a.cache_dir,
                        device=a.device, options=options, progress=not a.no_progress)
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
    import json

    from .plan import plan, render

    p = plan(a.model, a.task, gpus=a.gpus, model_path=a.model_path, micro_batch=a.micro_batch, mfu=a.mfu,
             peak_tflops=a.peak_tflops, n_train=a.n_train, n_test=a.n_test, train_tokens=a.tokens)
    print(json.dumps(p.to_json(), indent=2) if a.json else render(p))
    return 0


def cmd_list(a) -> int:
    from tabulate import tabulate

    from .registry import plugins

    reg = plugins()
    if a.what == "models":
        rows = [[s.name, s.projector_family, s.projector_modules, s.checkpoint, s.origin] for s in reg.adapters]
        print(tabulate(rows, headers=["model", "projector", "projector modules", "checkpoint", "from"]))
    elif a.what == "tasks":
        rows = []
        for t in reg.tasks:
            row = [t.name, t.version, t.domain, len(t.classes) or "from folders", t.source.describe(), t.origin]
            if a.verbose:
                row += [t.citation, t.license]
            rows.append(row)
        headers = ["task", "version", "domain", "classes", "source", "from"] + (["citation", "licence"] if a.verbose else [])
        print(tabulate(rows, headers=headers, disable_numparse=True))
    elif a.what == "analyses":
        rows = [[s.name, s.description, ", ".join(s.requires) or "-", s.citation, s.origin] for s in reg.analyses]
        print(tabulate(rows, headers=["analysis", "what", "requires", "citation", "from"],
                       maxcolwidths=[None, 50, 24, 50, None]))
    else:
        print(tabulate(reg.list_plugins(), headers=["plugin", "module", "status"]))
    return 0


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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # as typed: `run --accelerate-config` hands the same flags on
    try:
        return {"run": cmd_run, "plan": cmd_plan, "analyze": cmd_analyze, "list": cmd_list, "check-adapter": cmd_check_adapter,
                "leaderboard": cmd_leaderboard}[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
