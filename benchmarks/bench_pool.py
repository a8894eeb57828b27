"""Independent training runs one at a time on every core, or side by side in a `dtir.launch.JobPool`: wall time and ratio.

Trains the same `--jobs` plain runs (`dtir.finetune.train_plain` on `--task`, seeds 0, 1, ..., `--steps` steps each) at
a preset's size twice per repeat: (a) one after the other in this process (torch's default threads: every core), and
(b) queued in `JobPool(--workers)` (child processes of cores/workers threads each; their start-up, about 2-3 s per job,
is counted). The two modes alternate per repeat so that drift in machine load hits both. The ratio is (a) / (b): above 1,
the pool trains the same steps sooner. The runs of both modes are the same runs (same seeds and steps).
Usage: python benchmarks/bench_pool.py [--preset default] [--jobs 4] [--steps 150] [--workers 2] [--repeats 2] [--task rain]
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path


def one_mode(cfg, pooled: bool, jobs: int, steps: int, workers: int, task: str) -> float:
    "Wall seconds to train `jobs` plain runs in this process or in a pool."
    from dtir.launch import run_job, JobPool
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with JobPool(workers if pooled else 1):
            for s in range(jobs):
                run_job('train_plain', cfg, task, out=Path(d) / f'run{s}', steps=steps, resume=False, progress=False, seed=s)
        return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--preset', default='default'); ap.add_argument('--jobs', type=int, default=4)
    ap.add_argument('--steps', type=int, default=150); ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=2); ap.add_argument('--task', default='rain')
    a = ap.parse_args(argv)
    import torch
    from dtir.config import load_preset
    cfg = load_preset(a.preset, ['device=cpu'])
    seq, pool = [], []
    for _ in range(a.repeats):
        seq.append(one_mode(cfg, False, a.jobs, a.steps, a.workers, a.task))
        pool.append(one_mode(cfg, True, a.jobs, a.steps, a.workers, a.task))
    n = a.jobs * a.steps
    ms, mp = statistics.median(seq), statistics.median(pool)
    print(f"{a.preset}: {a.jobs} plain runs x {a.steps} steps ({cfg.batch} x {cfg.patch} px, width {cfg.width}) on "
          f"{os.cpu_count()} cores; median of {a.repeats} repeats, modes alternated")
    print(f"  {'mode':<34}{'wall s':>8}{'steps/s':>9}{'vs one at a time':>18}")
    print(f"  {'one at a time, ' + str(torch.get_num_threads()) + ' threads':<34}{ms:>8.1f}{n / ms:>9.2f}{1.0:>17.2f}x")
    print(f"  {f'JobPool({a.workers}), ' + str(max(1, (os.cpu_count() or 1) // a.workers)) + ' thread(s) each':<34}"
          f"{mp:>8.1f}{n / mp:>9.2f}{ms / mp:>17.2f}x")
    print(f"  every repeat (s): one at a time {', '.join(f'{v:.1f}' for v in seq)}; pool {', '.join(f'{v:.1f}' for v in pool)}")


if __name__ == '__main__':
    sys.exit(main())
