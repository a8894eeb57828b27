"Fine-tuning leaves its parent checkpoint alone and refuses parents and prompts that cannot be right (issue 16, items 7 and 10)."
import json, shutil
import pytest
from cli_helpers import run_main, one_line_error, tree_digest, tiny_pretrained

SMOKE = ['--preset', 'smoke', '--set', 'finetune_steps=2', '--set', 'importance_batches=1']


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    return tiny_pretrained(tmp_path_factory.mktemp('pre'))


def test_finetune_writes_nothing_beside_the_checkpoint(pretrained, tmp_path, capsys):
    "A read-only --ckpt works: the importance is computed in memory, never cached beside the parent."
    pre = tmp_path / 'pre'; shutil.copytree(pretrained, pre)
    before = tree_digest(pre)
    rc, err = run_main(['finetune', *SMOKE, '--task', 'rain', '--ckpt', pre, '--t-star', '3', '--out', tmp_path / 'ft'], capsys)
    assert rc == 0, err
    assert tree_digest(pre) == before
    assert 0 <= json.loads((tmp_path / 'ft' / 'stats.json').read_text())['frac_at_theta0'] <= 1


def test_finetuned_checkpoint_refused_as_parent(pretrained, tmp_path, capsys):
    rc, err = run_main(['finetune', *SMOKE, '--task', 'rain', '--ckpt', pretrained, '--t-star', '3', '--out', tmp_path / 'ft'], capsys)
    assert rc == 0, err
    rc, err = run_main(['finetune', *SMOKE, '--task', 'rain', '--ckpt', tmp_path / 'ft' / 'model', '--t-star', '3', '--out', tmp_path / 'ft2'], capsys)
    line = one_line_error(rc, err, 'finetune')
    assert "'finetune' checkpoint, not a pre-trained one" in line and str(tmp_path / 'ft' / 'model') in line
    assert not (tmp_path / 'ft2').exists()


def test_non_integer_prompt_is_named():
    from dtir.finetune import model_prompt
    with pytest.raises(ValueError, match=r"t\* of task 'rain' is '8x', not an integer"):
        model_prompt(dict(model=dict(time=True), t_star={'rain': '8x'}), 'rain')


def test_non_integer_t_star_in_match_json_names_the_file(tmp_path):
    from dtir.match import load_tstar
    f = tmp_path / 'match.json'
    f.write_text(json.dumps({'t_star': {'rain': 'eight'}}))
    with pytest.raises(ValueError, match='match.json'):
        load_tstar(f, 'rain')
    f.write_text('{not json')
    with pytest.raises(ValueError, match='match.json'):
        load_tstar(f, 'rain')
