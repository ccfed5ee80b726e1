"""Every preset of PROTOCOLS against a plain per-batch loop written from its authors' code.

Each reference below follows the cited file: numpy's ``randint`` becomes ``torch.randint`` on
the generator the preset names (seeded with ``seed + pass``), and everything else (the slicing,
the rolls, the padding, the agreement, the averaging) is written as the authors wrote it. The
model runs in float64 so that batching copies together cannot flip a prediction by rounding.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from invariance_recipes.lightning_modules.metrics import (
    PROTOCOLS,
    ProtocolReport,
    evaluate_protocols,
)
from invariance_recipes.lightning_modules.nets import build_net
from invariance_recipes.lightning_modules.shifts import sample_integers
from torch import nn

CANVAS, VIEW, CLASSES = 28, 24, 3
BATCH_SIZES = (7, 5, 4)  # uneven, so over-images and mean-of-batch-means differ


def small_model() -> nn.Module:
    """A stride-2 net with a flattening head: far from invariant, so numbers are not 0 or 1."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * (VIEW // 2) ** 2, CLASSES),
    )
    with torch.no_grad():  # zero-mean weights per class and channel, no bias: the logits
        weight = net[-1].weight.view(CLASSES, 4, -1)  # follow where things are
        weight.sub_(weight.mean(dim=2, keepdim=True)).mul_(2.0)
        net[-1].bias.zero_()
    return net.double().eval()


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Smooth random canvases (bilinear 7x7 noise) and random labels."""
    generator = torch.Generator().manual_seed(1)
    return [
        (
            F.interpolate(
                torch.rand(n, 1, 7, 7, generator=generator, dtype=torch.float64),
                size=(CANVAS, CANVAS),
                mode="bilinear",
            ),
            torch.randint(0, CLASSES, (n,), generator=generator),
        )
        for n in BATCH_SIZES
    ]


def centre(x: torch.Tensor) -> torch.Tensor:
    top = (CANVAS - VIEW) // 2
    return x[:, :, top : top + VIEW, top : top + VIEW]


def preds(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def measure(name: str) -> dict[str, float]:
    values = evaluate_protocols(small_model(), batches(), [name], view_size=VIEW)
    for key, value in values.items():  # the example is informative: no trivial 0 or 1
        if value.ndim == 0 and "/mac" not in key:
            assert 0 < value < 1, key
    return {key: value.tolist() for key, value in values.items()}


def scaled(paper_range: int, paper_size: int) -> int:
    return max(1, round(paper_range * VIEW / paper_size))


@torch.no_grad()
def test_zhang2019_matches_validate_shift() -> None:
    model, margin = small_model(), CANVAS - VIEW
    consist, count = 0.0, 0
    for ep in range(5):  # --epochs-shift 5
        rng = torch.Generator().manual_seed(0 + ep)
        for images, _ in batches():
            off0 = torch.randint(0, margin, (2,), generator=rng).tolist()
            off1 = torch.randint(0, margin, (2,), generator=rng).tolist()
            out0 = preds(model, images[:, :, off0[0] : off0[0] + VIEW, off0[1] : off0[1] + VIEW])
            out1 = preds(model, images[:, :, off1[0] : off1[0] + VIEW, off1[1] : off1[1] + VIEW])
            consist += (out0 == out1).double().mean().item() * len(images)  # AverageMeter
            count += len(images)
    assert measure("zhang2019")["zhang2019/consistency_crop"] == pytest.approx(consist / count)


@torch.no_grad()
def test_zhang2019_diagonal_matches_validate_diagonal() -> None:
    model, size = small_model(), CANVAS - VIEW + 1
    correct, count = torch.zeros(size), 0
    for images, labels in batches():
        for i in range(len(images)):  # batch size 1 in the authors' code
            image = images[i : i + 1]
            crops = torch.cat([image[:, :, o : o + VIEW, o : o + VIEW] for o in range(size)])
            correct += (preds(model, crops) == labels[i]).double()
            count += 1
    values = measure("zhang2019-diagonal")
    assert values["zhang2019-diagonal/acc_vs_offset_crop"] == pytest.approx(
        (correct / count).tolist()
    )
    assert values["zhang2019-diagonal/mean_acc_crop"] == pytest.approx((correct / count).mean())


def roll_pairs_reference(
    name: str, copies: int, seed: int, m: int, high: int, aggregate: str
) -> float:
    """Shifted vs shifted agreement of `copies` rolled copies, offsets randint(-m, high)."""
    model, rng = small_model(), torch.Generator().manual_seed(seed)
    total, weights = 0.0, 0
    for images, _ in batches():
        view = centre(images)
        shifts = [torch.randint(-m, high, (2,), generator=rng).tolist() for _ in range(copies)]
        outs = torch.stack([preds(model, torch.roll(view, s, dims=(2, 3))) for s in shifts])
        agree = (outs == outs[0]).all(dim=0).double().mean().item()
        weight = len(images) if aggregate == "over-images" else 1
        total, weights = total + agree * weight, weights + weight
    return total / weights


def test_aps_circular_matches_validate() -> None:
    m = scaled(32, 224)
    expected = roll_pairs_reference("aps-circular", 2, 0, m, m, "over-images")
    assert measure("aps-circular")["aps-circular/consistency_circular"] == pytest.approx(expected)


def test_lps_nway_matches_eval_consistency_step() -> None:
    m = scaled(32, 224)
    expected = roll_pairs_reference("lps-nway", 3, 7, m, m, "over-images")
    assert measure("lps-nway")["lps-nway/consistency_circular"] == pytest.approx(expected)


@torch.no_grad()
def test_aps_cifar_matches_evaluate_circular_and_evaluate_random_crop() -> None:
    m = scaled(3, 32)
    circular = roll_pairs_reference("aps-cifar", 2, 0, m, m, "mean-of-batch-means")
    model, rng = small_model(), torch.Generator().manual_seed(0)
    running, num_batches = 0.0, 0
    for images, _ in batches():
        view = centre(images)
        s1 = torch.randint(-m, m, (2,), generator=rng).tolist()
        s2 = torch.randint(-m, m, (2,), generator=rng).tolist()
        padded = F.pad(view, (m, m, m, m))
        x1 = padded[:, :, s1[0] + m : s1[0] - m, s1[1] + m : s1[1] - m]
        x2 = padded[:, :, s2[0] + m : s2[0] - m, s2[1] + m : s2[1] - m]
        running += (preds(model, x1) == preds(model, x2)).double().mean().item()
        num_batches += 1
    values = measure("aps-cifar")
    assert values["aps-cifar/consistency_circular"] == pytest.approx(circular)
    assert values["aps-cifar/consistency_pad-crop"] == pytest.approx(running / num_batches)


@torch.no_grad()
def test_tips_matches_evaluate_module() -> None:
    m = scaled(4, 32)
    model = small_model()
    expected = {}
    for source in ("pad-crop", "circular"):
        rng = torch.Generator().manual_seed(42)
        cons, stab, num_batches = 0.0, 0.0, 0
        for images, _ in batches():
            view = centre(images)
            shifted = []
            for _ in range(2):
                dy, dx = torch.randint(-m, m + 1, (2,), generator=rng).tolist()
                if source == "circular":
                    shifted.append(torch.roll(view, (dy, dx), dims=(2, 3)))
                else:  # RandomCrop(padding=m): the window's corner at (m + dy, m + dx)
                    padded = F.pad(view, (m, m, m, m))
                    shifted.append(padded[:, :, m + dy : m + dy + VIEW, m + dx : m + dx + VIEW])
            clean, first, second = preds(model, view), *(preds(model, s) for s in shifted)
            cons += (first == second).double().mean().item()
            stab += ((clean == first) & (first == second)).double().mean().item()
            num_batches += 1
        expected[source] = (cons / num_batches, stab / num_batches)
    values = measure("tips")
    for source, (cons, stab) in expected.items():
        assert values[f"tips/consistency_{source}"] == pytest.approx(cons)
        assert values[f"tips/stability_{source}"] == pytest.approx(stab)


@torch.no_grad()
def test_afc_random_matches_evaluate_random_shift_metrics() -> None:
    m = scaled(32, 224)
    model, rng = small_model(), torch.Generator().manual_seed(0)
    consistency, mac, accuracy, count = 0.0, 0.0, 0.0, 0
    for images, labels in batches():
        view = centre(images)
        shift = torch.randint(1, m, (2,), generator=rng).tolist()
        output, shifted_output = model(view), model(torch.roll(view, shift, dims=(2, 3)))
        top = output.argmax(1, keepdim=True)
        pred1 = output.softmax(1).gather(1, top)
        pred2 = shifted_output.softmax(1).gather(1, top)
        n = len(images)
        consistency += (output.argmax(1) == shifted_output.argmax(1)).double().sum().item()
        mac += (pred1 - pred2).abs().sum().item()
        accuracy += (shifted_output.argmax(1) == labels).double().sum().item()
        count += n
    values = measure("afc-random")
    assert values["afc-random/consistency_circular"] == pytest.approx(consistency / count)
    assert values["afc-random/mac_circular"] == pytest.approx(mac / count)
    assert values["afc-random/acc_shifted_circular"] == pytest.approx(accuracy / count)


@torch.no_grad()
def test_afc_worst_matches_evaluate_full_adversarial_shift_metrics() -> None:
    m = scaled(32, 224)
    model = small_model()
    robust_total, same_total, count = 0, 0, 0
    for images, labels in batches():
        view = centre(images)
        clean = preds(model, view)
        robust, same = clean == labels, torch.ones_like(labels, dtype=torch.bool)
        for shift_x in range(1, m):
            for shift_y in range(1, m):
                out = preds(model, torch.roll(view, (shift_x, shift_y), dims=(2, 3)))
                robust &= out == labels
                same &= out == clean
        robust_total += int(robust.sum())
        same_total += int(same.sum())
        count += len(images)
    values = measure("afc-worst")
    assert values["afc-worst/worst_acc_circular"] == pytest.approx(robust_total / count)
    assert values["afc-worst/worst_consistency_circular"] == pytest.approx(same_total / count)


def afc_subpixel_shift(images: torch.Tensor, up: int, shift_x: int, shift_y: int) -> torch.Tensor:
    """AFC's ideal sub-pixel shift: zero-insertion upsampling, the ideal reconstruction
    filter (half weight at the cutoff when N % 4 == 0), a roll by -shift, subsampling."""
    b, c, h, w = images.shape
    n = h * up
    upsampled = torch.zeros(b, c, n, w * up, dtype=images.dtype)
    upsampled[:, :, ::up, ::up] = images
    low, high = int((n / up) // 2), n - int((n / up) // 2)
    rect = torch.ones(n, dtype=images.dtype)
    rect[low + 1 : high] = 0
    if n % 4 == 0:
        rect[low] = rect[high] = 0.5
    spectrum = torch.fft.rfft2(upsampled) * (rect[:, None] * rect[None, :])[:, : n // 2 + 1]
    smooth = torch.fft.irfft2(spectrum, s=(n, n)) * up**2
    return torch.roll(smooth, (-shift_x, -shift_y), dims=(2, 3))[:, :, ::up, ::up]


@torch.no_grad()
def test_afc_fractional_matches_evaluate_fraction_adversarial_shift_metrics() -> None:
    model, up = small_model(), 4
    robust_total, same_total, count = 0, 0, 0
    for images, labels in batches():
        view = centre(images)
        clean = preds(model, view)
        robust, same = clean == labels, torch.ones_like(labels, dtype=torch.bool)
        for shift_x in range(1, up):
            for shift_y in range(1, up):
                out = preds(model, afc_subpixel_shift(view, up, shift_x, shift_y))
                robust &= out == labels
                same &= out == clean
        robust_total += int(robust.sum())
        same_total += int(same.sum())
        count += len(images)
    values = measure("afc-fractional")
    assert values["afc-fractional/worst_acc_fourier"] == pytest.approx(robust_total / count)
    assert values["afc-fractional/worst_consistency_fourier"] == pytest.approx(same_total / count)


@torch.no_grad()
def test_azulay_weiss_flip_rate_and_mac_from_random_starts() -> None:
    """The starts come from the preset's per-image key (the paper draws them at random);
    the shifts onto the black canvas, the flips and the MAC are computed here image by image."""
    m = scaled(4, 32)
    model = small_model()
    sums = {"axis": [0, 0.0], "diagonal": [0, 0.0]}
    count = 0
    for images, _ in batches():
        view = centre(images)
        starts = (sample_integers(view, 2 * m + 1, 0) - m).tolist()
        for image, (dy, dx) in zip(view, starts, strict=True):

            def at(oy: int, ox: int, image: torch.Tensor = image) -> torch.Tensor:
                padded = F.pad(image[None], (VIEW, VIEW, VIEW, VIEW))
                return padded[:, :, VIEW - oy : 2 * VIEW - oy, VIEW - ox : 2 * VIEW - ox]

            before = model(at(dy, dx)).softmax(1)[0]
            top = int(before.argmax())
            for step, (sy, sx) in (("axis", (0, 1)), ("diagonal", (1, 1))):
                after = model(at(dy + sy, dx + sx)).softmax(1)[0]
                sums[step][0] += int(after.argmax()) != top
                sums[step][1] += abs(float(before[top] - after[top]))
            count += 1
    values = measure("azulay-weiss")
    for step, (flips, change) in sums.items():
        assert values[f"azulay-weiss/flip_rate_{step}_zero"] == pytest.approx(flips / count)
        assert values[f"azulay-weiss/mac_{step}_zero"] == pytest.approx(change / count)
        assert 0 < flips < count  # the example is informative


def test_every_preset_has_a_reference_test_here() -> None:
    tested = {
        "zhang2019", "zhang2019-diagonal", "aps-circular", "aps-cifar", "lps-nway", "tips",
        "afc-random", "afc-worst", "afc-fractional", "azulay-weiss",
    }  # fmt: skip
    assert set(PROTOCOLS) == tested


def test_circular_aps_gap_net_is_exactly_invariant_on_the_circular_protocols() -> None:
    torch.manual_seed(0)
    net = build_net(
        in_channels=1, num_classes=CLASSES, image_size=VIEW, downsample="aps", head="gap",
        padding_mode="circular", widths=(4, 8, 8), mlp_hidden=(), dropout=0.0,
    ).double().eval()  # fmt: skip
    values = evaluate_protocols(
        net, batches(), ["aps-circular", "afc-random", "afc-worst"], view_size=VIEW
    )
    assert values["aps-circular/consistency_circular"] == 1.0
    assert values["afc-random/consistency_circular"] == 1.0
    assert values["afc-worst/worst_consistency_circular"] == 1.0
    assert math.isclose(float(values["afc-random/mac_circular"]), 0.0, abs_tol=1e-9)
    # and the small non-invariant model is not
    small = evaluate_protocols(small_model(), batches(), ["afc-worst"], view_size=VIEW)
    assert small["afc-worst/worst_consistency_circular"] < 1.0


def test_report_reset_restarts_the_draws() -> None:
    report, model = ProtocolReport(["aps-circular"], view_size=VIEW), small_model()
    first = []
    for _ in range(2):
        for images, labels in batches():
            report.update(model, images, labels)
        first.append(report.compute()["aps-circular/consistency_circular"])
        report.reset()
    assert first[0] == first[1]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ProtocolReport(["zhang2020"]), r"unknown protocol 'zhang2020': choose one of"),
        (lambda: ProtocolReport(["tips", "tips"]), "names a protocol twice"),
        (
            lambda: evaluate_protocols(small_model(), batches(), ["zhang2019"], view_size=CANVAS),
            r"zhang2019 cuts 28-px windows.*--data.view_size",
        ),
    ],
)
def test_bad_input_is_one_line(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
