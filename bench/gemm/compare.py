#!/usr/bin/python3
"""Side-by-side SGEMM benchmark: core/gemm.Sgemm (Go) vs PyTorch torch.mm.

Run from the repository root with Debian's interpreter:

    /usr/bin/python3 bench/gemm/compare.py                   # all shapes, 1 and 2 threads
    /usr/bin/python3 bench/gemm/compare.py --shapes sq1024,w1 --reps 7 --burst 0.3

PyTorch runs exactly as in ../shared/bench/torch_baseline.py: the BLAS
behind Debian's torch is pinned to Debian's OpenBLAS 0.3.21 OpenMP build,
extracted under /tmp/blas and selected through LD_LIBRARY_PATH (this script
imports torch_baseline's BLAS_CHOICES and ensure_blas, so the pinning cannot
drift), with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and torch.set_num_threads
set to the thread count in one child process per thread count. The Go side
is bench/gemm (a long-lived process that times Sgemm per request).

For every (shape, threads) the two are measured in alternation, A B A B ...,
each measurement a burst of identical calls lasting about --burst seconds
(torch.mm writes into a preallocated out= tensor; Go writes into a
preallocated C, beta=0). The table gives the median GFLOP/s of each side,
the ratio of medians, and the spread (max/min of the bursts) as a noise
indicator; then the same per CPU-second of each process (user+system time
of all its threads: on a machine shared with other jobs this discounts the
time a side was descheduled, though not the cache pollution; busy-waiting
threads count against their side); and the other processes' CPU use during
the row (from /proc/stat), because the machine is shared.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The reference benchmark lives in the shared folder beside the repository
# (../shared/bench); SSLRUN_SHARED_BENCH points elsewhere.
SHARED_BENCH = os.environ.get("SSLRUN_SHARED_BENCH", os.path.join(REPO, "..", "shared", "bench"))


def shapes():
    """(name, transA, transB, m, n, k): the same table as core/gemm/bench_test.go."""
    s = [(f"sq{n}", False, False, n, n, n) for n in (256, 512, 1024, 2048)]
    b1 = 512
    for inp, out in ((784, 1024), (1024, 1024), (1024, 512), (512, 512), (512, 128), (128, 512)):
        s += [(f"w1fwd_{inp}x{out}", False, True, b1, out, inp),      # y = x W^T
              (f"w1wgrad_{inp}x{out}", True, False, out, inp, b1),    # dW = dY^T x
              (f"w1dgrad_{inp}x{out}", False, False, b1, inp, out)]   # dX = dY W
    b2 = 256
    for i, (cin, cout, hw) in enumerate(((3, 64, 32), (64, 128, 16), (128, 256, 8), (256, 512, 4))):
        cols = b2 * hw * hw  # batched im2col: col is [cin*9, B*Ho*Wo]
        s += [(f"w2fwd_conv{i+1}", False, False, cout, cols, cin * 9),    # Y = W col
              (f"w2wgrad_conv{i+1}", False, True, cout, cin * 9, cols)]   # dW = dY col^T
        if i > 0:
            s.append((f"w2dgrad_conv{i+1}", True, False, cin * 9, cols, cout))  # dcol = W^T dY
    b3 = 128  # W3: projector/predictor layers, and each stage's 3x3 conv as batched im2col
    for inp, out in ((512, 2048), (2048, 2048), (2048, 512)):
        s += [(f"w3fwd_{inp}x{out}", False, True, b3, out, inp),
              (f"w3wgrad_{inp}x{out}", True, False, out, inp, b3),
              (f"w3dgrad_{inp}x{out}", False, False, b3, inp, out)]
    for i, (c, hw) in enumerate(((64, 32), (128, 16), (256, 8), (512, 4))):
        s.append((f"w3fwd_stage{i+1}", False, False, c, b3 * hw * hw, c * 9))
    # The conv GEMMs as core/kernel actually runs them: im2col over a group
    # of images at a time (Workspace.group: 1M-float budget, >= 1024
    # columns), so N is group*Ho*Wo rather than the whole batch.
    for name, cin, cout, howo, group in (("w2g_conv1", 3, 64, 1024, 37), ("w2g_conv2", 64, 128, 256, 7),
                                         ("w2g_conv3", 128, 256, 64, 16), ("w2g_conv4", 256, 512, 16, 64),
                                         ("w3g_stage1", 64, 64, 1024, 1), ("w3g_stage2", 128, 128, 256, 4),
                                         ("w3g_stage3", 256, 256, 64, 16), ("w3g_stage4", 512, 512, 16, 64)):
        cols = group * howo
        s += [(f"{name}_fwd", False, False, cout, cols, cin * 9),
              (f"{name}_wgrad", False, True, cout, cin * 9, cols)]
        if name.startswith("w2g") and cin > 3:
            s.append((f"{name}_dgrad", True, False, cin * 9, cols, cout))
    return s


# ----------------------------------------------------------------------------
# torch child: same line protocol as bench/gemm/main.go
# ----------------------------------------------------------------------------
def torch_child(threads):
    import torch
    torch.set_num_threads(threads)
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if any(k in p for k in ("blas", "gomp")):
                libs.add(p)
    print("ready", torch.__version__, torch.get_num_threads(), ",".join(sorted(libs)), flush=True)
    cur = None
    for line in sys.stdin:
        ta, tb, m, n, k, _, secs = line.split()
        ta, tb, m, n, k, secs = ta == "1", tb == "1", int(m), int(n), int(k), float(secs)
        if cur is None or cur[0] != (ta, tb, m, n, k):
            g = torch.Generator().manual_seed(1)
            a = torch.randn(*((k, m) if ta else (m, k)), generator=g)
            b = torch.randn(*((n, k) if tb else (k, n)), generator=g)
            oa, ob = (a.t() if ta else a), (b.t() if tb else b)
            c = torch.empty(m, n)
            cur = ((ta, tb, m, n, k), oa, ob, c)
        _, oa, ob, c = cur
        t0 = time.perf_counter()
        torch.mm(oa, ob, out=c)
        one = time.perf_counter() - t0
        reps = max(1, int(secs / max(one, 1e-7)))
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(oa, ob, out=c)
        wall = (time.perf_counter() - t0) / reps
        print(f"ok {wall:.9g} {reps} {(time.process_time() - c0) / reps:.9g}", flush=True)


# ----------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------
class Server:
    def __init__(self, cmd, env):
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)

    def ask(self, req):
        self.p.stdin.write(req + "\n")
        self.p.stdin.flush()
        ans = self.p.stdout.readline().split()
        if not ans or ans[0] != "ok":
            raise RuntimeError(f"{self.p.args}: {req!r} -> {ans!r}")
        return float(ans[1]), float(ans[3])  # wall, CPU seconds per call

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def own_ticks(pids):
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            fl = s[s.rindex(")") + 2:].split()
            t += int(fl[11]) + int(fl[12])
        except OSError:
            pass
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="", help="comma-separated name prefixes (default: all)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5, help="A/B pairs per (shape, threads)")
    ap.add_argument("--burst", type=float, default=0.2, help="seconds per measurement")
    ap.add_argument("--blas", default="openblas-openmp")
    ap.add_argument("--gate", type=float, default=0.0,
                    help="before each row and after each noisy pair, wait up to this many seconds for the machine "
                         "to be quiet (other processes < 0.15 CPU), as torch_baseline.py does; noisy pairs "
                         "(other processes > 0.25 CPU during the pair) are then dropped if >= 3 clean ones remain")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        torch_child(args.child)
        return

    sys.path.insert(0, SHARED_BENCH)
    import torch_baseline  # pinning logic of the reference numbers
    dirs = torch_baseline.ensure_blas(args.blas)
    env = dict(os.environ)
    if dirs:
        env["LD_LIBRARY_PATH"] = ":".join(dirs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))

    gobin = "/tmp/sslrun-gemm-bench"
    subprocess.run(["go", "build", "-o", gobin, "./bench/gemm"], cwd=REPO, check=True)
    threads = [int(t) for t in args.threads.split(",")]
    torch_srv = {}
    for t in threads:
        e = dict(env, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
        s = Server([sys.executable, os.path.abspath(__file__), "--child", str(t)], e)
        print(f"# torch child threads={t}: {s.p.stdout.readline().strip()}", flush=True)
        torch_srv[t] = s
    go_srv = Server([gobin], dict(os.environ))
    pids = [go_srv.p.pid, os.getpid()] + [s.p.pid for s in torch_srv.values()]
    clk = os.sysconf("SC_CLK_TCK")

    sel = [s for s in shapes() if not args.shapes or any(s[0].startswith(p) for p in args.shapes.split(","))]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} reps={args.reps} burst={args.burst}s blas={args.blas} "
          f"LD_LIBRARY_PATH={env.get('LD_LIBRARY_PATH', '')}", flush=True)
    hdr = (f"| {'shape':20s} | tA tB | {'M x N x K':18s} | thr | ours GFLOP/s | torch GFLOP/s | ratio | spread ours/torch "
           f"| ours GFLOP/cpu-s | torch GFLOP/cpu-s | cpu ratio | foreign CPU |")
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|", flush=True)
    ratios, cratios = {}, {}
    for name, ta, tb, m, n, k in sel:
        flops = 2.0 * m * n * k
        for t in threads:
            req = f"{int(ta)} {int(tb)} {m} {n} {k} {t} {args.burst}"
            go_srv.ask(f"{int(ta)} {int(tb)} {m} {n} {k} {t} 0.01")  # warm both sides
            torch_srv[t].ask(f"{int(ta)} {int(tb)} {m} {n} {k} {t} 0.01")
            pairs = []  # (foreign CPU, ours, torch, ours per cpu-s, torch per cpu-s)
            need_gate = args.gate > 0
            for r in range(3 * args.reps if args.gate > 0 else args.reps):
                if need_gate:
                    torch_baseline.quiet_gate(args.gate, threshold=0.15, window=0.3)
                b0, o0, w0 = busy_ticks(), own_ticks(pids), time.perf_counter()
                order = [(go_srv, 1), (torch_srv[t], 2)]
                if r % 2:
                    order.reverse()  # A B B A A B ...: neither side always goes first
                rec = [0.0] * 5
                for srv, i in order:
                    wall, cpu = srv.ask(req)
                    rec[i] = flops / wall / 1e9
                    rec[i + 2] = flops / max(cpu, 1e-9) / 1e9
                rec[0] = max(0, (busy_ticks() - b0) - (own_ticks(pids) - o0)) / clk / (time.perf_counter() - w0)
                pairs.append(rec)
                need_gate = args.gate > 0 and rec[0] > 0.25
                if len([p for p in pairs if p[0] <= 0.25 or args.gate <= 0]) >= args.reps:
                    break
            clean = [p for p in pairs if p[0] <= 0.25]
            sel = clean if args.gate > 0 and len(clean) >= 3 else pairs
            ours, theirs = [p[1] for p in sel], [p[2] for p in sel]
            cours, ctheirs = [p[3] for p in sel], [p[4] for p in sel]
            foreign = statistics.mean(p[0] for p in sel)
            mo, mt = statistics.median(ours), statistics.median(theirs)
            co, ct = statistics.median(cours), statistics.median(ctheirs)
            ratios[(name, t)], cratios[(name, t)] = mo / mt, co / ct
            print(f"| {name:20s} | {'T' if ta else 'N'}  {'T' if tb else 'N'}  | {f'{m}x{n}x{k}':18s} | {t:3d} | {mo:12.1f} | {mt:13.1f} | "
                  f"{mo / mt:5.2f} | {max(ours) / min(ours):5.2f} / {max(theirs) / min(theirs):5.2f}   | "
                  f"{co:16.1f} | {ct:17.1f} | {co / ct:9.2f} | {foreign:11.2f} |"
                  + (f" {len(sel)}/{len(pairs)} pairs" if args.gate > 0 else ""), flush=True)
    for t in threads:
        for label, rd in (("wall-clock", ratios), ("per CPU-second", cratios)):
            rs = [v for (nm, tt), v in rd.items() if tt == t]
            if rs:
                print(f"# threads={t}: {label} ratio ours/torch, geometric mean over {len(rs)} shapes = "
                      f"{statistics.geometric_mean(rs):.2f}, min {min(rs):.2f}", flush=True)
    go_srv.close()
    for s in torch_srv.values():
        s.close()


if __name__ == "__main__":
    main()
