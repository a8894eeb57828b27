"""`data/datasets.toml` and `dtir data list/fetch/verify`: fetching from a local HTTP server on 127.0.0.1 (per file and as an
archive, a corrupted file, interrupted downloads), and `verify` on every set of ../shared/data."""
import hashlib, io, os, tarfile, threading, zipfile
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

import pytest

from dtir.data.registry import load_registry, fetch, verify, DataError, data_status, registry_path
from cli_helpers import REPO, run_main, one_line_error

SHARED = Path(os.environ.get('DTIR_SHARED_DATA', REPO.parent / 'shared' / 'data'))
FILES = {f'input/{i}.png': f'rainy-{i}'.encode() * 50 for i in range(1, 4)} | {f'target/{i}.png': f'clean-{i}'.encode() * 50 for i in range(1, 4)}


class Server:
    "A local HTTP server: `content[path] = bytes`; `cut[path] = k` cuts the next k responses of `path` off half-way."
    def __init__(self):
        self.content, self.cut, self.hits = {}, {}, {}
        srv = self
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
                body = srv.content.get(self.path)
                if body is None: self.send_error(404); return
                self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
                if srv.cut.get(self.path, 0) > 0:
                    srv.cut[self.path] -= 1
                    self.wfile.write(body[:len(body) // 2]); self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.base = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(monkeypatch):
    for k in ('HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost'); monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    s = Server()
    yield s
    s.httpd.shutdown()


def write_registry(path: Path, body: str, files=FILES) -> Path:
    lines = ['schema = 1', '[sets.mini]', 'task = "derain"', 'layout = "paired"', 'hashes = "sha256"', f'n_files = {len(files)}', body,
             '[sets.mini.files]'] + [f'"{k}" = "{hashlib.sha256(v).hexdigest()}"' for k, v in files.items()]
    path.write_text('\n'.join(lines) + '\n')
    return path


def tar_gz(files: dict, top: str = 'mini-1.0') -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as t:
        for k, v in files.items():
            ti = tarfile.TarInfo(f'{top}/{k}'); ti.size = len(v); t.addfile(ti, io.BytesIO(v))
    return buf.getvalue()


def sources_registry(tmp_path, server) -> Path:
    for k, v in FILES.items(): server.content[f'/files/{k}'] = v
    return write_registry(tmp_path / 'reg.toml', f'fetch = "sources"\n[[sets.mini.sources]]\nprefix = ""\nurl = "{server.base}/files/{{name}}"')


# --- the registry ---

def test_registry_lists_every_shared_file():
    "The registry's hashes are MANIFEST.sha256's, set by set (every file, nothing else)."
    reg = load_registry()
    man = SHARED / 'MANIFEST.sha256'
    if not man.exists(): pytest.skip(f'{man} not found')
    want = {}
    for line in man.read_text().splitlines():
        h, p = line.split(None, 1)
        s, rel = p.strip()[2:].split('/', 1)
        want.setdefault(s, {})[rel] = h
    assert {s: reg[s].files for s in want} == want


def test_registry_public_sets_have_sources_but_no_hashes():
    reg = load_registry()
    for name in ('rain100h', 'reside_sots', 'snow100k', 'realsnow', 'lol_v2_real', 'revide', 'gopro', 'raindrop', 'srd',
                 'celeba_hq_masks', 'daclip_universal'):
        ds = reg[name]
        assert ds.hashes == 'none' and ds.fetch == 'none' and not ds.files and ds.source_urls and ds.layout, name


def test_data_outside_registry_is_ignored_by_git():
    import subprocess
    r = subprocess.run(['git', 'check-ignore', 'data/rain100l/input/1.png', 'data/.downloads/x.tar', 'data/README.md', 'data/datasets.toml'],
                       cwd=REPO, capture_output=True, text=True)
    assert r.stdout.split() == ['data/rain100l/input/1.png', 'data/.downloads/x.tar'], r.stdout


# --- fetch against a local server ---

def test_fetch_files_end_to_end_cli(tmp_path, server, capsys):
    reg = sources_registry(tmp_path, server)
    rc, err = run_main(['data', 'fetch', 'mini', '--to', tmp_path / 'd', '--registry', reg], capsys)
    assert rc == 0, err
    assert {str(p.relative_to(tmp_path / 'd' / 'mini')) for p in (tmp_path / 'd' / 'mini').rglob('*') if p.is_file()} == set(FILES)
    assert not (tmp_path / 'd' / '.mini.partial').exists()
    rc, err = run_main(['data', 'verify', 'mini', '--root', tmp_path / 'd', '--registry', reg], capsys)
    assert rc == 0, err
    n = sum(server.hits.values())
    rc, _ = run_main(['data', 'fetch', 'mini', '--to', tmp_path / 'd', '--registry', reg], capsys)   # present and verified: no download
    assert rc == 0 and sum(server.hits.values()) == n


def test_fetch_archive_unpacks_and_verifies(tmp_path, server):
    server.content['/mini-1.0.tar.gz'] = arc = tar_gz(FILES)
    reg = write_registry(tmp_path / 'reg.toml', f'fetch = "archive"\n[sets.mini.archive]\nurl = "{server.base}/mini-1.0.tar.gz"\n'
                         f'sha256 = "{hashlib.sha256(arc).hexdigest()}"\nstrip = 1')
    out = fetch('mini', tmp_path / 'd', load_registry(reg), log=lambda m: None)
    assert verify('mini', out, load_registry(reg))['ok']
    assert (out / 'target/2.png').read_bytes() == FILES['target/2.png']


def test_fetch_zip_archive_without_archive_hash(tmp_path, server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        for k, v in FILES.items(): z.writestr(k, v)
        z.writestr('README.txt', b'not in the registry')
    server.content['/mini.zip'] = buf.getvalue()
    reg = write_registry(tmp_path / 'reg.toml', f'fetch = "archive"\n[sets.mini.archive]\nurl = "{server.base}/mini.zip"')
    out = fetch('mini', tmp_path / 'd', load_registry(reg), log=lambda m: None)
    assert verify('mini', out, load_registry(reg))['ok'] and not (out / 'README.txt').exists()


def test_corrupted_file_is_an_error_naming_it_and_is_removed(tmp_path, server, capsys):
    reg = sources_registry(tmp_path, server)
    server.content['/files/target/2.png'] = b'corrupted bytes'
    rc, err = run_main(['data', 'fetch', 'mini', '--to', tmp_path / 'd', '--registry', reg, '--retries', '0'], capsys)
    line = one_line_error(rc, err, 'data')
    assert 'mini: target/2.png: the download from' in line and 'does not match its registry SHA-256' in line, line
    assert not (tmp_path / 'd' / 'mini').exists(), 'a set that does not verify must not appear'
    assert not (tmp_path / 'd' / '.mini.partial' / 'target/2.png').exists(), 'the corrupted download must be removed'
    assert not [p for p in (tmp_path / 'd' / '.mini.partial').rglob('*') if p.is_file() and 'tmp' in p.name]
    # the server is fixed: the next fetch downloads only what is missing and completes the set
    server.content['/files/target/2.png'] = FILES['target/2.png']
    hits = dict(server.hits)
    fetch('mini', tmp_path / 'd', load_registry(reg), log=lambda m: None)
    # (files are fetched in registry order: the first run stopped at target/2.png, so target/3.png was never asked for)
    assert {k: v - hits.get(k, 0) for k, v in server.hits.items() if v != hits.get(k, 0)} == {'/files/target/2.png': 1, '/files/target/3.png': 1}
    assert verify('mini', tmp_path / 'd' / 'mini', load_registry(reg))['ok']


def test_corrupted_member_of_an_archive(tmp_path, server):
    bad = dict(FILES); bad['input/3.png'] = b'flipped'
    server.content['/mini.tar.gz'] = tar_gz(bad)
    reg = write_registry(tmp_path / 'reg.toml', f'fetch = "archive"\n[sets.mini.archive]\nurl = "{server.base}/mini.tar.gz"\nstrip = 1')
    with pytest.raises(DataError, match=r'mini: input/3.png: the unpacked file does not match its registry SHA-256'):
        fetch('mini', tmp_path / 'd', load_registry(reg), log=lambda m: None)
    assert not (tmp_path / 'd' / 'mini').exists() and not (tmp_path / 'd' / '.mini.partial' / 'input/3.png').exists()
    assert not list((tmp_path / 'd' / '.downloads').glob('*.tar.gz')), 'an archive without a registry hash that fails must be removed'


def test_interrupted_download_is_retried(tmp_path, server):
    reg = sources_registry(tmp_path, server)
    server.cut['/files/input/1.png'] = 1     # the first response is cut off half-way, the retry is whole
    out = fetch('mini', tmp_path / 'd', load_registry(reg), retries=1, log=lambda m: None)
    assert server.hits['/files/input/1.png'] == 2 and verify('mini', out, load_registry(reg))['ok']


def test_interrupted_download_that_never_completes(tmp_path, server, capsys):
    reg = sources_registry(tmp_path, server)
    server.cut['/files/input/2.png'] = 99
    rc, err = run_main(['data', 'fetch', 'mini', '--to', tmp_path / 'd', '--registry', reg, '--retries', '1'], capsys)
    line = one_line_error(rc, err, 'data')
    assert 'mini: input/2.png: download from' in line and 'failed after 2 tries' in line, line
    assert server.hits['/files/input/2.png'] == 2
    assert not (tmp_path / 'd' / 'mini').exists()
    left = [p.name for p in (tmp_path / 'd' / '.mini.partial').rglob('*') if p.is_file()]
    assert '2.png' not in left and not [n for n in left if n.startswith('tmp')], left


def test_fetch_refuses_sets_without_hashes(capsys):
    rc, err = run_main(['data', 'fetch', 'gopro'], capsys)
    assert 'gopro: no automatic fetch' in one_line_error(rc, err, 'data')


# --- verify and list ---

@pytest.mark.parametrize('name', ['rain100l', 'lol_v1_eval15', 'cbsd68', 'kodak24', 'mcmaster18', 'bsds500_test200'])
def test_verify_shared_sets(name, capsys):
    if not (SHARED / name).is_dir(): pytest.skip(f'{SHARED / name} not found')
    rc, err = run_main(['data', 'verify', name, '--root', SHARED], capsys)
    assert rc == 0, err


def test_verify_reports_a_changed_file(tmp_path, capsys):
    reg = write_registry(tmp_path / 'reg.toml', 'fetch = "none"')
    for k, v in FILES.items(): (tmp_path / 'mini' / k).parent.mkdir(parents=True, exist_ok=True); (tmp_path / 'mini' / k).write_bytes(v)
    (tmp_path / 'mini' / 'input/1.png').write_bytes(b'edited')
    (tmp_path / 'mini' / 'target/3.png').unlink()
    rc, err = run_main(['data', 'verify', 'mini', '--root', tmp_path / 'mini', '--registry', reg], capsys)
    assert rc == 1 and err.startswith('dtir data verify: mini: 4 of 6 files verified') and 'input/1.png' in err and 'target/3.png' in err, err


def test_data_list_shows_where_each_set_is(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('DTIR_SHARED_DATA', str(tmp_path / 'none'))
    (tmp_path / 'mine' / 'kodak24').mkdir(parents=True)
    capsys.readouterr()
    from dtir.cli import main
    assert main(['data', 'list', '--data', str(tmp_path / 'mine')]) == 0
    out = capsys.readouterr().out
    assert 'kodak24' in out and 'found in --data' in out and 'missing: dtir data fetch rain100l' in out or (REPO / 'data' / 'rain100l').is_dir(), out
    rows = {r['name']: r for r in data_status(None, tmp_path / 'mine')}
    assert rows['kodak24']['where'] == '--data' and rows['kodak24']['n_present'] == 0
    assert not rows['cbsd68']['found'] or rows['cbsd68']['where'] == 'data/'
