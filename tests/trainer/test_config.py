import pytest

from trainer.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("tier", ["tiny", "base", "paper"])
def test_shipped_tiers_load(tier):
    cfg = load_config(f"configs/{tier}.toml")
    assert cfg.model.tier == tier
    assert cfg.model.window % cfg.model.downsample == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"widht": 3}}, r"unknown key\(s\) \['widht'\]"),
        ({"modle": {}}, r"unknown section\(s\) \['modle'\]"),
        ({"model": {"window": "48"}}, "model.*window: expected int"),
        ({"train": {"batch_size": True}}, "batch_size: expected int"),
        ({"model": {"window": 50, "downsample": 4}}, "multiple of model.downsample"),
        ({"model": {"default_sampler": "euler"}}, "choose ddim or dpmpp2m"),
        ({"model": {"style_guidance": 0}}, r"model.style_guidance=0: use > 0 and <= 10.0"),
        ({"model": {"style_guidance": float("nan")}}, r"model.style_guidance=nan: use > 0 and <= 10.0"),
    ],
)
def test_bad_configs_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data, "my.toml")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nwindow=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(("hop", "accepted"), [(0, False), (1, True), (15, True), (16, False), (17, False)])
def test_hop_follows_the_engines_rule(hop, accepted):
    # hop = window was accepted here, then refused by the engine ("hop must be between 1 and 15")
    data = {"model": {"window": 16, "hop": hop}}
    if accepted:
        assert config_from_dict(data, "my.toml").model.hop == hop
    else:
        with pytest.raises(ConfigError, match=rf"model.hop={hop}: must be between 1 and 15 frames"):
            config_from_dict(data, "my.toml")
