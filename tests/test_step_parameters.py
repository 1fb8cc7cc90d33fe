"""One description of a step's parameters: the dataclass and its docstring drive the CLI, the widgets and the checks."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from hcdc.cli import main
from hcdc.cli_parameters import option_table, parameter_options, parameters_from_options
from hcdc.pipeline.steps import step_specs
from reduction.postproc.detection import THRESHOLD_KINDS
from reduction.postproc.pipeline import ALGORITHMS, PostprocessParameters
from reduction.preprocess.model import PreprocessParameters
from reduction.steps import Step, StepParameters, attribute_docs, parameter_fields

FLAGS = {"--recenter-positive": ("recenter_negative", False)}


def all_parameter_classes() -> set[type[StepParameters]]:
    """The parameter classes of every pipeline step and of every science step they are made of."""
    step_specs()  # imports the pipeline's steps

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return {step.Parameters for step in subclasses(Step)}


@pytest.mark.parametrize("params_class", sorted(all_parameter_classes(), key=lambda c: c.__name__))
def test_every_parameter_is_described(params_class):
    """A field without a sentence in its class's ``Attributes`` would be an option without help."""
    fields = list(parameter_fields(params_class))
    assert fields
    undescribed = [f.dotted for f in fields if len(f.help) < 10]
    assert not undescribed, f"{params_class.__name__}: describe {undescribed} in the Attributes section"
    for f in fields:  # a documented default that the dataclass refuses would break every front end
        if f.choices and f.default is not None:
            assert f.default in f.choices, f.dotted


def test_documented_choices_are_the_code_s():
    docs = {f.dotted: f.choices for f in parameter_fields(PostprocessParameters)}
    assert docs["subtraction.algorithm"] == tuple(ALGORITHMS)
    assert docs["detection.threshold_on"] == tuple(THRESHOLD_KINDS)


def test_attribute_docs_reads_numpydoc():
    class Example(StepParameters):
        """Example.

        Attributes
        ----------
        a, b : float
            Shared text,
            on two lines.
        mode : {'x', 'y'}
            The mode.
        flag :
            A flag.

        Notes
        -----
        c : int
            Not an attribute.
        """

    docs = attribute_docs(Example)
    assert docs["a"] == ("Shared text, on two lines.", None)
    assert docs["b"] == docs["a"]
    assert docs["mode"] == ("The mode.", ("x", "y"))
    assert docs["flag"] == ("A flag.", None)
    assert "c" not in docs


def test_choices_are_checked_for_every_class():
    from reduction.postproc.pipeline import CharacterisationParameters, PsfSubtractionParameters

    with pytest.raises(ValueError, match="collapse must be one of median, mean, sum"):
        PsfSubtractionParameters(collapse="average")
    with pytest.raises(ValueError, match="fmerit must be one of"):
        CharacterisationParameters(fmerit="l2")
    with pytest.raises(ValueError, match="ncomp must be >= 1"):
        CharacterisationParameters(ncomp=0)


@click.command()
@parameter_options(PostprocessParameters, flags=FLAGS)
def echo(**options):
    params, rest = parameters_from_options(PostprocessParameters, options, flags=FLAGS)
    assert rest == {}
    click.echo(json.dumps(params.to_dict()))


def run_echo(*args):
    result = CliRunner().invoke(echo, list(args))
    return result, (json.loads(result.output) if result.exit_code == 0 else None)


def test_one_option_per_parameter():
    names = {row[0] for row in option_table(PostprocessParameters)}
    leaves = list(parameter_fields(PostprocessParameters))
    for field in leaves:
        assert f"--{field.name.replace('_', '-')}" in names or f"--{'-'.join(field.path).replace('_', '-')}" in names
    # the names users' scripts use are kept
    for kept in (
        "--algorithm",
        "--ncomp",
        "--asize",
        "--delta-rot",
        "--recenter",
        "--threshold",
        "--threshold-on",
        "--max-characterised",
        "--n-injections",
    ):
        assert kept in names, kept


def test_options_build_the_dataclass():
    _, defaults = run_echo()
    assert defaults == PostprocessParameters().to_dict()
    _, values = run_echo("--ncomp", "7", "--algorithm", "annular-pca", "--recenter", "--max-characterised", "0")
    assert values["subtraction"]["ncomp"] == 7 and values["characterisation"]["ncomp"] == 7
    assert values["subtraction"]["algorithm"] == "annular-pca" and values["recenter"] is True
    assert values["max_characterised"] == 0
    # the specific option wins over the shared one, whatever the order on the line
    _, values = run_echo("--characterisation-ncomp", "5", "--ncomp", "9")
    assert values["subtraction"]["ncomp"] == 9 and values["characterisation"]["ncomp"] == 5
    _, values = run_echo("--recenter-positive", "--no-student")
    assert values["recenter_negative"] is False and values["contrast"]["student"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ncomp", "0"), "ncomp must be >= 1"),
        (("--algorithm", "klip"), "'klip' is not one of"),
        (("--n-injections", "-1"), "n_injections must be >= 0"),
        (("--asize", "four"), "'four' is not a valid float"),
    ],
)
def test_bad_values_name_the_parameter(args, message):
    result, _ = run_echo(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_real_commands_carry_the_generated_options():
    help_text = CliRunner().invoke(main, ["postprocess", "--help"]).output
    for field in parameter_fields(PostprocessParameters):
        assert field.help.split()[0] in help_text
    assert "--characterisation-ncomp" in help_text and "--recenter-positive" in help_text
    help_text = CliRunner().invoke(main, ["preprocess", "--help"]).output
    for field in parameter_fields(PreprocessParameters):
        assert f"--{field.name.replace('_', '-')}" in help_text


def test_widget_form_shows_the_same_descriptions():
    from hcdc_widgets.forms import ParameterForm

    form = ParameterForm(PostprocessParameters)
    for field in parameter_fields(PostprocessParameters):
        widget = form.widget(field.dotted)
        assert widget.tooltip == field.help, field.dotted
        if field.choices:
            assert tuple(widget.options) == field.choices, field.dotted
