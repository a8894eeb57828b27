"""Write README.md from nbs/index.ipynb (markdown cells as they are, code cells fenced, `#| hide` cells dropped).

nbdev's own `nbdev-readme` needs Quarto, which cannot be installed here; this keeps the README a pure function of the notebook.
Usage: python tools/readme.py [--check]
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    out = []
    for c in nb['cells']:
        src = ''.join(c['source']).rstrip()
        if not src: continue
        if c['cell_type'] == 'markdown': out.append(src)
        elif c['cell_type'] == 'code':
            lines = src.splitlines()
            if any(l.strip().startswith(('#| hide', '#|hide', '#| default_exp')) for l in lines): continue
            body = '\n'.join(l for l in lines if not l.strip().startswith('#|'))
            if body.strip(): out.append(f'```python\n{body}\n```')
    text = '<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->\n\n'
    return text + '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    text = render(root / 'nbs' / 'index.ipynb')
    if '--check' in sys.argv:
        if (root / 'README.md').read_text() != text:
            sys.exit('README.md is out of date: run `python tools/readme.py`')
    else:
        (root / 'README.md').write_text(text)
