"""The rate-distortion tables and plots moved from pyrosequence.inference.rate_distortion to
pyrosequence.diagnostics.rate_distortion_report; the old names still work for one release, with a
DeprecationWarning, and inference still imports no diagnostics."""

import subprocess
import sys

import pytest

from pyrosequence.diagnostics import rate_distortion_report
from pyrosequence.inference import rate_distortion


@pytest.mark.parametrize("name", ["COLUMNS", "to_csv", "to_markdown", "to_json", "plot_rd"])
def test_the_old_names_warn_and_give_the_moved_objects(name):
    with pytest.warns(DeprecationWarning, match=rf"rate_distortion\.{name} moved to pyrosequence\.diagnostics\.rate_distortion_report"):
        old = getattr(rate_distortion, name)
    assert old is getattr(rate_distortion_report, name)


def test_the_old_from_import_works_and_other_names_still_fail():
    with pytest.warns(DeprecationWarning):
        from pyrosequence.inference.rate_distortion import to_csv
    assert to_csv is rate_distortion_report.to_csv
    with pytest.raises(ImportError):
        from pyrosequence.inference.rate_distortion import no_such_name  # noqa: F401


def test_inference_does_not_import_diagnostics():
    code = ("import sys, pyrosequence.inference.rate_distortion; "
            "print([m for m in sys.modules if m.startswith('pyrosequence.diagnostics')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
