"`dtir select` writes a selection that `select_source` reads back; every choice comes from the validation split."
import json
from dataclasses import replace
from cli_helpers import run_main, one_line_error

SMALL = ['--set', 'pretrain_steps=4', '--set', 'finetune_steps=4', '--set', 'select_steps=3', '--set', 'match_images=2',
         '--set', 'importance_batches=1']


def test_select_writes_a_file_that_select_source_reads(tmp_path, capsys):
    out = tmp_path / 'sel.json'
    args = ['select', '--preset', 'smoke', *SMALL, '--tasks', 'rain', '--artifacts', tmp_path / 'art', '--out', out]
    rc, err = run_main(args, capsys)
    assert rc == 0, err
    rec = json.loads(out.read_text())
    full = rec['tasks']['rain']['full']
    grid = full['grid']
    assert rec['grid'] == 'smoke' and len(full['trials']) == sum(len(v) for v in grid.values())
    # every axis starts at the preset's value, which is the current choice and is reused: one new run per other value
    assert full['n_runs'] == 1 + sum(len(v) - 1 for v in grid.values())
    assert full['val_psnr'] == max(t['val_psnr'] for t in full['trials'] if t['axis'] == list(rec['tasks']['rain']['full']['grid'])[-1])
    assert len(rec['tasks']['rain']['plain']['trials']) == full['n_runs']            # the same budget for the baseline
    from dtir.config import load_preset
    from dtir.select import selections
    cfg = load_preset('smoke', [a for a in SMALL if a != '--set'] + [f'select_source={out}'])
    assert selections(cfg, tmp_path / 'art', ['rain'], 'smoke')['rain']['full']['choice'] == full['choice']
    # a second run does not replace the file unless asked
    before = out.read_bytes()
    rc, err = run_main(args, capsys)
    assert 'pass --overwrite' in one_line_error(rc, err, 'select') and out.read_bytes() == before
