"""InvarianceClassifier on its own, in a real Trainer on a small in-memory data set: every
optimizer and learning-rate schedule against the formulas written out here, when
``val/consistency`` is measured, and the RNG state that makes resuming exact."""

from __future__ import annotations

import inspect
import math
import random

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.classifier import OPTIMIZERS, SCHEDULERS
from invariance_recipes.lightning_modules.nets.downsample import DOWNSAMPLERS

BATCHES_PER_EPOCH = 4
BATCH = 8
LR = 0.1


def loaders() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCHES_PER_EPOCH * BATCH, 1, 16, 16, generator=generator)
    y = torch.randint(0, 10, (len(x),), generator=generator)
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=BATCH), DataLoader(data, batch_size=BATCH)


def small_model(**options: object) -> InvarianceClassifier:
    defaults = {"image_size": 16, "widths": (4, 8), "head": "gap", "curve_max_shift": 1}
    return InvarianceClassifier(**{**defaults, **options})


def trainer(epochs: int, *callbacks: Callback, max_steps: int = -1) -> Trainer:
    return Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


class LearningRates(Callback):
    """The learning rate each training step uses."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def expected_rates(scheduler: str, total: int, warmup: int) -> list[float] | None:
    """The schedule written out step by step (``None``: OneCycle, checked by its shape)."""
    rest = total - warmup
    rates = []
    for step in range(total):
        if scheduler == "none":
            rates.append(LR)
        elif step < warmup:  # linear ramp from LR / (warmup + 1) to LR
            rates.append(LR * (1 + step) / (warmup + 1))
        elif scheduler == "cosine":
            rates.append(LR * 0.5 * (1 + math.cos(math.pi * (step - warmup) / rest)))
        elif scheduler == "step":
            done = step - warmup
            drops = (done >= math.ceil(rest / 2)) + (done >= math.ceil(3 * rest / 4))
            rates.append(LR * 0.1**drops)
        else:
            return None
    return rates


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_optimizer_and_schedule_follows_its_formula(optimizer: str, scheduler: str) -> None:
    seed_everything(0)
    epochs, warmup_epochs = 3, 1.0
    model = small_model(
        optimizer=optimizer, scheduler=scheduler, lr=LR, warmup_epochs=warmup_epochs
    )
    rates = LearningRates()
    train, val = loaders()
    trainer(epochs, rates).fit(model, train, val)
    total = epochs * BATCHES_PER_EPOCH
    assert len(rates.values) == total
    kind = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]
    assert isinstance(trainer_optimizer(model), kind)
    expected = expected_rates(scheduler, total, round(warmup_epochs * BATCHES_PER_EPOCH))
    if expected is None:  # OneCycle: rises to LR at the warm-up's end, then anneals far below
        peak = rates.values.index(max(rates.values))
        assert peak == BATCHES_PER_EPOCH - 1  # torch ends the ramp at step pct_start * total - 1
        assert max(rates.values) == pytest.approx(LR)
        assert rates.values[0] < LR / 10 and rates.values[-1] < LR / 100
    else:
        assert rates.values == pytest.approx(expected, rel=1e-6)


def trainer_optimizer(model: InvarianceClassifier) -> torch.optim.Optimizer:
    return model.trainer.optimizers[0]


class LoggedConsistency(Callback):
    """The epochs whose validation logged ``val/consistency``."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (
            "val/consistency" in trainer.callback_metrics
            and pl_module.val_consistency.update_called
        ):
            self.epochs.append(trainer.current_epoch)


@pytest.mark.parametrize(("every", "measured"), [(1, [0, 1, 2, 3, 4]), (2, [1, 3, 4]), (5, [4])])
@pytest.mark.parametrize("budget", ["epochs", "steps"])
def test_consistency_is_measured_every_n_epochs_and_on_the_last(
    every: int, measured: list[int], budget: str
) -> None:
    """The last validated epoch measures it whether the budget is 5 epochs or a step budget
    that ends one step into a sixth epoch (which is never validated)."""
    seed_everything(0)
    logged = LoggedConsistency()
    train, val = loaders()
    run = (
        trainer(5, logged)
        if budget == "epochs"
        else trainer(-1, logged, max_steps=5 * BATCHES_PER_EPOCH + 1)
    )
    run.fit(small_model(consistency_every_n_epochs=every), train, val)
    assert logged.epochs == measured


