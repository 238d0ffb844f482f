import pytest

from djenerator.config import Config, ConfigError, build_config, parse_override
from djenerator.presets import PRESETS


def test_presets_build_and_validate():
    for name in PRESETS:
        cfg = build_config(name)
        assert cfg.preset == name


def test_one_default_preset_everywhere():
    """train without --preset, Config() (and so every config key a file leaves out), prepare without --preset
    and the HTTP API's jobs all mean the same preset; auto is asked for by name."""
    from djenerator.config import DataConfig
    from djenerator.presets import DEFAULT_PRESET
    from djenerator.server.models import request_models

    default = build_config(None)
    assert default.preset == DEFAULT_PRESET and Config() == default
    assert DataConfig() == default.data
    _, job = request_models(8, 8, 10.0, 100, list(PRESETS))
    assert job.model_fields["preset"].default == DEFAULT_PRESET
    assert build_config("auto").preset in ("laptop", "recommended")


def test_original_preset_matches_the_seed():
    t = build_config("original").train
    assert (t.optimizer, t.lr_g, t.rms_alpha, t.eps, t.instance_noise, t.label_smoothing) == ("rmsprop", 1e-3, 0.7, 1e-4, 0.2, 0.9)


def test_overrides_files_and_types(tmp_path):
    (tmp_path / "c.toml").write_text('[train]\nlr_g = 0.0002\nbatch_size = 8\n[model]\ndiscriminators = ["wave", "stft"]\n')
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: 4\n")
    cfg = build_config("original", [tmp_path / "c.toml", tmp_path / "c.yaml"], ["train.steps=7", "model.spectral_norm=true"])
    assert cfg.train.lr_g == 2e-4 and cfg.train.batch_size == 4 and cfg.train.steps == 7
    assert cfg.model.discriminators == ["wave", "stft"] and cfg.model.spectral_norm is True


@pytest.mark.parametrize("bad", ["train.nope=1", "train.batch_size=abc", "train.loss=foo", "nosection=1", "train.steps"])
def test_bad_overrides_are_clear_errors(bad):
    with pytest.raises(ConfigError):
        build_config("original", [], [bad])


def test_roundtrip_dict():
    cfg = build_config("recommended", [], ["train.lr_d=3e-4"])
    again = Config.from_dict(cfg.to_dict())
    assert again == cfg


def test_parse_override_nested():
    assert parse_override("a.b.c=1.5") == {"a": {"b": {"c": 1.5}}}


def test_auto_preset_is_the_machines_default():
    import torch

    from djenerator.config import build_config

    cfg = build_config("auto")
    assert cfg.preset == ("recommended" if torch.cuda.is_available() else "laptop")
    assert cfg.to_dict() == build_config(cfg.preset).to_dict()
