"`dtir reproduce`'s progress: a training run reports its step to the file named by $DTIR_PROGRESS_FILE, and the kernel's noise stays out."
import json, subprocess, sys

from dtir.runner import PROGRESS_FILE
from cli_helpers import tiny_pretrained, ENV, REPO


def test_training_reports_its_last_step(tmp_path, monkeypatch):
    f = tmp_path / 'progress.json'
    monkeypatch.setenv(PROGRESS_FILE, str(f))
    model = tiny_pretrained(tmp_path)
    r = json.loads(f.read_text())
    assert (r['kind'], r['step'], r['total']) == ('pretrain', 2, 2), r
    assert r['run'] == str(model.parent)


def test_no_progress_file_without_reproduce(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_FILE, raising=False)
    tiny_pretrained(tmp_path)
    assert not list(tmp_path.rglob('progress.json'))


def test_reproduce_prints_no_kernel_warning(tmp_path):
    "The data notebook through `dtir reproduce`: its output has no ipykernel transport warning and the progress file is gone."
    out = tmp_path / 'out'
    p = subprocess.run([sys.executable, '-m', 'dtir.cli', 'reproduce', '--preset', 'smoke', '--only', 'data', '--out', str(out)],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 'IPKernelApp' not in p.stdout + p.stderr, (p.stdout + p.stderr)[-2000:]
    assert (out / 'results.json').exists() and not (out / '.progress.json').exists()
