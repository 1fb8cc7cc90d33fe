"""Commands that only read the catalog start without the science's heavy imports.

``hcdc catalog observations`` needs the detection tables' schema (``reduction.postproc.tables``), not
the PSF subtraction: ``reduction.postproc`` loads its functions on first use, and a function that
shares its name with its module (``snr``) stays the function whichever is imported first.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("scipy.stats", "scipy.signal", "photutils", "astropy.modeling", "vip_hci", "skimage")


def _modules_after(code: str) -> dict:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_catalog_tables_do_not_import_the_science():
    assert _modules_after("import hcdc.tables, hcdc.cli, reduction.postproc.tables") == []
    # the control: the science itself does import them (the check above can fail)
    assert "scipy.stats" in _modules_after("from reduction.postproc import snr_map")


def test_lazy_names_are_the_functions_whichever_comes_first():
    import reduction.postproc as postproc
    import reduction.postproc.cadi
    import reduction.postproc.snr  # noqa: F401 - the submodule first: the package attribute stays the function
    from reduction.postproc import cadi, snr
    from reduction.postproc.snr import snr as snr_of_module

    assert callable(snr) and snr is snr_of_module and postproc.snr is snr
    assert callable(cadi) and cadi.__module__ == "reduction.postproc.cadi"
    assert set(postproc.__all__) <= set(dir(postproc))
    # the literal __all__ (for static tools) and the lazy table name the same functions
    assert sorted(postproc.__all__) == sorted(postproc._LOCATIONS)
    for name in postproc.__all__:
        assert getattr(postproc, name).__name__ == name
    try:
        postproc.no_such_function  # noqa: B018
    except AttributeError as error:
        assert "no_such_function" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
