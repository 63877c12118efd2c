"""Configuration precedence and validation."""

from __future__ import annotations

import pytest

from faasmp import config


def test_precedence_defaults_file_env_args(tmp_path):
    cfg_file = tmp_path / "faasmp.toml"
    cfg_file.write_text('[faasmp]\nbackend = "aws_lambda"\nmax_workers = 10\nidle_timeout = 5\n')
    env = {"FAASMP_CONFIG": str(cfg_file), "FAASMP_MAX_WORKERS": "20"}
    cfg = config.load(env, idle_timeout=7.5)
    assert cfg.backend == "aws_lambda"  # file over default
    assert cfg.max_workers == 20  # env over file
    assert cfg.idle_timeout == 7.5  # argument over file
    assert cfg.start_timeout == config.Config().start_timeout  # default


def test_no_file_needed():
    cfg = config.load({"FAASMP_CONFIG_UNUSED": "x"})
    assert cfg.backend == "localhost" and cfg.redis_url is None and cfg.is_local


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match="max_workers"):
        config.load({}, max_workers=0)
    with pytest.raises(ValueError, match="'idle_timeout' must be a number"):
        config.load({"FAASMP_IDLE_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="redis://"):
        config.load({"FAASMP_REDIS_URL": "http://example"})
    with pytest.raises(TypeError, match="unknown faasmp setting"):
        config.load({}, max_wrokers=3)
    bad = tmp_path / "bad.toml"
    bad.write_text("[faasmp]\nbakend = 'x'\n")
    with pytest.raises(ValueError, match="bakend"):
        config.load({"FAASMP_CONFIG": str(bad)})
    with pytest.raises(FileNotFoundError, match="FAASMP_CONFIG"):
        config.load({"FAASMP_CONFIG": str(tmp_path / "missing.toml")})


def test_password_is_redacted():
    cfg = config.load({"FAASMP_REDIS_URL": "rediss://user:s3cret@redis.internal:6380/0"})
    assert "s3cret" not in repr(cfg)
    assert "s3cret" not in str(cfg.redacted())
    assert config.redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"


def test_embedded_server_refused_with_cloud_backend():
    from faasmp.context import FaasContext

    ctx = FaasContext(backend="aws_lambda")
    with pytest.raises(ValueError, match="FAASMP_REDIS_URL"):
        ctx.session  # noqa: B018
