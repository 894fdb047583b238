"""Real-size rehearsal (issue 17): the whole pipeline with ViT-B-32 and GPT-2 124M, every stage measured.

Usage: python benchmarks/rehearsal.py [--quick] [--root DIR] [--out OUT.json] [--runner dask --workers 2]

1. Setup (timed apart, not a pipeline stage): the corpus texts train a byte-level BPE tokenizer
   (``tokenizers``) padded with reserved tokens to GPT-2's 50,257 entries; a random-init GPT-2 124M
   (12 layers, 768 wide, 1024 positions) is saved beside it as a local Hugging Face folder, which
   ``train.model.gpt2_dir`` loads exactly as a downloaded ``gpt2``. World scenes are rendered at 224 px:
   unpaired images for the gap statistics, test images with five references each.
2. ``tomcap pipeline --config <filled configs/rehearsal.yaml>`` (Prefect) in a child process, whose
   process tree's RSS is sampled every 0.2 s.
3. Per stage, from the artifact manifests (build window = created_at - duration_s .. created_at): wall
   time, throughput, peak RSS of the process tree in that window, artifact size on disk. Written as
   JSON and printed as a markdown table.

RSS caveat: one process runs every stage, so a stage's peak includes what earlier stages left
allocated (Python and torch keep freed memory); the difference between windows is what a stage added.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "configs" / "rehearsal.yaml"
GPT2_VOCAB = 50257
SAMPLE_S = 0.2
FULL = {"per_source_rows": None, "unpaired_images": 3000, "test_images": 500, "steps": 40, "batch_size": 8,
        "val_size": 64}
QUICK = {"per_source_rows": 600, "unpaired_images": 200, "test_images": 50, "steps": 6, "batch_size": 4,
         "val_size": 16}
"""Measured on the shared 2-core machine (load ~8): ViT-B-32 encodes ~40 captions/s and ~5 images/s there,
and a GPT-2 124M training step of 8 retrieval-prompted examples takes ~1 min; quick stays within 20 minutes."""
STAGES = ("corpus", "embed", "embed_shard", "embed_images", "gap", "index", "train", "generate", "evaluate")


def _log(msg: str) -> None:
    print(f"[rehearsal {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- setup -------------------------------------------------------------------------------------------
def build_gpt2(folder: Path, texts: list[str], seed: int = 0) -> dict:
    """Tokenizer trained on ``texts`` (padded to 50,257 entries) + random-init GPT-2 124M, as safetensors."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tomcap.world.train_gpt2 import train_tokenizer

    t0 = time.perf_counter()
    tok = train_tokenizer(texts, GPT2_VOCAB)
    learned = len(tok)
    if learned < GPT2_VOCAB:
        # ~138k captions hold fewer distinct merges than GPT-2's vocabulary; the reserved entries give the
        # embedding matrix and LM head their real size (what the cost depends on). Not special tokens: an
        # untrained decoder emits them, and decoding drops special tokens (the captions came out empty).
        tok.add_tokens([f"<|reserved_{i}|>" for i in range(GPT2_VOCAB - learned)], special_tokens=False)
    tok_s = time.perf_counter() - t0
    cfg = GPT2Config(vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.eos_token_id)  # GPT2Config() defaults are gpt2 (124M): 12 x 768, 1024 positions
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    return {"tokenizer_learned": learned, "tokenizer_entries": len(tok), "tokenizer_s": round(tok_s, 2),
            "gpt2_params": n, "gpt2_s": round(time.perf_counter() - t0 - tok_s, 2)}