def test_skipping_the_consistency_pass_leaves_the_training_unchanged() -> None:
    """What lets the comparisons measure it every 5th epoch only: its offsets are keyed, so
    the draws of the training (shuffle, augmentation, dropout) do not depend on it."""
    weights = []
    for every in (1, 5):
        seed_everything(0)
        model = small_model(consistency_every_n_epochs=every, head="mlp")  # with dropout
        train, val = loaders()
        shuffled = DataLoader(train.dataset, batch_size=BATCH, shuffle=True)  # torch's RNG
        trainer(3).fit(model, shuffled, val)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_checkpoint_rng_state_makes_the_next_draws_repeat() -> None:
    """What ``--resume`` relies on: the saved states give the same draws after a restore."""
    model = small_model()
    seed_everything(3)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    seed_everything(99)  # the resumed process starts from other states
    resumed = small_model()
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()  # where a resumed run applies them
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_checkpoint_rng_state_loads_with_weights_only(tmp_path) -> None:
    checkpoint: dict = {}
    small_model().on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "state.ckpt")
    loaded = torch.load(tmp_path / "state.ckpt", weights_only=True)
    assert set(loaded["rng_states"]) >= {"torch", "numpy", "python"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "adam"}, "unknown optimizer 'adam'"),
        ({"scheduler": "linear"}, "unknown scheduler 'linear'"),
        ({"consistency_every_n_epochs": 0}, "consistency_every_n_epochs"),
    ],
)
def test_bad_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_model(**options)


def test_channels_last_trains_the_same_network_in_channels_last_memory() -> None:
    logits, weights = {}, {}
    for channels_last in (False, True):
        seed_everything(0)
        model = small_model(channels_last=channels_last)
        train, val = loaders()
        trainer(1, LearningRates()).fit(model, train, val)
        convs = [p for p in model.net.parameters() if p.ndim == 4]
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert convs and all(p.is_contiguous(memory_format=layout) for p in convs)
        # a one-channel kernel is both; the others are channels-last only when asked
        assert any(p.is_contiguous() for p in convs[1:]) != channels_last
        weights[channels_last] = torch.cat([p.detach().flatten() for p in convs])
        x = next(iter(val))[0]
        logits[channels_last] = model(x).detach()
    # The same steps in another memory order: equal up to float rounding.
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[True], logits[False], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compile_trains_the_same_network_with_the_same_weight_names() -> None:
    """``compile=True`` runs the network through torch.compile (a real compilation of the
    forward and backward): the same steps give the same losses and weights up to float
    rounding, and the state dict, hence every checkpoint, keeps the eager network's names."""
    losses, weights, names = {}, {}, {}
    for compiled in (False, True):
        seed_everything(0)
        model = small_model(compile=compiled).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        losses[compiled] = []
        for x, y in loaders()[0]:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[compiled].append(loss.item())
        names[compiled] = list(model.state_dict())
        weights[compiled] = torch.cat([p.detach().flatten() for p in model.net.parameters()])
    assert names[True] == names[False]
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(weights[True], weights[False], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("downsample", list(DOWNSAMPLERS))
def test_compile_defaults_to_the_methods_measured_choice(downsample: str) -> None:
    """``compile=None`` takes the downsampling method's choice and saves it, so a checkpoint
    reloads compiled as it trained; an explicit value wins."""
    expected = DOWNSAMPLERS[downsample].compile
    for given, chosen in ((None, expected), (not expected, not expected)):
        model = InvarianceClassifier(in_channels=3, downsample=downsample, compile=given)
        assert model.hparams.compile is chosen
        assert (model.net._compiled_call_impl is not None) is chosen
        assert InvarianceClassifier(**model.hparams).hparams.compile is chosen


def test_every_network_option_is_a_classifier_parameter_with_its_default() -> None:
    """The classifier's flat signature (what the CLI and configs show) and NetOptions agree:
    each field is a parameter with the field's default, and the model builds them once."""
    from dataclasses import fields

    from invariance_recipes.lightning_modules.nets import DEFAULTS, NetOptions

    parameters = inspect.signature(InvarianceClassifier.__init__).parameters
    for option in fields(NetOptions):
        assert option.name in parameters, option.name
        assert parameters[option.name].default == getattr(DEFAULTS, option.name), option.name
    model = small_model(head="gap", padding_mode="circular")
    assert model.net_options == NetOptions(head="gap", padding_mode="circular", widths=(4, 8))


@pytest.mark.parametrize("downsample", list(DOWNSAMPLERS))
def test_memory_layout_defaults_to_the_methods_measured_choice(downsample: str) -> None:
    """``channels_last=None`` takes the downsampling method's choice and saves it, so a
    checkpoint reloads in the layout it trained in; an explicit value wins."""
    expected = DOWNSAMPLERS[downsample].channels_last
    for given, layout in ((None, expected), (not expected, not expected)):
        model = InvarianceClassifier(in_channels=3, downsample=downsample, channels_last=given)
        assert model.hparams.channels_last is layout
        conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) is layout
        assert conv.weight.is_contiguous() is not layout
        reloaded = InvarianceClassifier(**model.hparams)
        assert reloaded.hparams.channels_last is layout


