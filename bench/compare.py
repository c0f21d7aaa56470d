#!/usr/bin/python3
"""Side-by-side training-step benchmark: sslrun vs PyTorch 1.13 on W1-W3.

Run from anywhere with Debian's interpreter (it has torch; the `python3` on
PATH may not):

    /usr/bin/python3 bench/compare.py            # everything; writes bench/RESULTS.md
    /usr/bin/python3 bench/compare.py --quick    # W1 x 3 methods + W2 SimSiam, 1 rep, 3 steps

What it does
------------
1. Builds bench/step (our step, see its doc) and cmd/sslrun from the
   working tree (--step-bin / --sslrun-bin use prebuilt binaries instead),
   and copies ../shared/bench/torch_baseline.py into the work directory
   (the script writes raw/<run-id>.jsonl beside itself; the shared folder is
   read-only).
2. Step table: for each repetition, thread count and (workload, method),
   runs our step and torch_baseline.py back to back, alternating which goes
   first (A B, then B A), each in a fresh process with the same protocol
   flags (--iters, --gate-timeout, --max-block-s; warm-up as the reference).
   torch_baseline.py is invoked as
   `torch_baseline.py --run-id R --workloads W --methods M --threads N
   --no-gemm --no-peak ...` (it pins Debian's OpenBLAS OpenMP build and sets
   OMP/OpenBLAS/torch threads to N); ours as `step -workload W -method M
   -threads N` (GOMAXPROCS=N in every process; encoder and loss as plugin
   subprocesses unless --in-process).
3. Pipeline table (W1 and W2, SimSiam): `sslrun run bench/pipelines/...`
   (data loading + augmentation + step + run-database logging, in whatever
   execution mode sslrun uses by default), then our pure step in the same
   mode (in process if sslrun started no child processes, else plugin
   subprocesses), alternating the order per repetition. The pipeline's
   images/s come from the time of each step's train/loss row in its run
   database (ms resolution): step k's interval is t_k - t_(k-1), warm-up
   steps excluded; the pure step's over the same window, its first
   `iters` timed steps, ungated like the pipeline's (see same_window).
   W1 trains on real MNIST (GoMNIST in the module cache);
   W2 on CIFAR-10 binary files of random pixels that this script writes
   (there is no CIFAR-10 here).
4. Prints one table and writes it, with the command, date, machine and load,
   to --out (bench/RESULTS.md), and every raw record to --raw
   (bench/RESULTS.jsonl).

Statistics: images/s = batch / step time. Per side and row: "median" is the
median of the per-repetition medians, min/max are the slowest/fastest single
timed step over all repetitions; "ratio" = ours median / torch median, and
"pair ratio" the median over repetitions of ours/torch within the same pair
(less sensitive to the load changing between pairs). GFLOP/s = FLOPs per
step (GEMM/conv multiply-adds only, torch_baseline.py's counting, computed
here from the workload definition and checked against the count
torch_baseline.py reports) / median step time. Peak RSS: ours is the sum of
the peak RSS (VmHWM) of the host and its plugin children (an upper bound:
shared-memory arena pages count in each process that maps them; the JSON
also has the tree's largest PSS); PyTorch's is the peak RSS of its
benchmark process (ru_maxrss of the torch_baseline.py process tree, which is
the largest single process). "foreign" is how many CPUs other processes used
during the timed steps (0 = quiet machine).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The reference benchmark lives in the shared folder beside the repository
# (../shared/bench); SSLRUN_SHARED_BENCH points elsewhere.
SHARED_BENCH = os.environ.get("SSLRUN_SHARED_BENCH", os.path.join(REPO, "..", "shared", "bench"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = "/usr/bin/python3"  # Debian's interpreter, with torch 1.13

# torch_baseline.py's WORKLOADS: batch, warm-up, timed steps, methods.
WORKLOADS = {
    "mlp-mnist": dict(short="W1", batch=512, warmup=2, iters=7, methods=["simsiam", "simclr", "byol"]),
    "convnet-cifar": dict(short="W2", batch=256, warmup=2, iters=7, methods=["simsiam", "simclr", "byol"]),
    "resnet18-cifar": dict(short="W3", batch=128, warmup=1, iters=3, methods=["simsiam"]),
}
SHORT = {v["short"]: k for k, v in WORKLOADS.items()}
PIPELINES = {"mlp-mnist": "w1_mnist_simsiam.hcl", "convnet-cifar": "w2_cifar_simsiam.hcl"}


# ----------------------------------------------------------------------------
# FLOPs per step, from the workload definition (torch_baseline.py docstring)
# ----------------------------------------------------------------------------
def layer_macs(workload):
    """MACs per image of each Linear/Conv of f = backbone+projector (first
    layer first) and of the predictor h, and the projection width D."""
    if workload == "mlp-mnist":
        return [784 * 1024, 1024 * 1024, 1024 * 512, 512 * 512], [512 * 128, 128 * 512], 512
    if workload == "convnet-cifar":
        f, hw = [], 32
        for cin, cout, stride in ((3, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
            hw //= stride
            f.append(hw * hw * cout * cin * 9)
        return f + [512 * 512, 512 * 512], [512 * 128, 128 * 512], 512
    if workload == "resnet18-cifar":
        f, cin, hw = [32 * 32 * 64 * 3 * 9], 64, 32
        for width, stride in zip((64, 128, 256, 512), (1, 2, 2, 2)):
            for b in range(2):
                s = stride if b == 0 else 1
                hw //= s
                f += [hw * hw * width * cin * 9, hw * hw * width * width * 9]
                if s != 1 or cin != width:
                    f.append(hw * hw * width * cin)  # 1x1 shortcut
                cin = width
        return f + [512 * 2048, 2048 * 2048, 2048 * 2048], [2048 * 512, 512 * 2048], 2048
    raise ValueError(workload)


def step_flops(workload, method, batch):
    """torch_baseline.py's count: 2 FLOP per MAC of every forward (incl. the
    BYOL target), weight gradient of every trained layer, input gradient of
    every layer but the first; SimCLR adds 3 x 2 (2B)^2 D for its
    similarity GEMM."""
    f, h, d = layer_macs(workload)
    F, H, first = sum(f), sum(h), f[0]
    if method == "simclr":
        per_view = 3 * F - first
        extra = 3 * 2 * (2 * batch) ** 2 * d
    else:
        per_view = 3 * (F + H) - first
        extra = 0
    total = 2 * 2 * batch * per_view + extra
    if method == "byol":
        total += 2 * 2 * batch * F  # target forward of both views
    return total


# ----------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------
def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def proc_children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def proc_tree(pid):
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += proc_children(p)
    return tree


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_process(cmd, env, log_path, poll=None):
    """Runs cmd to completion with stdout captured and stderr appended to
    log_path. Returns (rc, stdout, info): info has wall seconds, ru_maxrss
    (kB, largest single process of the tree), the CPUs other processes used
    meanwhile on average, and, with poll, the largest number of descendant
    processes and the largest summed RSS of the tree seen every poll s."""
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        out_path = log_path + ".stdout"
        with open(out_path, "w") as out:
            b0, t0 = machine_busy(), time.perf_counter()
            p = subprocess.Popen(cmd, env=env, stdout=out, stderr=log)
            kids, tree_rss = 0, 0
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG if poll else 0)
                if pid:
                    break
                tree = proc_tree(p.pid)
                kids = max(kids, len(tree) - 1)
                tree_rss = max(tree_rss, sum(rss_kb(q) for q in tree))
                time.sleep(poll)
            wall = time.perf_counter() - t0
            busy = (machine_busy() - b0) / CLK_TCK
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        stdout = f.read()
    own = ru.ru_utime + ru.ru_stime
    info = dict(wall_s=round(wall, 2), maxrss_kb=ru.ru_maxrss, foreign_avg=round(max(busy - own, 0) / max(wall, 1e-9), 3),
                children=kids, tree_rss_kb=tree_rss)
    return p.returncode, stdout, info


def thread_env(n):
    return dict(os.environ, GOMAXPROCS=str(n), OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n))


# ----------------------------------------------------------------------------
# the two sides
# ----------------------------------------------------------------------------
def run_ours(a, workload, method, threads, mode, iters=None):
    cmd = [a.step_bin, "-workload", workload, "-method", method, "-threads", str(threads),
           "-gate-timeout", str(a.gate_timeout), "-max-block-s", str(a.max_block_s)]
    if iters or a.iters:
        cmd += ["-iters", str(iters or a.iters)]
    if mode == "in-process":
        cmd.append("-in-process")
    rc, out, info = run_process(cmd, thread_env(threads), os.path.join(a.workdir, "ours.log"))
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {rc}; see {a.workdir}/ours.log")
    rec = json.loads(out.strip().splitlines()[-1])
    rec.update(side="ours", process=info, cmd=cmd)
    return rec


def run_torch(a, workload, method, threads, tag):
    rid = f"{tag}-{workload}-{method}-{threads}t"
    cmd = [PY, a.torch_script, "--run-id", rid, "--workloads", workload, "--methods", method,
           "--threads", str(threads), "--no-gemm", "--no-peak", "--gate-timeout", str(a.gate_timeout),
           "--max-block-s", str(a.max_block_s)]
    if a.iters:
        cmd += ["--iters", str(a.iters)]
    rc, out, info = run_process(cmd, dict(os.environ), os.path.join(a.workdir, "torch.log"))
    with open(os.path.join(a.workdir, "torch.log"), "a") as log:
        log.write(out)
    raw = os.path.join(os.path.dirname(a.torch_script), "raw", rid + ".jsonl")
    recs = []
    if os.path.exists(raw):
        with open(raw) as f:
            recs = [json.loads(line) for line in f]
    train = [r for r in recs if r.get("kind") == "train"]
    if rc != 0 or not train:
        raise RuntimeError(f"{' '.join(cmd)}: exit {rc}, {len(train)} results; see {a.workdir}/torch.log")
    rec = train[-1]
    meta = next((r for r in recs if r.get("kind") == "meta"), {})
    rec.update(side="torch", process=info, cmd=cmd, torch=meta.get("torch"), blas_path=meta.get("ld_library_path"),
               peak_rss_mb=info["maxrss_kb"] / 1024)
    return rec


def write_cifar(dirname, records):
    """CIFAR-10 binary files of random pixels: data_batch_1..5.bin, each
    `records` records of a label byte (< 10) and 3072 pixel bytes."""
    os.makedirs(dirname, exist_ok=True)
    rng = random.Random(0)
    for i in range(1, 6):
        with open(os.path.join(dirname, f"data_batch_{i}.bin"), "wb") as f:
            for _ in range(records):
                f.write(bytes([rng.randrange(10)]) + rng.randbytes(3072))


def same_window(rec, n):
    """Restates a pure-step record over the pipeline's window: its first n
    timed steps, all of them. bench/step keeps only its clean steps when it
    has a few, and on a loaded machine runs until its block budget (20-30
    steps of W2), while the pipeline's median is over its first n steps
    after the warm-up, ungated. Comparing the pipeline's first steps with
    the step's later or quieter ones measured the machine's load and the
    first steps' transients (in W2 the first timed steps are often the
    slowest on both sides) as much as the pipeline. The gated figures stay
    in the record as img_s_median_gated and times_gated."""
    t = [s["t"] for s in rec.get("steps", [])][:n]
    if not t:
        return
    b = rec["batch"]
    rec.update(img_s_median_gated=rec["img_s_median"], times_gated=rec["times"], times=t,
               img_s_median=b / statistics.median(t), img_s_min=b / max(t), img_s_max=b / min(t))


def run_pipeline(a, workload, threads, steps, tag):
    w = WORKLOADS[workload]
    d = os.path.join(a.workdir, f"pipeline-{tag}-{w['short']}-{threads}t")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    db = os.path.join(d, "bench.db")
    cmd = [a.sslrun_bin, "run", os.path.join(HERE, "pipelines", PIPELINES[workload]),
           "-var", f"threads={threads}", "-var", f"steps={steps}", "-var", f"database={db}"]
    if workload == "convnet-cifar":
        cmd += ["-var", f"data_dir={a.cifar_dir}"]
    rc, _, info = run_process(cmd, thread_env(threads), os.path.join(a.workdir, "sslrun.log"), poll=0.2)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {rc}; see {a.workdir}/sslrun.log")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT m.step, m.time FROM metrics m JOIN series s ON s.id = m.series_id "
                       "WHERE s.key = 'train/loss' ORDER BY m.step").fetchall()
    con.close()
    if len(rows) != steps:
        raise RuntimeError(f"{db}: {len(rows)} train/loss rows, want {steps}")
    t = [ms / 1000 for _, ms in rows]
    times = [t[k] - t[k - 1] for k in range(w["warmup"], steps)]
    med = statistics.median(times)
    return dict(side="pipeline", kind="pipeline", workload=workload, method="simsiam", threads=threads, batch=w["batch"],
                steps=steps, times=times, img_s_median=w["batch"] / med, img_s_min=w["batch"] / max(times),
                img_s_max=w["batch"] / min(times), sslrun_children=info["children"],
                mode="subprocess" if info["children"] > 0 else "in-process",
                peak_rss_mb=max(info["tree_rss_kb"], info["maxrss_kb"]) / 1024, process=info, cmd=cmd)


# ----------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------
def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def side_stats(recs):
    if not recs:
        return None
    meds = [r["img_s_median"] for r in recs]
    steps = [r["batch"] / t for r in recs for t in r["times"]]
    return dict(median=statistics.median(meds), min=min(steps), max=max(steps), reps=len(recs),
                rss=max(r["peak_rss_mb"] for r in recs),
                foreign=statistics.median(r.get("mean_foreign", r["process"]["foreign_avg"]) for r in recs),
                clean=sum(r.get("n_clean", 0) for r in recs), nsteps=sum(r.get("n_steps", len(r["times"])) for r in recs))


def step_table(records, threads_list):
    L = ["| workload | method | thr | ours img/s median | min | max | torch img/s median | min | max | **ratio** | pair ratio | "
         "ours GFLOP/s | torch GFLOP/s | ours peak RSS MB | torch peak RSS MB | foreign CPUs ours / torch | clean steps ours / torch |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for wl, w in WORKLOADS.items():
        for m in w["methods"]:
            for n in threads_list:
                ours = [r for r in records if r["side"] == "ours" and r["workload"] == wl and r["method"] == m and r["threads"] == n]
                torch = [r for r in records if r["side"] == "torch" and r["workload"] == wl and r["method"] == m and r["threads"] == n]
                if not ours and not torch:
                    continue
                o, t = side_stats(ours), side_stats(torch)
                fl = step_flops(wl, m, w["batch"])
                ratio = o["median"] / t["median"] if o and t else None
                pairs = [r["img_s_median"] / q["img_s_median"] for r in ours for q in torch if r["pair"] == q["pair"]]
                pr = statistics.median(pairs) if pairs else None
                g = lambda s: fl / (w["batch"] / s["median"]) / 1e9 if s else None
                rows.append(dict(workload=wl, method=m, threads=n, ours=o, torch=t, ratio=ratio, pair_ratio=pr))
                L.append(f"| {w['short']} {wl} | {m} | {n} | {fmt(o and o['median'])} | {fmt(o and o['min'])} | {fmt(o and o['max'])} | "
                         f"{fmt(t and t['median'])} | {fmt(t and t['min'])} | {fmt(t and t['max'])} | **{fmt(ratio, 2)}x** | {fmt(pr, 2)}x | "
                         f"{fmt(g(o))} | {fmt(g(t))} | {fmt(o and o['rss'], 0)} | {fmt(t and t['rss'], 0)} | "
                         f"{fmt(o and o['foreign'], 2)} / {fmt(t and t['foreign'], 2)} | "
                         f"{o['clean'] if o else '-'}/{o['nsteps'] if o else '-'} / {t['clean'] if t else '-'}/{t['nsteps'] if t else '-'} |")
    return L, rows


def pipeline_table(records, threads_list):
    L = ["| workload | thr | sslrun mode (children) | pipeline img/s median | min | max | pure step img/s median | min | max | "
         "**pipeline / step** | within 10% | sslrun peak RSS MB | foreign CPUs pipeline / step |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for wl in PIPELINES:
        for n in threads_list:
            pl = [r for r in records if r["side"] == "pipeline" and r["workload"] == wl and r["threads"] == n]
            st = [r for r in records if r["side"] == "pipeline-step" and r["workload"] == wl and r["threads"] == n]
            if not pl:
                continue
            p, s = side_stats(pl), side_stats(st)
            ratio = p["median"] / s["median"] if s else None
            ok = "-" if ratio is None else ("yes" if ratio >= 0.9 else "**no**")
            mode = f"{pl[0]['mode']} ({max(r['sslrun_children'] for r in pl)})"
            pf = statistics.median(r["process"]["foreign_avg"] for r in pl)
            L.append(f"| {WORKLOADS[wl]['short']} {wl} simsiam | {n} | {mode} | {fmt(p['median'])} | {fmt(p['min'])} | {fmt(p['max'])} | "
                     f"{fmt(s and s['median'])} | {fmt(s and s['min'])} | {fmt(s and s['max'])} | **{fmt(ratio, 2)}** | {ok} | "
                     f"{fmt(p['rss'], 0)} | {fmt(pf, 2)} / {fmt(s and s['foreign'], 2)} |")
    return L


def flops_table(records):
    L = ["| workload | method | batch | GFLOP/step (this script) | GFLOP/step (torch_baseline.py's hook count) |", "|---|---|---|---|---|"]
    for wl, w in WORKLOADS.items():
        for m in w["methods"]:
            if not any(r["workload"] == wl and r["method"] == m for r in records):
                continue
            t = next((r for r in records if r["side"] == "torch" and r["workload"] == wl and r["method"] == m), None)
            counted = f"{t['flops_step'] / 1e9:.2f}" if t else "-"
            L.append(f"| {w['short']} {wl} | {m} | {w['batch']} | {step_flops(wl, m, w['batch']) / 1e9:.2f} | {counted} |")
    return L


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return f"{model}, {os.cpu_count()} vCPUs, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------
def build(a):
    if not a.step_bin:
        a.step_bin = os.path.join(a.workdir, "sslrun-step")
        subprocess.run(["go", "build", "-o", a.step_bin, "./bench/step"], cwd=REPO, check=True)
    if not a.sslrun_bin and a.pipeline:
        a.sslrun_bin = os.path.join(a.workdir, "sslrun")
        subprocess.run(["go", "build", "-o", a.sslrun_bin, "./cmd/sslrun"], cwd=REPO, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head -80 bench/compare.py) for the method.")
    ap.add_argument("--quick", action="store_true",
                    help="test the harness fast: W1 (3 methods) and W2 SimSiam, 1 rep, --iters 3, --gate-timeout 1, --max-block-s 20")
    ap.add_argument("--workloads", help="comma list of W1,W2,W3 (default all; --quick W1,W2)")
    ap.add_argument("--methods", help="comma list filter (default all; --quick: all on W1, simsiam on W2)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, help="repetitions of every ours/torch pair (default 3; --quick 1)")
    ap.add_argument("--iters", type=int, help="timed steps per block (default the reference's: 7, W3 3; --quick 3)")
    ap.add_argument("--gate-timeout", type=float, help="quiet-machine wait, both sides (default 60 as the reference; --quick 1)")
    ap.add_argument("--max-block-s", type=float, help="time budget of a block, both sides (default 150 as the reference, x3 for W3; --quick 20)")
    ap.add_argument("--in-process", action="store_true", help="our step as one core/train.Step instead of plugin subprocesses")
    ap.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the sslrun pipeline rows")
    ap.add_argument("--no-steps", dest="steps", action="store_false", help="skip the ours/torch step rows")
    ap.add_argument("--step-bin", help="prebuilt bench/step binary (default: go build)")
    ap.add_argument("--sslrun-bin", help="prebuilt sslrun binary (default: go build ./cmd/sslrun)")
    ap.add_argument("--torch-script", default=os.path.join(SHARED_BENCH, "torch_baseline.py"))
    ap.add_argument("--workdir", help="scratch directory (default /tmp/sslrun-bench-<time>)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--raw", default=os.path.join(HERE, "RESULTS.jsonl"))
    ap.add_argument("--label", help="heading note (default: 'quick, under load' with --quick)")
    a = ap.parse_args()
    cmdline = "/usr/bin/python3 bench/compare.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])

    if a.quick:
        a.workloads = a.workloads or "W1,W2"
        a.reps = a.reps or 1
        a.iters = a.iters or 3
        a.gate_timeout = 1 if a.gate_timeout is None else a.gate_timeout
        a.max_block_s = a.max_block_s or 20
        a.label = a.label or "quick, under load: tests the harness, not a measurement"
    a.reps = a.reps or 3
    a.gate_timeout = 60 if a.gate_timeout is None else a.gate_timeout
    a.max_block_s = a.max_block_s or 150
    threads_list = [int(t) for t in a.threads.split(",")]
    wls = [SHORT.get(w, w) for w in (a.workloads or "W1,W2,W3").split(",")]
    for w in wls:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w}")
    methods = a.methods.split(",") if a.methods else None
    pairs = []
    for w in wls:
        for m in WORKLOADS[w]["methods"]:
            if methods and m not in methods:
                continue
            if a.quick and not methods and w != "mlp-mnist" and m != "simsiam":
                continue
            pairs.append((w, m))

    a.workdir = a.workdir or "/tmp/sslrun-bench-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(a.workdir, exist_ok=True)
    # torch_baseline.py writes raw/<run-id>.jsonl beside itself.
    tdir = os.path.join(a.workdir, "torch")
    os.makedirs(tdir, exist_ok=True)
    src = a.torch_script
    a.torch_script = os.path.join(tdir, "torch_baseline.py")
    shutil.copyfile(src, a.torch_script)
    with open(src, "rb") as f:
        torch_sha = hashlib.sha256(f.read()).hexdigest()
    if a.pipeline and "convnet-cifar" in wls:
        a.cifar_dir = os.path.join(a.workdir, "cifar-10-batches-bin")
        steps = WORKLOADS["convnet-cifar"]["warmup"] + (a.iters or WORKLOADS["convnet-cifar"]["iters"])
        write_cifar(a.cifar_dir, -(-steps * WORKLOADS["convnet-cifar"]["batch"] // 5))
    build(a)

    start = datetime.datetime.now(datetime.timezone.utc)
    load0 = loadavg()
    print(f"workdir {a.workdir}; load {load0}; {len(pairs)} (workload, method) x threads {threads_list} x {a.reps} reps", flush=True)
    records = []
    raw = open(a.raw, "w")

    def keep(rec):
        records.append(rec)
        raw.write(json.dumps(rec) + "\n")
        raw.flush()
        print(f"  {rec['side']:13s} {rec['workload']:15s} {rec['method']:8s} {rec['threads']}t {rec.get('mode', ''):10s} "
              f"{rec['img_s_median']:8.1f} img/s  rss {rec['peak_rss_mb']:.0f} MB  "
              f"foreign {rec.get('mean_foreign', rec['process']['foreign_avg']):.2f}  load {loadavg()}", flush=True)

    failures = []

    def fail(e):
        failures.append(str(e))
        print(f"  FAILED: {e}", flush=True)

    tag = start.strftime("%Y%m%d%H%M%S")
    for rep in range(a.reps):
        for n in threads_list:
            if a.steps:
                for i, (w, m) in enumerate(pairs):
                    pair = f"{rep}-{n}-{w}-{m}"
                    order = ["ours", "torch"] if (rep + i) % 2 == 0 else ["torch", "ours"]
                    for side in order:
                        try:
                            if side == "ours":
                                rec = run_ours(a, w, m, n, "in-process" if a.in_process else "subprocess")
                            else:
                                rec = run_torch(a, w, m, n, f"{tag}-r{rep}")
                        except RuntimeError as e:
                            fail(e)
                            continue
                        rec["pair"], rec["rep"] = pair, rep
                        keep(rec)
            if a.pipeline:
                for i, w in enumerate(x for x in PIPELINES if x in wls):
                    wd = WORKLOADS[w]
                    steps = wd["warmup"] + (a.iters or wd["iters"])
                    # The pure step runs in the mode the pipeline ran in
                    # (detected from sslrun's child processes), so the
                    # pipeline goes first until that is known; then the
                    # order alternates with the repetition.
                    modes = [r["mode"] for r in records if r["side"] == "pipeline" and r["workload"] == w]
                    for side in (["step", "pipeline"] if modes and rep % 2 == 1 else ["pipeline", "step"]):
                        try:
                            if side == "pipeline":
                                rec = run_pipeline(a, w, n, steps, f"r{rep}")
                            else:
                                modes = [r["mode"] for r in records if r["side"] == "pipeline" and r["workload"] == w]
                                rec = run_ours(a, w, "simsiam", n, modes[-1] if modes else "in-process")
                                rec["side"] = "pipeline-step"
                                same_window(rec, steps - wd["warmup"])
                        except RuntimeError as e:
                            fail(e)
                            continue
                        rec["rep"] = rep
                        keep(rec)
    raw.close()
    end = datetime.datetime.now(datetime.timezone.utc)
    load1 = loadavg()

    torch_ver = next((r.get("torch") for r in records if r["side"] == "torch"), None)
    blas = next((r.get("blas_path") for r in records if r["side"] == "torch"), None)
    gover = next((r.get("go_version") for r in records if r.get("go_version")), None)
    out = []
    title = "# sslrun vs PyTorch: training-step throughput, side by side"
    out.append(title + (f" ({a.label})" if a.label else "") + "\n")
    if a.label:
        out.append(f"> **{a.label}.** Regenerate on a quiet machine with the command below before quoting any number.\n")
    out.append(f"* Command: `{cmdline}` (from the repository root; {a.reps} rep(s); scratch files in `{a.workdir}`)")
    out.append(f"* Date: {start.strftime('%Y-%m-%d %H:%M')} - {end.strftime('%H:%M')} UTC")
    out.append(f"* Machine: {machine()}")
    out.append(f"* Load average (1/5/15 min) at start: {load0}; at end: {load1}")
    out.append(f"* Ours: {gover}, `bench/step` ({'one core/train.Step in process' if a.in_process else 'encoder + loss as go-plugin subprocesses'}); "
               f"PyTorch {torch_ver}, BLAS pinned via LD_LIBRARY_PATH=`{blas}`; torch_baseline.py sha256 {torch_sha[:12]}")
    out.append(f"* Protocol, both sides: reference warm-up, {'--iters ' + str(a.iters) if a.iters else 'the reference timed steps (7; W3 3)'}, "
               f"--gate-timeout {a.gate_timeout}, --max-block-s {a.max_block_s}; a fresh process per block; ours and torch alternate "
               f"(A B / B A). Raw records: `{os.path.relpath(a.raw, REPO)}`.\n")
    if a.steps:
        out.append("## Training step (images/s = batch / step time; each image is 2 views)\n")
        L, rows = step_table(records, threads_list)
        out += L
        out.append("")
        out.append("ratio = ours median / torch median (> 1: ours faster); pair ratio = median over reps of the ratio within each "
                   "back-to-back pair. GFLOP/s counts GEMM/conv work only (torch_baseline.py's definition). Peak RSS: ours = sum of "
                   "VmHWM over host + plugin processes (shared arena pages counted in each), torch = its benchmark process. "
                   "foreign = CPUs used by other processes during the timed steps (0 = quiet; statistics use clean steps "
                   "(foreign <= 0.12) when at least min(3, iters) were clean, else all steps).\n")
        out += flops_table(records)
        out.append("")
    if a.pipeline:
        out.append("## Full pipeline: `sslrun run` (data loading + augmentation + step + run-database logging) vs the pure step\n")
        out += pipeline_table(records, threads_list)
        out.append("")
        out.append("Pipelines: `bench/pipelines/w1_mnist_simsiam.hcl` (real MNIST from the GoMNIST module, crop + normalize views, "
                   "batch 512) and `bench/pipelines/w2_cifar_simsiam.hcl` (CIFAR-10 binary files of random pixels written by "
                   "compare.py, SimSiam's CIFAR views: crop, flip, colour jitter, grayscale, normalize; batch 256); SimSiam, SGD "
                   "lr 0.05 constant, momentum 0.9, wd 5e-4, threads = GOMAXPROCS = run.threads. Pipeline images/s per step "
                   "= batch / (time of step k's train/loss row - step k-1's) in the run database, warm-up steps excluded; "
                   "pure step = bench/step in the mode sslrun ran in (in-process when sslrun started no child process). sslrun peak RSS = "
                   "the larger of its largest process's ru_maxrss and the tree's summed VmRSS sampled every 0.2 s. "
                   "Target: pipeline / step >= 0.90.\n")
    if failures:
        out.append("## Failed invocations\n")
        out += [f"* {f}" for f in failures]
        out.append("")
    text = "\n".join(out)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    print(f"\nwrote {a.out} and {a.raw}")


if __name__ == "__main__":
    main()
