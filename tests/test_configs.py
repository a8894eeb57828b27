"""configs/: the multi-node Accelerate config loads, and the Slurm templates build the right `accelerate launch` commands
from Slurm's environment (run with stand-ins for srun, scontrol and dtir: there is no cluster here)."""
import os, shlex, subprocess
from pathlib import Path

import pytest
from cli_helpers import REPO


def test_multi_node_config_loads():
    from accelerate.commands.config.config_args import load_config_from_file
    c = load_config_from_file(str(REPO / 'configs/accelerate/multi_node.yaml'))
    assert (c.distributed_type, c.num_machines, c.main_process_port, c.rdzv_backend) == ('MULTI_GPU', 2, 29500, 'static')


def fake_cluster(tmp_path: Path) -> dict:
    b = tmp_path / 'bin'; b.mkdir()
    (b / 'scontrol').write_text('#!/bin/sh\nprintf "gpu-a17\\ngpu-a18\\n"\n')
    # srun: run the task once per node (SLURM_NODEID 0 and 1), as Slurm would on each node
    (b / 'srun').write_text('#!/bin/bash\nshift\nfor n in 0 1; do SLURM_NODEID=$n "$@"; done\n')
    (b / 'fake').write_text(f'#!/bin/bash\nfor a in "$@"; do printf "%s\\0" "$a"; done >> {tmp_path}/calls; printf "\\n" >> {tmp_path}/calls\n')
    for f in b.iterdir(): f.chmod(0o755)
    return dict(os.environ, PATH=f'{b}:{os.environ["PATH"]}', SLURM_JOB_NODELIST='gpu-a[17-18]', SLURM_NNODES='2',
                SLURM_SUBMIT_DIR=str(REPO), GPUS_PER_NODE='4', DTIR=str(b / 'fake'), ACCELERATE=str(b / 'fake'))


def calls(tmp_path):
    return [l.split('\0')[:-1] for l in (tmp_path / 'calls').read_text().splitlines() if l]


def test_reproduce_sbatch_launches_one_rank_per_node(tmp_path):
    r = subprocess.run(['bash', 'configs/slurm/reproduce.sbatch', '--all'], cwd=REPO, env=fake_cluster(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cs = calls(tmp_path)
    assert len(cs) == 2
    for node, c in enumerate(cs):
        assert c[:3] == ['reproduce', '--preset', 'paper'] and c[3] == '--launch' and c[5:] == ['--all'], c
        launch = shlex.split(c[4])
        assert launch[:4] == ['accelerate', 'launch', '--config_file', 'configs/accelerate/multi_node.yaml']
        opts = dict(zip(launch[4::2], launch[5::2]))
        assert opts == {'--num_machines': '2', '--num_processes': '8', '--machine_rank': str(node),
                        '--main_process_ip': 'gpu-a17', '--main_process_port': '29500'}, opts


def test_train_sbatch_passes_the_training_command(tmp_path):
    r = subprocess.run(['bash', 'configs/slurm/train.sbatch', 'pretrain', '--preset', 'paper', '--out', 'outputs/paper/pre'],
                       cwd=REPO, env=fake_cluster(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cs = calls(tmp_path)
    assert [c[c.index('--machine_rank') + 1] for c in cs] == ['0', '1']
    assert all(c[-7:] == ['-m', 'dtir.cli', 'pretrain', '--preset', 'paper', '--out', 'outputs/paper/pre'] for c in cs), cs
