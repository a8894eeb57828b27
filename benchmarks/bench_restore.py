"""Time and peak memory of `dtir restore` on large images on CPU: tiled (256/32) against untiled.

Each case runs in a fresh Python process (so one case's peak cannot hide another's) that builds the model, warms it up
on a small image, allocates a random image of the given size and restores it once with `dtir.restore.restore_tensor`.
It reports the restore time and, from /proc/self/status, the process's RSS before the image (Python, torch, the model),
its peak RSS (VmHWM; reset after the warm-up when /proc/self/clear_refs allows it) and, for comparison, the nominal size
of the image-sized buffers alone (input + output float32, + the HxW weight buffer when tiled). File reading and writing
are not included. Without --ckpt the model is a freshly initialised default-preset network: time and memory do not depend
on the weights. Run it on an idle machine: torch's OpenMP threads slow down many times over when another job holds a
core (2 threads beside a busy process: 20x on a 2-core machine); the load average is printed first.

Measured on the project's 2-core CPU, idle, 2 threads (fresh default-preset model; a trained one gave the same):
      image    tiling   time s  RSS before MB  peak RSS MB  peak-before MB  buffers MB
  1024x1024     256/32      1.1            247          344              96          28
  1024x1024    untiled      2.1            249          842             594          24
  4000x3000     256/32     15.2            247          632             385         320

Usage: python benchmarks/bench_restore.py [--ckpt MODEL] [--threads 2] [--cases 1024x1024:256 1024x1024:0 4000x3000:256]
       (a case is HxW:TILE, TILE 0 = untiled; --overlap 32)
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path


def _status_mb(key: str) -> float:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) / 1024
    return float('nan')


def _reset_peak() -> bool:
    try:
        Path('/proc/self/clear_refs').write_text('5')   # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def child(H: int, W: int, tile: int, overlap: int, ckpt: str | None, threads: int) -> dict:
    "One case, run in this (fresh) process."
    import torch
    torch.set_num_threads(threads)
    from dtir.restore import restore_tensor
    if ckpt:
        from dtir.pretrain import load_model
        from dtir.finetune import model_prompt
        net, meta = load_model(ckpt)
        t = model_prompt(meta) if meta['model']['time'] else None
    else:
        from dtir.config import load_preset
        from dtir.pretrain import new_model
        net, _ = new_model(load_preset('default'), time=True)
        t = 10
    restore_tensor(net, torch.rand(1, 3, 64, 64), t, tile=0)   # warm-up: lazy allocations, thread pool
    base = _status_mb('VmRSS')
    reset = _reset_peak()
    y = torch.rand(1, 3, H, W)
    t0 = time.perf_counter()
    restore_tensor(net, y, t, tile=tile, overlap=overlap)
    dt = time.perf_counter() - t0
    buffers = (3 + 3 + (1 if tile and (H > tile or W > tile) else 0)) * H * W * 4 / 2**20
    return dict(H=H, W=W, tile=tile, overlap=overlap, seconds=dt, base_mb=base, peak_mb=_status_mb('VmHWM'),
                buffers_mb=buffers, peak_reset=reset, threads=torch.get_num_threads())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ckpt', default=None, help='trained model folder (default: a fresh default-preset network)')
    ap.add_argument('--cases', nargs='+', default=['1024x1024:256', '1024x1024:0', '4000x3000:256'], metavar='HxW:TILE')
    ap.add_argument('--overlap', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        (hw, tile) = a.child.split(':'); H, W = map(int, hw.split('x'))
        print(json.dumps(child(H, W, int(tile), a.overlap, a.ckpt, a.threads)))
        return
    what = f'model {a.ckpt}' if a.ckpt else 'a freshly initialised default-preset model (time and memory do not depend on the weights)'
    print(f'dtir restore on CPU, {a.threads} threads, {what}; one fresh process per case')
    print(f'load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other jobs slow multi-threaded runs down a lot)')
    print(f"{'image':>11} {'tiling':>9} {'time s':>8} {'RSS before MB':>14} {'peak RSS MB':>12} {'peak-before MB':>15} {'buffers MB':>11}")
    for case in a.cases:
        cmd = [sys.executable, __file__, '--child', case, '--overlap', str(a.overlap), '--threads', str(a.threads)]
        if a.ckpt: cmd += ['--ckpt', a.ckpt]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(f'{case}: failed (exit {r.returncode})\n{r.stderr[-2000:]}'); continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        tiling = f"{d['tile']}/{d['overlap']}" if d['tile'] else 'untiled'
        print(f"{d['H']:>5}x{d['W']:<5} {tiling:>9} {d['seconds']:>8.1f} {d['base_mb']:>14.0f} {d['peak_mb']:>12.0f} "
              f"{d['peak_mb'] - d['base_mb']:>15.0f} {d['buffers_mb']:>11.0f}" + ('' if d['peak_reset'] else '  (peak not reset)'))
        sys.stdout.flush()
    print('buffers: input + output (+ HxW weights when tiled), float32; peak-before: what the image and the restore added.')


if __name__ == '__main__':
    main()
