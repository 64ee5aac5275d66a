"""The README's Python example runs as written, and ssimjax never imports torch."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_examples_run():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"## From Python(.*?)\n## ", text, re.S).group(1)
    first, second, *rest = re.findall(r"```python\n(.*?)```", section, re.S)
    code = "\n".join([first, "assert predictions.shape == (64,)", second, "assert metrics['sample_count'] == 64",
                      *rest])
    r = subprocess.run([sys.executable, "-c", code],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_ssimjax_does_not_import_torch():
    code = ("import sys, ssimjax, ssimjax.train.run, ssimjax.train.fit, ssimjax.data.demo; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
