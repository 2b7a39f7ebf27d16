"""gdl never assumes a device: no ``.cuda()`` and no hard-coded CPU in the package's code (the one exception is
:func:`gdl.device`, which falls back to the CPU), and the symmetry core imports without the checker."""

import ast
import pathlib
import subprocess
import sys

import gdl

PACKAGE = pathlib.Path(gdl.__file__).parent
ALLOWED = {"_runtime.py"}          # gdl.device() picks the CPU when nothing else is there


def _hard_coded_devices(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
            found.append(f"line {node.lineno}: .cuda()")
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "device" and isinstance(kw.value, ast.Constant) and kw.value.value in ("cpu", "cuda"):
                    found.append(f"line {node.lineno}: device={kw.value.value!r}")
            if (isinstance(node.func, ast.Attribute) and node.func.attr == "device" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value in ("cpu", "cuda")):
                found.append(f"line {node.lineno}: torch.device({node.args[0].value!r})")
    return found


def test_no_module_hard_codes_a_device():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name in ALLOWED:
            continue
        found = _hard_coded_devices(path.read_text())
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, f"hard-coded devices (use the input's or the module's device): {offenders}"


def test_the_scan_finds_what_it_looks_for():
    bad = "import torch\nx = torch.zeros(3, device='cpu')\ny = x.cuda()\nd = torch.device('cuda')\n"
    assert len(_hard_coded_devices(bad)) == 3
    assert _hard_coded_devices("x = torch.zeros(3, device=y.device)\n") == []


def test_groups_import_without_the_checker():
    code = "import sys, gdl.groups; assert 'gdl.testing' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
