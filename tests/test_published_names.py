"""Every name published in 0.1 still imports, from where it was published: the package's own names,
and the 0.1 module paths, which are deprecated aliases of the modules that are their homes now."""

import importlib
import sys
import warnings

import pytest

import ddkit

TOP_LEVEL = [
    "Schedule",
    "make_timesteps",
    "make_timesteps_logsnr",
    "log_snr",
    "SPACINGS",
    "dpm_solver_sample",
    "unipc_sample",
    "q_sample",
    "q_mean_variance",
    "q_posterior",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_eps",
    "eps_from_v",
    "x0_from_v",
    "v_from_x0_eps",
    "model_fn_from",
    "eps_network",
    "diffusion_loss",
    "ddpm_sample",
    "ddpm_step",
    "ddim_sample",
    "ddim_step",
    "ddim_sigma",
    "ddim_invert",
    "slerp",
    "classifier_free_guidance",
    "classifier_guidance",
    "autoguidance",
    "UNet",
    "UNetConfig",
    "MLPDenoiser",
    "MLPConfig",
    "load",
    "load_diffusers",
    "export_diffusers",
    "train",
]
# 0.1 module path -> names published there
OLD_PATHS = {
    "ddkit.train": [
        "train",
        "DistContext",
        "ShardedBatches",
        "learning_rate",
        "load_run_data",
        "Trainer",
        "DiffusionObjective",
    ],
    "ddkit.config": ["RunConfig", "TrainConfig", "DataConfig", "DiffusionConfig", "check_terminal_snr", "PRECISIONS"],
    "ddkit.checkpoint": [
        "latest_checkpoint",
        "list_checkpoints",
        "clean_incomplete",
        "save_checkpoint",
        "load_train_state",
        "load_weights",
        "is_complete",
    ],
    "ddkit.runlock": ["RunLock", "RunLockedError"],
    "ddkit.safety": [
        "NonFiniteLossError",
        "TrainingInterrupted",
        "StopRequest",
        "load_matching",
        "MODEL_METADATA",
        "fused_adamw_supported",
    ],
    "ddkit.ema": ["EMA"],
    "ddkit.precision": ["resolve_precision", "cpu_has_native_bf16", "AUTO_BF16_MIN_PARAMS"],
    "ddkit.reporting": ["write_progress_images"],
    "ddkit.tensorboard_log": ["TensorBoardLogger", "make_logger"],
    "ddkit.runs": ["load", "resolve_weights"],
    "ddkit.classify": ["ClassifierObjective", "heldout_accuracy", "split_heldout", "last_accuracy", "t_bands"],
    "ddkit.toy": ["GaussianMixture", "make_toy", "toy_num_classes", "TOY_NAMES"],
    "ddkit.images": ["to_uint8", "save_grid", "make_grid", "save_points_plot", "save_loss_curve"],
    "ddkit.diffusers_io": [
        "load_diffusers",
        "export_diffusers",
        "diffusers_to_ddkit_state",
        "ddkit_to_diffusers_state",
        "DiffusersModel",
    ],
}
# modules that kept their path
KEPT = {
    "ddkit.schedule": [
        "Schedule",
        "make_timesteps",
        "make_timesteps_logsnr",
        "log_snr",
        "SPACINGS",
        "ALL_SPACINGS",
        "check_t",
    ],
    "ddkit.data": [
        "load_data",
        "Dataset",
        "DataError",
        "digits_split_indices",
        "holdout_split",
        "split_holdout",
        "load_image_folder",
        "DIGITS_SPLITS",
    ],
    "ddkit.samplers": [
        "SAMPLERS",
        "run_sampler",
        "get_sampler",
        "register_sampler",
        "ddim_sample",
        "ddpm_variance",
    ],
    "ddkit.generate": ["generate", "start_noise", "sample_shape"],
    "ddkit.rng": ["SampleGenerators", "sample_seed"],
    "ddkit.parameterization": ["EpsNetwork", "eps_network", "prediction_target", "clip_eps", "PREDICTIONS"],
    "ddkit.losses": ["diffusion_loss", "vb_terms", "normal_kl", "prior_kl", "bound_variance"],
    "ddkit.eval": ["evaluate_samples", "METRICS", "DigitsFeatures", "get_features"],
    "ddkit.eval.likelihood": ["nll_bpd", "plot_bound_terms", "BoundTerms"],
    "ddkit.eval.table": ["QualityTable", "oracle_quality_table", "sample_quality_table", "quality_table"],
    "ddkit.eval.energy": ["energy_distance", "energy_distance_to_mixture"],
    "ddkit.nn": ["UNet", "UNetConfig", "MLPDenoiser", "MLPConfig", "NoisyClassifier", "build_model"],
    "ddkit.cli": ["main", "build_parser"],
}


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_names(name):
    assert getattr(ddkit, name) is not None


@pytest.mark.parametrize("path, names", sorted(KEPT.items()))
def test_kept_modules(path, names):
    module = importlib.import_module(path)
    for name in names:
        assert getattr(module, name) is not None, (path, name)


@pytest.mark.parametrize("path, names", sorted(OLD_PATHS.items()))
def test_old_module_paths_are_deprecated_aliases(path, names):
    from ddkit._compat import EAGER

    if path not in EAGER:
        sys.modules.pop(path, None)  # imported afresh, as a program's first import of it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(path)
        for name in names:
            assert getattr(module, name) is not None, (path, name)
    assert any(issubclass(w.category, DeprecationWarning) and path in str(w.message) for w in caught)
    assert getattr(ddkit, path.split(".")[1]) is not None  # also as an attribute of the package


def test_old_import_statements_still_work():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ddkit.config import RunConfig
        from ddkit.toy import GaussianMixture
        from ddkit.train import DistContext, ShardedBatches, train  # noqa: F401
    assert RunConfig.__module__ == "ddkit.training.config"
    assert GaussianMixture.__module__ == "ddkit.oracle"


def test_ddkit_train_is_the_function_and_the_module_path_calls_it(tmp_path):
    import inspect

    assert inspect.signature(ddkit.train).parameters["out"] is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import ddkit.train as module_path
    out = module_path(out=tmp_path / "run", data="toy:moons", steps=2, model_channels=16, toy_size=64, progress=False)
    assert (out / "config.json").is_file()


def test_deprecated_aliases_warn():
    with pytest.warns(DeprecationWarning, match="num_timesteps"):
        assert ddkit.Schedule.linear(20).timesteps == 20
    with pytest.warns(DeprecationWarning, match="num_timesteps="):
        assert ddkit.Schedule.cosine(timesteps=30).num_timesteps == 30


def test_retired_names_are_gone():
    with pytest.raises(ImportError):
        importlib.import_module("ddkit.metrics")
    from ddkit.cli import main

    assert main(["train", "--timesteps", "10", "--steps", "1"]) == 2  # now --num-timesteps
