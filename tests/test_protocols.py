"""Every preset of PROTOCOLS against a plain loop written from its authors' code.

Each reference below follows the cited file, except where the offsets come from: the authors
draw one offset per batch from numpy's RNG, the presets key them per image
(``sample_integers(view, high - low, seed * 1_000_003 + pass * 1_009 + copy) + low``), so the
references take the same keyed offsets image by image. Everything else (the canvas, the
slicing, the rolls, the padding, the agreement, the averaging) is written as the authors wrote
it. The model runs in float64 so that batching copies together cannot flip a prediction by
rounding.
"""

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invariance_recipes.lightning_modules.metrics import (
    PROTOCOLS,
    ProtocolReport,
    evaluate_protocols,
)
from invariance_recipes.lightning_modules.metrics.protocols import (
    headline_key,
    parse_protocols,
    protocol_columns,
    protocol_table,
)
from invariance_recipes.lightning_modules.nets import build_net
from invariance_recipes.lightning_modules.shifts import sample_integers

CANVAS, VIEW, CLASSES = 28, 24, 3
BATCH_SIZES = (7, 5, 4)  # uneven, so over-images and mean-of-batch-means differ
README = Path(__file__).resolve().parents[1] / "README.md"


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


def batches(
    sizes: tuple[int, ...] = BATCH_SIZES, canvas: int = CANVAS
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Smooth random canvases (bilinear 7x7 noise) and random labels."""
    generator = torch.Generator().manual_seed(1)
    return [
        (
            F.interpolate(
                torch.rand(n, 1, 7, 7, generator=generator, dtype=torch.float64),
                size=(canvas, canvas),
                mode="bilinear",
            ),
            torch.randint(0, CLASSES, (n,), generator=generator),
        )
        for n in sizes
    ]


def rebatched(size: int, data: list[tuple[torch.Tensor, torch.Tensor]]) -> list:
    """The same images and labels in batches of `size`."""
    images, labels = (torch.cat(parts) for parts in zip(*data, strict=True))
    return list(zip(images.split(size), labels.split(size), strict=True))


def centre(x: torch.Tensor) -> torch.Tensor:
    top = (x.shape[-1] - VIEW) // 2
    return x[:, :, top : top + VIEW, top : top + VIEW]


def preds(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def keyed(view: torch.Tensor, low: int, high: int, seed: int, copy: int, p: int = 0) -> list:
    """The preset's per-image offsets: (dy, dx) per image, keyed by its pixels."""
    key = seed * 1_000_003 + p * 1_009 + copy
    return (sample_integers(view, high - low, key) + low).tolist()


def measure(name: str, **kwargs) -> dict[str, float]:
    values = evaluate_protocols(small_model(), batches(**kwargs), [name], view_size=VIEW)
    for metric in PROTOCOLS[name].measure.metrics:  # the example is informative: no 0 or 1
        for key in (k for k in values if k.startswith(f"{name}/{metric}_")):
            assert "mac" in metric or 0 < values[key] < 1, key
    return {key: value.tolist() for key, value in values.items()}


def scaled(paper_range: int, paper_size: int) -> int:
    return max(1, round(paper_range * VIEW / paper_size))


def share(passed: int, total: int) -> float:
    return passed / total


@pytest.mark.parametrize("canvas", [CANVAS, 32])
@torch.no_grad()
def test_zhang2019_matches_validate_shift_at_zhangs_proportion(canvas: int) -> None:
    """Zhang's canvas is Resize(256) + CenterCrop(256) for a 224 view: here the centre
    round(V x 256/224) px of the test canvas, crops at corners randint(side - V) per axis."""
    model, side = small_model(), round(VIEW * 256 / 224)
    margin, origin = side - VIEW, (canvas - side) // 2
    agree = correct_agree = correct_pairs = pairs = 0
    for images, labels in batches(canvas=canvas):
        zhang = images[:, :, origin : origin + side, origin : origin + side]
        view = centre(images)
        clean = (preds(model, view) == labels).tolist()
        for ep in range(5):  # --epochs-shift 5
            off0, off1 = keyed(view, 0, margin, 0, 0, ep), keyed(view, 0, margin, 0, 1, ep)
            for i in range(len(images)):
                (t0, l0), (t1, l1) = off0[i], off1[i]
                out0 = preds(model, zhang[i : i + 1, :, t0 : t0 + VIEW, l0 : l0 + VIEW])
                out1 = preds(model, zhang[i : i + 1, :, t1 : t1 + VIEW, l1 : l1 + VIEW])
                same = bool(out0 == out1)
                agree, pairs = agree + same, pairs + 1
                if clean[i]:
                    correct_agree, correct_pairs = correct_agree + same, correct_pairs + 1
    values = measure("zhang2019", canvas=canvas)
    assert values["zhang2019/consistency_crop"] == pytest.approx(agree / pairs)
    assert values["zhang2019/consistency_among_correct_crop"] == pytest.approx(
        correct_agree / correct_pairs
    )
    assert values["zhang2019/n_crop"] == pairs == 5 * sum(BATCH_SIZES)
    assert values["zhang2019/n_among_correct_crop"] == correct_pairs


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


def aggregate(per_batch: list[tuple[int, int]], aggregation: str) -> float:
    """(passed, images) per batch, averaged over images or as the mean of batch means."""
    if aggregation == "over-images":
        return sum(p for p, _ in per_batch) / sum(n for _, n in per_batch)
    means = [p / n for p, n in per_batch if n]
    return sum(means) / len(means)


@torch.no_grad()
def roll_pairs_reference(
    copies: int, seed: int, low: int, high: int, aggregation: str
) -> tuple[float, float]:
    """Agreement of `copies` rolled copies, offsets in [low, high) keyed per image: over all
    images and over the correctly classified ones."""
    model = small_model()
    every, among_correct = [], []
    for images, labels in batches():
        view = centre(images)
        offsets = [keyed(view, low, high, seed, c) for c in range(copies)]
        clean = (preds(model, view) == labels).tolist()
        agree = []
        for i in range(len(view)):
            outs = [
                preds(model, torch.roll(view[i : i + 1], tuple(o[i]), dims=(2, 3))) for o in offsets
            ]
            agree.append(all(bool(out == outs[0]) for out in outs))
        every.append((sum(agree), len(agree)))
        among_correct.append((sum(a for a, c in zip(agree, clean, strict=True) if c), sum(clean)))
    return aggregate(every, aggregation), aggregate(among_correct, aggregation)


@pytest.mark.parametrize(
    ("name", "copies", "seed", "aggregation"),
    [
        ("aps-circular", 2, 0, "over-images"),  # main.py validate: randint(-32, 32), seed 0
        ("lps-nway", 3, 7, "over-images"),  # eval_consistency_step: N copies, --shift_seed 7
    ],
)
def test_circular_pairs_match_the_authors_validate(
    name: str, copies: int, seed: int, aggregation: str
) -> None:
    m = scaled(32, 224)
    expected, among = roll_pairs_reference(copies, seed, -m, m, aggregation)
    values = measure(name)
    assert values[f"{name}/consistency_circular"] == pytest.approx(expected)
    assert values[f"{name}/consistency_among_correct_circular"] == pytest.approx(among)
    assert values[f"{name}/n_circular"] == sum(BATCH_SIZES)


@torch.no_grad()
def test_aps_cifar_matches_evaluate_circular_and_evaluate_random_crop() -> None:
    m = scaled(3, 32)
    circular, _ = roll_pairs_reference(2, 0, -m, m, "mean-of-batch-means")
    model = small_model()
    batch_means = []
    for images, _ in batches():
        view = centre(images)
        s1, s2 = keyed(view, -m, m, 0, 0), keyed(view, -m, m, 0, 1)
        padded = F.pad(view, (m, m, m, m))
        agree = 0
        for i in range(len(view)):
            x1 = padded[i : i + 1, :, s1[i][0] + m : s1[i][0] - m, s1[i][1] + m : s1[i][1] - m]
            x2 = padded[i : i + 1, :, s2[i][0] + m : s2[i][0] - m, s2[i][1] + m : s2[i][1] - m]
            agree += int(preds(model, x1) == preds(model, x2))
        batch_means.append(agree / len(view))
    values = measure("aps-cifar")
    assert values["aps-cifar/consistency_circular"] == pytest.approx(circular)
    assert values["aps-cifar/consistency_pad-crop"] == pytest.approx(
        sum(batch_means) / len(batch_means)
    )


@torch.no_grad()
def test_tips_matches_evaluate_module() -> None:
    m = scaled(4, 32)
    model = small_model()
    expected = {}
    for source in ("pad-crop", "circular"):
        cons, stab = [], []
        for images, _ in batches():
            view = centre(images)
            offsets = [keyed(view, -m, m + 1, 42, c) for c in range(2)]
            agree = stable = 0
            for i in range(len(view)):
                image, shifted = view[i : i + 1], []
                for dy, dx in (o[i] for o in offsets):
                    if source == "circular":
                        shifted.append(torch.roll(image, (dy, dx), dims=(2, 3)))
                    else:  # RandomCrop(padding=m): the window's corner at (m + dy, m + dx)
                        padded = F.pad(image, (m, m, m, m))
                        shifted.append(padded[:, :, m + dy : m + dy + VIEW, m + dx : m + dx + VIEW])
                clean, first, second = preds(model, image), *(preds(model, s) for s in shifted)
                agree += int(first == second)
                stable += int((clean == first) & (first == second))
            cons.append(agree / len(view))
            stab.append(stable / len(view))
        expected[source] = (sum(cons) / len(cons), sum(stab) / len(stab))
    values = measure("tips")
    for source, (cons, stab) in expected.items():
        assert values[f"tips/consistency_{source}"] == pytest.approx(cons)
        assert values[f"tips/stability_{source}"] == pytest.approx(stab)
    assert headline_key("tips") == "tips/stability_pad-crop"


@torch.no_grad()
def test_afc_random_matches_evaluate_random_shift_metrics() -> None:
    m = scaled(32, 224)
    model = small_model()
    consistency, mac, accuracy, count = 0.0, 0.0, 0.0, 0
    for images, labels in batches():
        view = centre(images)
        shifts = keyed(view, 1, m, 0, 0)
        shifted = torch.cat(
            [torch.roll(view[i : i + 1], tuple(s), dims=(2, 3)) for i, s in enumerate(shifts)]
        )
        output, shifted_output = model(view), model(shifted)
        top = output.argmax(1, keepdim=True)
        pred1 = output.softmax(1).gather(1, top)
        pred2 = shifted_output.softmax(1).gather(1, top)
        consistency += (output.argmax(1) == shifted_output.argmax(1)).double().sum().item()
        mac += (pred1 - pred2).abs().sum().item()
        accuracy += (shifted_output.argmax(1) == labels).double().sum().item()
        count += len(images)
    values = measure("afc-random")
    assert values["afc-random/consistency_circular"] == pytest.approx(consistency / count)
    assert values["afc-random/mac_circular"] == pytest.approx(mac / count)
    assert values["afc-random/acc_shifted_circular"] == pytest.approx(accuracy / count)


@torch.no_grad()
def test_afc_worst_headline_is_shift_robust_score() -> None:
    """evaluate_full_adversarial_shift_metrics: correct unshifted and at every roll."""
    m = scaled(32, 224)
    model = small_model()
    robust_total = same_total = correct_total = same_correct = count = 0
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
        correct_total += int((clean == labels).sum())
        same_correct += int((same & (clean == labels)).sum())
        count += len(images)
    values = measure("afc-worst")
    assert values["afc-worst/worst_acc_circular"] == pytest.approx(robust_total / count)
    assert values["afc-worst/worst_consistency_circular"] == pytest.approx(same_total / count)
    assert values["afc-worst/worst_consistency_among_correct_circular"] == pytest.approx(
        same_correct / correct_total
    )
    assert values["afc-worst/acc_circular"] == pytest.approx(correct_total / count)
    assert values["afc-worst/n_circular"] == count
    assert protocol_columns("afc-worst")[:2] == [
        "afc-worst/worst_acc_circular",
        "afc-worst/worst_consistency_circular",
    ]


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
def test_afc_fractional_headline_is_sub_shift_robust_score_with_thirds_and_quarters() -> None:
    """evaluate_fraction_adversarial_shift_metrics with its default max_up = 4."""
    max_up = 4
    up_factors = [i for i in range(1, max_up + 1)]
    up_factors = [i for i in up_factors if not any(j > i and j % i == 0 for j in up_factors)]
    assert up_factors == [3, 4]
    model = small_model()
    robust_total = same_total = count = shifts = 0
    for images, labels in batches():
        view = centre(images)
        clean = preds(model, view)
        robust, same = clean == labels, torch.ones_like(labels, dtype=torch.bool)
        shifts = 0
        for up in up_factors:
            for shift_x in range(1, up):
                for shift_y in range(1, up):
                    out = preds(model, afc_subpixel_shift(view, up, shift_x, shift_y))
                    robust &= out == labels
                    same &= out == clean
                    shifts += 1
        robust_total += int(robust.sum())
        same_total += int(same.sum())
        count += len(images)
    assert shifts == 13  # 4 thirds and 9 quarters (halves among them)
    values = measure("afc-fractional")
    assert values["afc-fractional/worst_acc_fourier"] == pytest.approx(robust_total / count)
    assert values["afc-fractional/worst_consistency_fourier"] == pytest.approx(same_total / count)
    assert headline_key("afc-fractional") == "afc-fractional/worst_acc_fourier"


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
        for image, (dy, dx) in zip(view, keyed(view, -m, m + 1, 0, 0), strict=True):

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


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_numbers_and_outcomes_do_not_depend_on_the_batch_size(name: str) -> None:
    """Offsets are keyed per image: batches of 7 and of 64 give every image the same outcomes,
    so every number averaged over images is the same."""
    data, model = batches(sizes=(40, 31)), small_model()
    runs = []
    for size in (7, 64):
        report = ProtocolReport([name], view_size=VIEW, keep_outcomes=True)
        for images, labels in rebatched(size, data):
            report.update(model, images, labels)
        runs.append((report.compute(), report.take_outcomes()))
    (values7, outcomes7), (values64, outcomes64) = runs
    assert outcomes7.keys() == outcomes64.keys() and outcomes7
    for key, per_image in outcomes7.items():
        assert len(per_image) == 71
        torch.testing.assert_close(per_image, outcomes64[key], rtol=0, atol=1e-12)
    if PROTOCOLS[name].aggregation == "over-images":
        for key, value in values7.items():
            torch.testing.assert_close(value, values64[key], rtol=0, atol=1e-6)


@torch.no_grad()
def test_per_image_outcomes_are_the_numbers_image_by_image() -> None:
    names = ["zhang2019", "afc-worst", "zhang2019-diagonal", "azulay-weiss"]
    report = ProtocolReport(names, view_size=VIEW, keep_outcomes=True)
    model, data = small_model(), batches()
    for images, labels in data:
        report.update(model, images, labels)
    values, outcomes = report.compute(), report.take_outcomes()
    n = sum(BATCH_SIZES)
    assert outcomes["zhang2019/consistency_crop"].shape == (n, 5)  # one column per pass
    assert outcomes["afc-worst/worst_acc_circular"].shape == (n,)
    assert outcomes["zhang2019-diagonal/acc_vs_offset_crop"].shape == (n, CANVAS - VIEW + 1)
    assert outcomes["azulay-weiss/mac_axis_zero"].dtype == torch.float32
    for key, per_image in outcomes.items():  # a curve: per offset; else over images and passes
        mean = per_image.double().mean(dim=0 if "acc_vs_offset" in key else None)
        assert values[key].tolist() == pytest.approx(mean.tolist())
    correct = outcomes["zhang2019/acc_crop"]
    expected = torch.cat([preds(model, centre(images)) == labels for images, labels in data])
    assert torch.equal(correct, expected)
    among = outcomes["zhang2019/consistency_crop"][correct].double().mean()
    assert values["zhang2019/consistency_among_correct_crop"] == pytest.approx(float(among))
    assert report.take_outcomes() == {}  # taken once
    with pytest.raises(ValueError, match=r"keep_outcomes=True"):
        ProtocolReport(["tips"]).take_outcomes()


def test_circular_aps_gap_net_is_exactly_invariant_on_the_circular_protocols() -> None:
    torch.manual_seed(0)
    net = (
        build_net(
            in_channels=1,
            num_classes=CLASSES,
            image_size=VIEW,
            downsample="aps",
            head="gap",
            padding_mode="circular",
            widths=(4, 8, 8),
            mlp_hidden=(),
            dropout=0.0,
        )
        .double()
        .eval()
    )
    values = evaluate_protocols(
        net, batches(), ["aps-circular", "afc-random", "afc-worst"], view_size=VIEW
    )
    assert values["aps-circular/consistency_circular"] == 1.0
    assert values["afc-random/consistency_circular"] == 1.0
    assert values["afc-worst/worst_consistency_circular"] == 1.0
    # AFC's score of an exactly invariant net is its clean accuracy
    assert values["afc-worst/worst_acc_circular"] == values["afc-worst/acc_circular"]
    assert math.isclose(float(values["afc-random/mac_circular"]), 0.0, abs_tol=1e-9)
    # and the small non-invariant model is not
    small = evaluate_protocols(small_model(), batches(), ["afc-worst"], view_size=VIEW)
    assert small["afc-worst/worst_consistency_circular"] < 1.0


def test_report_reset_forgets_everything() -> None:
    report, model = ProtocolReport(["aps-circular"], view_size=VIEW), small_model()
    first = []
    for _ in range(2):
        for images, labels in batches():
            report.update(model, images, labels)
        first.append(report.compute()["aps-circular/n_circular"])
        report.reset()
    assert first == [sum(BATCH_SIZES)] * 2


def test_readme_protocol_table_is_the_registrys() -> None:
    block = re.search(
        r"<!-- registry:protocols -->\n(.*?)<!-- /registry:protocols -->", README.read_text(), re.S
    )
    assert block is not None, "README.md has no <!-- registry:protocols --> block"
    assert block[1] == protocol_table()
    assert all(f"| `{name}` |" in block[1] for name in PROTOCOLS)


def test_protocol_names_from_a_command_line() -> None:
    assert parse_protocols(["[zhang2019, afc-worst]"]) == ["zhang2019", "afc-worst"]
    assert parse_protocols(["zhang2019", "afc-worst,tips", "tips"]) == [
        "zhang2019",
        "afc-worst",
        "tips",
    ]
    with pytest.raises(ValueError, match=r"^unknown --protocols 'zhang2020': choose one of zh"):
        parse_protocols(["zhang2019", "zhang2020"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ProtocolReport(["zhang2020"]), r"unknown protocol 'zhang2020': choose one of"),
        (lambda: ProtocolReport(["tips", "tips"]), "names a protocol twice"),
        (
            lambda: evaluate_protocols(small_model(), batches(), ["zhang2019"], view_size=CANVAS),
            r"zhang2019 cuts 28-px windows.*--data.view_size",
        ),
        (
            lambda: evaluate_protocols(
                small_model(), batches(canvas=VIEW + 2), ["zhang2019"], view_size=VIEW
            ),
            r"zhang2019 moves a 24-px window by up to 3 px.*--data.canvas_size of at least 27",
        ),
    ],
)
def test_bad_input_is_one_line(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
