"""The documentation (issue 20): built offline with warnings as errors; every command, option, setting, catalog
column and step parameter in the generated reference; units stated once and the same in the exports."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"sphinx-build failed or warned:\n{run.stderr[-4000:]}"
    return out


def _text(path: Path) -> str:
    page = path.read_text()
    page = page[page.find("<main") : page.find("</main>")]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _commands(group, prefix="hcdc"):
    import click

    yield prefix, group
    if isinstance(group, click.Group):
        # every command the user can run, the lazily imported ones (hcdc.cli._LazyGroup) included
        with click.Context(group) as ctx:
            for name in group.list_commands(ctx):
                yield from _commands(group.get_command(ctx, name), f"{prefix} {name}")


def test_every_command_and_option_is_in_the_cli_reference(built):
    from hcdc.cli import main

    text = _text(built / "reference" / "cli.html")
    for path, command in _commands(main):
        assert path in text, f"{path} missing from the CLI reference"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in text, f"{path} {opt} missing from the CLI reference"


def test_every_setting_is_in_the_settings_reference(built):
    from hcdc.settings import Settings

    text = _text(built / "reference" / "settings.html")
    for name in Settings.model_fields:
        assert name in text and f"HCDC_{name.upper()}" in text, name


def test_every_catalog_column_is_in_the_reference_with_its_unit(built):
    from hcdc.catalog.models import Base
    from hcdc.catalog.units import DIMENSIONLESS, NOT_A_QUANTITY, column_info

    page = (built / "reference" / "catalog.html").read_text()
    for table in Base.metadata.sorted_tables:
        match = re.search(rf'<section id="table-{re.escape(table.name.replace("_", "-"))}">(.*?)</section>', page, re.S)
        assert match, f"table {table.name} missing from the catalog reference"
        section = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))))
        for column in table.columns:
            info = column_info(table.name, column)
            assert info.unit or info.kind in (DIMENSIONLESS, NOT_A_QUANTITY), f"{table.name}.{column.name}"
            assert f"{column.name} " in section, f"{table.name}.{column.name} missing"
            assert (info.unit or info.kind) in section, f"{table.name}.{column.name}: unit not shown"


def test_every_step_parameter_is_in_the_steps_reference(built):
    from hcdc.pipeline.steps import step_specs
    from reduction.steps import parameter_fields

    text = _text(built / "reference" / "steps.html")
    for spec in step_specs().values():
        assert f"Step {spec.name}" in text
        for field in parameter_fields(spec.parameters):
            assert field.dotted in text, f"{spec.name}: {field.dotted}"


def test_validation_tables_come_from_the_benchmarks(built):
    import json

    text = _text(built / "science" / "validation.html")
    record = json.loads((REPO / "bench" / "results" / "bench_uncertainties.json").read_text())
    std = record["results"]["naco"]["summary"]["separation_px"]["std"]
    assert f"{std:.2f}" in text
    speed = json.loads((REPO / "bench" / "results" / "bench_postproc.json").read_text())
    assert f"{speed['results'][0]['chain']['ratio']:.1f}" in text
    literature = json.loads((REPO / "bench" / "results" / "bench_betapic_literature.json").read_text())
    assert f"{literature['ours']['pa_deg']:.2f} ± {literature['ours']['pa_err_deg']:.2f}" in text


def test_exports_state_the_catalogs_units():
    """One place holds the units (hcdc.catalog.units); every export column named like a catalog column agrees."""
    import astropy.units as u

    from hcdc.catalog.models import Base
    from hcdc.catalog.units import column_info
    from hcdc.dashboards import exports
    from hcdc.sources import SOURCE_COLUMNS
    from hcdc.tables import DETECTION_COLUMNS, LIMIT_COLUMNS, OBSERVATION_COLUMNS
    from hcdc.vo import TARGET_COLUMNS as VO_TARGET_COLUMNS

    catalog = {}
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            catalog.setdefault(column.name, set()).add(column_info(table.name, column).unit)
    checked = 0
    for spec in (
        OBSERVATION_COLUMNS,
        DETECTION_COLUMNS,
        LIMIT_COLUMNS,
        SOURCE_COLUMNS,
        exports.TARGET_COLUMNS,
        exports.DETECTION_COLUMNS,
        exports.LIMIT_POINT_COLUMNS,
        VO_TARGET_COLUMNS,
    ):
        for name, unit, _description in spec:
            if name not in catalog or len(catalog[name]) != 1:
                continue
            (expected,) = catalog[name]
            if expected is None:
                assert unit in (None, ""), f"{name}: export says {unit!r}, the catalog has no unit"
            else:
                assert unit is not None and u.Unit(unit) == u.Unit(expected), f"{name}: {unit!r} != {expected!r}"
            checked += 1
    assert checked > 30