def test_micro_batches_split_only_where_the_parts_compute_the_whole_batchs_function() -> None:
    """A batch larger than ``micro_batch`` runs in parts (counted by a hook on the network):
    in evaluation for every network, in training only without BatchNorm on batch statistics
    (a BatchNorm network in training sees the whole batch, which its statistics need). The
    logits, and in training the gradients, equal those of the whole batch at once."""
    x = torch.randn(21, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(21) % 10
    calls: list[int] = []
    for downsample, norm_couples in (("max", True), ("alias-free", False)):
        torch.manual_seed(0)
        split = small_model(in_channels=3, downsample=downsample, micro_batch=8)
        whole = small_model(in_channels=3, downsample=downsample, micro_batch=0)
        whole.load_state_dict(split.state_dict())
        split.net.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
        for training in (False, True):
            split.train(training), whole.train(training)
            logits, reference = split(x), whole(x)
            parts = [21] if training and norm_couples else [8, 8, 5]
            assert calls == parts, (downsample, training)
            calls.clear()
            torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)
            if training:
                for model, out in ((split, logits), (whole, reference)):
                    model.zero_grad()
                    torch.nn.functional.cross_entropy(out, y).backward()
                for p, q in zip(split.parameters(), whole.parameters(), strict=True):
                    torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("downsample", list(DOWNSAMPLERS))
def test_micro_batch_defaults_to_the_methods_pixel_budget(downsample: str) -> None:
    """``micro_batch=None`` takes the method's measured budget of first-stage values per
    forward pass, in images of the model's size and first-stage width, and saves it; an
    explicit value wins; a negative one is refused in one line that names the option."""
    values = DOWNSAMPLERS[downsample].micro_batch_values
    for side, widths in ((32, (32, 64)), (48, (32, 64)), (16, (4, 8)), (224, (512, 512))):
        images = max(1, values // (widths[0] * side**2))
        model = InvarianceClassifier(
            in_channels=3, downsample=downsample, image_size=side, widths=widths
        )
        assert model.hparams.micro_batch == images
        assert InvarianceClassifier(**model.hparams).hparams.micro_batch == images
    assert (values // (32 * 32**2), values // (4 * 16**2)) in ((32, 1024), (16, 512))
    assert InvarianceClassifier(downsample=downsample, micro_batch=5).hparams.micro_batch == 5
    with pytest.raises(ValueError, match=r"^micro_batch must be .*\(--model\.micro_batch\)$"):
        InvarianceClassifier(downsample=downsample, micro_batch=-1)
