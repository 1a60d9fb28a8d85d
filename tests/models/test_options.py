"""Model options read from the model classes: the CLI's model flags, their help, and which options
are sizes come from the constructors, docstrings and ``size_options`` declarations, so a new model
needs no list elsewhere (issue 27)."""

import pytest

from pyrosequence.cli import build_parser
from pyrosequence.cli.train import BUILTIN_OPTIONS, SHADOWED, config_from_args
from pyrosequence.data.registry import REGISTRY as DATA_REGISTRY
from pyrosequence.inference.objectives import OBJECTIVES
from pyrosequence.models import MODELS, SequenceModel
from pyrosequence.models.core.options import (COMMON_DOCS, constructor_parameters, documented_arguments, model_options,
                                         size_options)
from pyrosequence.training.config import TrainConfig

#: Integer options of built-in models that are not sizes (0 is meaningful).
NOT_SIZES = {"seed", "iafs", "covariate_dim"}  # covariate_dim: 0 is valid, and train sets it from the data


def train_args(*flags):
    return build_parser().parse_args(["train", *flags])


def test_every_constructor_option_of_every_built_in_model_is_a_flag_or_shadowed():
    parser_flags = build_parser()._subparsers._group_actions[0].choices["train"]._option_string_actions
    for name, cls in MODELS.items():
        for p in constructor_parameters(cls):
            flag = "--" + p.name.replace("_", "-")
            if p.name in SHADOWED:
                assert flag in parser_flags and p.name not in BUILTIN_OPTIONS  # the run setting keeps the flag
            else:
                assert flag in parser_flags and parser_flags[flag].dest == p.name, (name, flag)


def test_model_flags_become_typed_model_options():
    config = config_from_args(train_args("--model", "vhrnn", "--omega-dim", "8", "--hyper-input", "latent",
                                         "--initial-step", "true", "--scale-offset", "0.5", "--epochs", "1"))
    given = {"omega_dim": 8, "hyper_input": "latent", "initial_step": True, "scale_offset": 0.5}
    assert {k: config.model_options[k] for k in given} == given  # (the likelihood is the data set's)
    config = config_from_args(train_args("--model", "srnn-simple", "--fast-path", "false"))
    assert config.model_options["fast_path"] is False


@pytest.mark.parametrize("flags, message", [
    (["--omega-dim", "eight"], "--omega-dim takes an integer"),
    (["--fast-path", "maybe"], "--fast-path takes true or false"),
])
def test_a_badly_typed_model_flag_is_refused_naming_it(flags, message, capsys):
    with pytest.raises(SystemExit):
        train_args(*flags)
    assert message in capsys.readouterr().err


def test_every_option_of_every_built_in_model_is_documented():
    for name, cls in MODELS.items():
        docs = documented_arguments(cls)
        missing = [p.name for p in constructor_parameters(cls) if p.name not in docs and p.name not in COMMON_DOCS]
        assert not missing, f"{cls.__name__} ({name}) documents no Args entry for {missing}"


def test_every_integer_option_of_a_built_in_model_is_declared_a_size_or_known_not_to_be():
    options = model_options(MODELS)
    for name, cls in MODELS.items():
        assert "size_options" in vars(cls) or any("size_options" in vars(base) for base in cls.__mro__[1:-1]
                                                  if base is not SequenceModel), f"{cls.__name__} declares no size_options"
        sizes = size_options(cls)
        for p in constructor_parameters(cls):
            if options[p.name].kind == "int" and p.name not in NOT_SIZES:
                assert p.name in sizes, f"{cls.__name__}.{p.name} is an integer option not declared in size_options"
        assert set(sizes) <= {p.name for p in constructor_parameters(cls)}


def test_a_size_of_zero_is_refused_and_a_non_size_zero_accepted():
    with pytest.raises(ValueError, match="omega_dim must be a positive integer"):
        TrainConfig(model="vhrnn", model_options={"omega_dim": 0})
    assert TrainConfig(model="dmm", z_dim=2, model_options={"iafs": 0}).model_options["iafs"] == 0


def test_a_model_without_declared_sizes_gets_the_common_ones_it_takes():
    class Mine(SequenceModel):
        def __init__(self, x_dim, z_dim, hidden_dim=4, steps=0):
            super().__init__(x_dim, z_dim)

    assert size_options(Mine) == ("hidden_dim",)


def test_docstring_arguments_are_read_with_shared_entries_pointers_and_bases():
    class Base:
        """Base.

        Args:
            depth: layers of the base. More text.
        """

    class Child(Base):
        """Child.

        Args:
            a, b: two sizes (default 3).
            depth: see :class:`Base`.
            kind: ``"x"`` or ``"y"``.
        """

    docs = documented_arguments(Child)
    assert docs == {"a": "two sizes (default 3)", "b": "two sizes (default 3)", "kind": '"x" or "y"',
                    "depth": "layers of the base"}


def test_the_help_names_every_registered_model_data_set_and_objective():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    flat = " ".join(text.split())
    for name in [*MODELS, *DATA_REGISTRY.names(), *OBJECTIVES]:
        assert name in flat, name
    assert "vhrnn: hidden units of the decoder's hyper MLPs" in flat
