"""Job config: defaults, job files, overrides and the error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpifl import config
from mpifl.errors import ConfigError

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def test_default_job_file_is_the_builtin_default():
    assert config.load(JOBS / "default.toml").values == config.load().values


@pytest.mark.parametrize("job", sorted(p.name for p in JOBS.glob("*.toml")))
def test_every_shipped_job_is_valid(job):
    cfg = config.load(JOBS / job)
    assert cfg["mode"] in ("federated", "distributed")


def test_required_jobs_exist():
    assert {"default.toml", "distributed_synthetic.toml", "federated_digits_iid.toml"} <= {
        p.name for p in JOBS.glob("*.toml")
    }


def test_override_is_parsed_as_toml_then_as_string():
    cfg = config.load(overrides=["train.lr=0.25", "mode=distributed", "data.name=\"synthetic\"", "rounds=3"])
    assert cfg["train.lr"] == 0.25 and cfg["mode"] == "distributed"
    assert cfg["data.name"] == "synthetic" and cfg["rounds"] == 3


def test_int_is_accepted_for_a_float_and_stored_as_float():
    cfg = config.load(overrides=["train.lr=1"])
    assert cfg["train.lr"] == 1.0 and isinstance(cfg["train.lr"], float)


def test_out_of_range_names_key_constraint_and_value():
    with pytest.raises(ConfigError) as err:
        config.load(overrides=["train.lr=-1"])
    assert str(err.value) == (
        "The 'train.lr' parameter in --set train.lr=-1 must be a float in the range (0, inf). Got -1 instead."
    )


@pytest.mark.parametrize("text, message", [
    ('rounds = "ten"\n',
     r"The 'rounds' parameter in .*job.toml must be an int in the range \[1, inf\)\. Got 'ten' instead\."),
    ("[train]\nlearning_rate = 0.1\n",
     r"Unknown key 'train.learning_rate' in .*job.toml\. Valid keys in \[train\]: .*train\.lr"),
])
def test_job_file_errors_name_the_file_key_and_value(tmp_path, text, message):
    job = tmp_path / "job.toml"
    job.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load(job)


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="'seed'"):
        config.load(overrides=["seed=true"])


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"Unknown section \[optimizer\]"):
        config.load(overrides=["optimizer.lr=1"])


def test_choice_error():
    with pytest.raises(ConfigError, match=r"must be a registered model \('linear', 'logistic', 'softmax', 'mlp', 'cnn', 'gbdt', 'forest', 'torch'\) or a 'module:Class' path\. Got 'svm' instead"):
        config.load(overrides=["model.kind=svm"])


def test_fraction_zero_is_out_of_range():
    with pytest.raises(ConfigError, match=r"'server.fraction'.*range \(0, 1\]"):
        config.load(overrides=["server.fraction=0"])


def test_binary_model_on_ten_classes_is_refused():
    with pytest.raises(ConfigError, match="'logistic' \\(binary\\)"):
        config.load(overrides=["model.kind=logistic"])


def test_missing_and_corrupt_job_files(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read job file .*nope.toml"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        config.load(bad)


def test_set_without_equals():
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        config.load(overrides=["train.lr"])


def test_nested_round_trip():
    cfg = config.load()
    assert cfg.as_nested()["train"]["lr"] == 0.5 and cfg.as_nested()["rounds"] == 50


@pytest.mark.parametrize("value", ["[0]", "[200, -1]", "[2.5]", "200", "[true]"])
def test_mlp_hidden_widths_must_be_a_list_of_positive_ints(value):
    with pytest.raises(ConfigError, match=r"The 'model.hidden' parameter in --set model.hidden=.* must be a list of "
                                          r"ints in the range \[1, 1048576\], such as \[200, 200\]"):
        config.load(overrides=["model.kind=mlp", f"model.hidden={value}"])


def test_an_mlp_output_must_fit_the_task():
    with pytest.raises(ConfigError, match="The 'model.output' parameter in .* is 'logistic' .* Use model.output"):
        config.load(overrides=["model.kind=mlp", "model.output=logistic"])
    cfg = config.load(overrides=["model.kind=mlp", "model.hidden=[]", "model.activation=tanh"])
    assert cfg["model.hidden"] == [] and config.output_kind(cfg) == "softmax"