def setup(root: Path, sizes: dict, template: dict) -> tuple[dict, dict]:
    """(filled pipeline config dict, setup facts)."""
    from tomcap.corpus.stage import read_corpus, run_corpus
    from tomcap.settings import PipelineConfig, _resolve_relative
    from tomcap.world import WorldConfig, generate_world

    facts: dict = {}
    cfg = _resolve_relative(template, TEMPLATE.parent)
    if sizes["per_source_rows"]:
        for s in cfg["corpus"]["sources"]:
            s["max_rows"] = sizes["per_source_rows"]
    t0 = time.perf_counter()
    corpus_cfg = PipelineConfig.model_validate({"corpus": cfg["corpus"]}).corpus
    texts = read_corpus(run_corpus(corpus_cfg, root / "setup")).get_column("text").to_list()
    gpt2_dir = root / "models" / "gpt2-124m-random"
    if not (gpt2_dir / "config.json").is_file():
        facts["gpt2"] = build_gpt2(gpt2_dir, texts)
    facts["corpus_texts"] = len(texts)
    _log(f"GPT-2 folder ready ({time.perf_counter() - t0:.1f}s): {facts.get('gpt2')}")
    t0 = time.perf_counter()
    unpaired = generate_world(root / "world_unpaired", WorldConfig(seed=1017, image_size=224, n_train_scenes=1,
                                                                    n_test_images=sizes["unpaired_images"]))
    test = generate_world(root / "world_test", WorldConfig(seed=17, image_size=224, n_train_scenes=1,
                                                           n_test_images=sizes["test_images"]))
    facts["render_s"] = round(time.perf_counter() - t0, 1)
    facts["images"] = {"unpaired": sizes["unpaired_images"], "test": sizes["test_images"], "px": 224}
    _log(f"world images rendered in {facts['render_s']}s")
    cfg["train"]["model"]["gpt2_dir"] = str(gpt2_dir)
    cfg["train"].update(steps=sizes["steps"], batch_size=sizes["batch_size"], val_size=sizes["val_size"],
                        warmup_steps=min(cfg["train"]["warmup_steps"], sizes["steps"] - 1))
    cfg["train"]["eval_every"] = sizes["steps"]
    cfg["train"]["checkpoint_every"] = max(1, sizes["steps"] // 2)
    cfg["embed_images"] = {"images": str(unpaired.test_images_dir)}
    cfg["test_images"] = {"images": str(test.test_images_dir)}
    cfg["generate"]["annotations"] = str(test.test_annotations)
    cfg["evaluate"].update(refs=str(test.test_annotations), images=str(test.test_images_dir))
    return cfg, facts


# -- measuring ---------------------------------------------------------------------------------------
class TreeSampler(threading.Thread):
    """RSS and CPU time of a process and its children, every SAMPLE_S seconds: [(unix time, MiB, cpu s)].

    CPU seconds make a stage's cost readable on a shared machine, where wall time depends on the load."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total, cpu = 0, 0.0
            for p in procs:
                try:
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    cpu += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            self.samples.append((time.time(), total / 2**20, cpu))
            self.stop.wait(SAMPLE_S)


def _throughput(stage: str, m: dict, seconds: float) -> tuple[float | None, str]:
    rows, info = m.get("rows") or {}, m.get("info") or {}
    per = lambda n: round(n / seconds, 2) if n and seconds > 0 else None  # noqa: E731
    if stage == "corpus":
        return per(rows.get("rows") or rows.get("kept")), "captions/s"
    if stage in ("embed", "embed_shard"):
        return per(rows.get("encoded", rows.get("rows"))), "captions/s"
    if stage == "embed_images":
        return per(rows.get("images") or rows.get("rows")), "images/s"
    if stage == "gap":
        return per(rows.get("text_rows") or rows.get("text")), "text rows/s"
    if stage == "index":
        return per(rows.get("vectors") or rows.get("rows") or info.get("ntotal")), "vectors/s"
    if stage == "train":
        return per(rows.get("steps")), "steps/s"
    if stage == "generate":
        return per(rows.get("images") or rows.get("captions") or rows.get("rows")), "images/s"
    if stage == "evaluate":
        return per(rows.get("images") or rows.get("rows")), "images/s"
    return None, ""


def _cpu(samples: list[tuple[float, float, float]], start: float, end: float) -> float | None:
    """CPU seconds the process tree spent in [start, end] (nearest samples; worker processes included)."""
    inside = [c for t, _, c in samples if start - SAMPLE_S <= t <= end + SAMPLE_S]
    return round(inside[-1] - inside[0], 1) if len(inside) > 1 else None


def stage_table(data_dir: Path, samples: list[tuple[float, float]]) -> list[dict]:
    out = []
    for stage in STAGES:
        sd = data_dir / "artifacts" / stage
        if not sd.is_dir():
            continue
        for mf in sorted(sd.glob("*/manifest.json")):
            m = json.loads(mf.read_text())
            end = dt.datetime.fromisoformat(m["created_at"]).timestamp()
            start = end - float(m["duration_s"])
            window = [r for t, r, _ in samples if start - SAMPLE_S <= t <= end + SAMPLE_S]
            thr, unit = _throughput(stage, m, float(m["duration_s"]))
            out.append({"stage": stage, "wall_s": round(float(m["duration_s"]), 2), "cpu_s": _cpu(samples, start, end),
                        "throughput": thr, "unit": unit,
                        "peak_rss_mb": round(max(window), 0) if window else None,
                        "artifact_mb": round(sum(f["size"] for f in m["files"].values()) / 2**20, 2),
                        "rows": m.get("rows"), "start": start, "end": end})
    out.sort(key=lambda r: r["start"])
    shards = [r for r in out if r["stage"] == "embed_shard"]
    embed = next((r for r in out if r["stage"] == "embed"), None)
    if shards and embed is not None:
        # Mapped embedding: the shard tasks run side by side; what the user waits for is first start .. assembly end.
        start = min(r["start"] for r in shards)
        wall = embed["end"] - start
        n = sum(int((r["rows"] or {}).get("encoded", (r["rows"] or {}).get("rows", 0))) for r in shards)
        window = [v for t, v, _ in samples if start - SAMPLE_S <= t <= embed["end"] + SAMPLE_S]
        out.insert(out.index(embed) + 1, {
            "stage": f"embed (mapped: {len(shards)} shard tasks + assembly)", "wall_s": round(wall, 2),
            "cpu_s": _cpu(samples, start, embed["end"]),
            "throughput": round(n / wall, 2) if wall > 0 else None, "unit": "captions/s",
            "peak_rss_mb": round(max(window), 0) if window else None,
            "artifact_mb": embed["artifact_mb"] + sum(r["artifact_mb"] for r in shards), "rows": {"encoded": n},
            "start": start, "end": embed["end"]})
    return out


def markdown(rows: list[dict], total: dict) -> str:
    lines = ["| stage | wall (s) | CPU (s) | throughput (per wall s) | peak RSS (MiB) | artifact (MiB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        thr = f"{r['throughput']} {r['unit']}" if r["throughput"] is not None else "-"
        cells = [r["stage"], r["wall_s"], r["cpu_s"], thr, r["peak_rss_mb"], r["artifact_mb"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    cells = ["**pipeline (whole run)**", total["wall_s"], total["cpu_s"], "-", total["peak_rss_mb"], "-"]
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _suffixed(name: str, tag: str) -> str:
    return f"{name}-{tag}" if tag else name


def run_pipeline(root: Path, config_path: Path, extra: list[str], tag: str = "") -> tuple[float, list, int]:
    exe = Path(sys.executable).with_name("tomcap")
    cmd = [str(exe) if exe.exists() else "tomcap", "pipeline", "--config", str(config_path),
           "--data-dir", str(root / _suffixed("data", tag)), *extra]
    env = dict(os.environ, PREFECT_HOME=str(root / _suffixed("prefect", tag)), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING", TOMCAP_LOG_LEVEL="INFO")
    _log("running: " + " ".join(cmd))
    t0 = time.perf_counter()
    with open(root / _suffixed("pipeline.log", tag), "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop.set()
        sampler.join()
    return time.perf_counter() - t0, sampler.samples, rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer captions, images and steps (<= 20 min on 2 cores)")
    ap.add_argument("--root", type=Path, default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (default: <root>/rehearsal.json)")
    ap.add_argument("--runner", choices=("threads", "dask"), default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--map-rows", type=int, default=None)
    ap.add_argument("--tag", default="", help="run name inside --root: data-<tag>/ (reuses its models and images)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import tempfile

    root = (args.root or Path(tempfile.mkdtemp(prefix="tomcap-rehearsal-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    cfg, facts = setup(root, sizes, yaml.safe_load(TEMPLATE.read_text()))
    facts["setup_s"] = round(time.perf_counter() - t0, 1)
    config_path = root / f"{_suffixed('rehearsal', args.tag)}.run.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    extra = []
    for flag, value in (("--runner", args.runner), ("--workers", args.workers), ("--map-rows", args.map_rows)):
        if value is not None:
            extra += [flag, str(value)]
    wall, samples, rc = run_pipeline(root, config_path, extra, args.tag)
    log_path, data_dir = root / _suffixed("pipeline.log", args.tag), root / _suffixed("data", args.tag)
    if rc != 0:
        _log(f"pipeline failed (exit {rc}); last lines of {log_path}:")
        print("\n".join(log_path.read_text().splitlines()[-30:]), file=sys.stderr)
        return 1
    rows = stage_table(data_dir, samples)
    total = {"wall_s": round(wall, 1), "cpu_s": round(samples[-1][2], 1) if samples else None,
             "peak_rss_mb": round(max(r for _, r, _ in samples), 0) if samples else None,
             "load_avg_1m_end": round(os.getloadavg()[0], 1)}
    evaluation = next((r for r in rows if r["stage"] == "evaluate"), None)
    metrics = {}
    if evaluation is not None:
        m = json.loads(next((data_dir / "artifacts" / "evaluate").glob("*/manifest.json")).read_text())
        by_run = (m.get("info") or {}).get("metrics", {})  # {results folder: metrics}; "." for one results file
        metrics = {k: v for k, v in next(iter(by_run.values()), {}).items() if not isinstance(v, (dict, list))}
    report = {"mode": "quick" if args.quick else "full", "cpus": os.cpu_count(), "device": "cpu",
              "gpu": "not measured: no device lent", "sizes": sizes, "setup": facts, "stages": rows,
              "pipeline": total, "metrics_random_init": metrics, "root": str(root), "extra_args": extra}
    out = args.out or root / f"{_suffixed('rehearsal', args.tag)}.json"
    out.write_text(json.dumps(report, indent=2))
    print(markdown(rows, total))
    _log(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
