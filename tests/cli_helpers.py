"Helpers shared by the tests that drive the `dtir` command (as a subprocess or in-process)."
import os, sys
from pathlib import Path

from dtir.cli import main as dtir_main

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')


def dtir_cmd() -> list[str]:
    "The installed `dtir` console script (or an equivalent `python -c` call)."
    exe = Path(sys.executable).with_name('dtir')
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from dtir.cli import main; sys.exit(main())']


def run_main(argv, capsys) -> tuple[int, str]:
    "Call `dtir.cli.main` in-process as the console script does (`sys.exit(main())`); return (exit code, stderr)."
    capsys.readouterr()
    try: rc = dtir_main([str(a) for a in argv])
    except SystemExit as e:   # what the interpreter does with it: an int is the code, anything else is printed, code 1
        if e.code is None or isinstance(e.code, int): rc = e.code or 0
        else: print(e.code, file=sys.stderr); rc = 1
    return rc, capsys.readouterr().err


def one_line_error(rc: int, err: str, cmd: str) -> str:
    "The single stderr line of a user error (exit 2, no traceback)."
    assert rc == 2, f"exit code {rc}, expected 2; stderr:\n{err}"
    assert 'Traceback' not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert lines[0].startswith(f'dtir {cmd}: error: '), lines[0]
    return lines[0]


def unwritable_dir(tmp_path: Path) -> Path:
    "A folder in which nothing can be created, also by root (sysfs refuses mkdir); skips the test where there is none."
    import pytest
    if os.geteuid() != 0:
        d = tmp_path / 'readonly'; d.mkdir(exist_ok=True); d.chmod(0o500)
        return d
    d = Path('/sys')
    probe = d / 'dtir-probe'
    try: probe.mkdir()
    except OSError: return d
    probe.rmdir(); pytest.skip('no unwritable folder on this machine (running as root, /sys writable)')


def tree_digest(folder: Path) -> dict:
    "Every file below `folder` with the SHA-256 of its bytes (what a refused command must leave as it was)."
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob('*')) if p.is_file()}


def tiny_pretrained(folder: Path) -> Path:
    "A tiny pre-trained smoke checkpoint (the model/ folder of a 2-step run in `folder`, no match.json)."
    from dtir.config import load_preset
    from dtir.pretrain import pretrain
    return pretrain(load_preset('smoke', ['pretrain_steps=2', 'device=cpu']), Path(folder) / 'run', progress=False)


def nudged_model(folder: Path) -> Path:
    "A smoke-size fine-tuned checkpoint in `folder`/model (prompt 8 for rain), weights nudged so it is not the identity."
    import torch
    from dtir.checkpoint import save_checkpoint, state_dict_cpu
    from dtir.config import load_preset, preset_dict
    from dtir.pretrain import new_model, schedule_meta
    cfg = load_preset('smoke')
    net, spec = new_model(cfg, time=True)
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.01)
    meta = dict(model=spec, preset=preset_dict(cfg), schedule=schedule_meta(cfg), t_star={'rain': 8})
    return save_checkpoint(Path(folder) / 'model', state_dict_cpu(net), meta)
