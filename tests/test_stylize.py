"""Domain transfer stylisation (DTN, Taigman et al. 2017): the procedural cartoon domain, the networks'
losses and labels, and the training's files and resume, with tiny networks (f included) on real crops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.stylize.cartoon import cartoon
from pipeline.stylize.dtn import (
    D_SOURCE_DRAWN,
    D_TARGET_DRAWN,
    D_TARGET_REAL,
    ChipFeatures,
    DTNConfig,
    StyleDrawer,
    ThreeWayDiscriminator,
    colour_loss,
    const_loss,
    discriminator_loss,
    generator_gan_loss,
    map_on_crop,
    tid_loss,
    tv_loss,
)
from pipeline.stylize.dtn_train import (
    DTNSettings,
    StylizerError,
    face_set,
    load_stylizer,
    new_state,
    to_tensor,
    train_step,
    train_stylizer,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyFeatures(nn.Module):
    """A frozen random f: a 4x4 map of 8 channels and a 16-d vector."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(11)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 16)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = F.adaptive_avg_pool2d(torch.tanh(self.conv(images)), 4)
        return m, self.fc(m.flatten(1))


def real_crops(folder: Path, size: int = 32) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    return np.stack(
        [cv2.resize(cv2.imread(str(f))[..., ::-1], (size, size), interpolation=cv2.INTER_AREA) for f in files]
    )


@pytest.fixture(scope="module")
def domains(crops, tmp_path_factory) -> tuple[Path, Path]:
    """Source: person a's crops; target: person b's, cartoon-filtered."""
    root = tmp_path_factory.mktemp("domains")
    target = root / "cartoon_b"
    target.mkdir()
    for f in sorted(crops["b"].glob("*.png")):
        cv2.imwrite(str(target / f.name), cartoon(cv2.imread(str(f))[..., ::-1])[..., ::-1])
    return crops["a"], target


def test_the_cartoon_look_is_flat_outlined_and_deterministic(crops):
    image = cv2.imread(str(sorted(crops["a"].glob("*.png"))[0]))[..., ::-1].copy()
    drawn = cartoon(image)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert np.array_equal(drawn, cartoon(image))
    # flat paint: a few levels per channel (plus the outlines' darker copies), against hundreds in the photo
    assert len(np.unique(drawn[..., 1])) <= 12 < len(np.unique(image[..., 1]))
    outline = (drawn.astype(int).sum(-1) < image.astype(int).sum(-1) // 2).mean()
    assert 0.01 < outline < 0.4
    with pytest.raises(ValueError, match="RGB uint8"):
        cartoon(image.astype(np.float32))


def test_the_discriminator_labels_are_the_papers():
    assert (D_SOURCE_DRAWN, D_TARGET_DRAWN, D_TARGET_REAL) == (0, 1, 2)

    class Oracle(nn.Module):  # knows each group by its constant value
        def forward(self, x):
            v = x.mean((1, 2, 3))
            return torch.stack([(v == -1).float(), (v == 0).float(), (v == 1).float()], 1) * 20

    a, b, c = torch.full((2, 3, 8, 8), -1.0), torch.zeros(3, 3, 8, 8), torch.ones(4, 3, 8, 8)
    assert discriminator_loss(Oracle(), a, b, c) < 1e-6  # source drawings 0, target drawings 1, real 2
    assert discriminator_loss(Oracle(), c, b, a) > 5
    assert generator_gan_loss(Oracle(), c[:2], c[:3]) < 1e-6  # g wants both drawings called real targets
    assert generator_gan_loss(Oracle(), a, b) > 5

    class PatchOracle(Oracle):  # the same verdicts, one per patch of a 4 x 4 grid
        def forward(self, x):
            return super().forward(x)[:, :, None, None].expand(-1, -1, 4, 4)

    assert (
        discriminator_loss(PatchOracle(), a, b, c) < 1e-6 and discriminator_loss(PatchOracle(), c, b, a) > 5
    )
    assert generator_gan_loss(PatchOracle(), c[:2], c[:3]) < 1e-6
    assert ThreeWayDiscriminator(64, patch=8)(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 8, 8)
    assert ThreeWayDiscriminator(64)(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="patch grid"):
        ThreeWayDiscriminator(64, patch=3)


def test_g_without_the_descriptor_ignores_it_and_draws_from_the_maps_layout():
    torch.manual_seed(0)
    m, v = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    plain = StyleDrawer(DTNConfig(32, 8, 4, 16, width=32))
    assert not torch.allclose(plain(m, v), plain(m, -v), atol=1e-4)  # the paper's g draws from the vector
    mapped = StyleDrawer(DTNConfig(32, 8, 4, 16, width=32, use_vector=False))
    assert mapped.stem[0].in_channels == 8
    assert torch.equal(mapped(m, v), mapped(m, -v))
    assert not torch.allclose(mapped(m, v), mapped(m.flip(-1), v), atol=1e-3)  # the layout draws
    # a config from before the flags reads as the paper's g; the flags survive the round trip
    old = {k: w for k, w in plain.cfg.to_dict().items() if k != "use_vector"}
    assert DTNConfig.from_dict(old) == plain.cfg
    assert DTNConfig.from_dict(mapped.cfg.to_dict()) == mapped.cfg


def test_g_with_colours_draws_from_the_faces_colours_and_not_their_detail():
    torch.manual_seed(0)
    m, v = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
    faces = (torch.rand(2, 3, 1, 1) * 1.6 - 0.8 + torch.randn(2, 3, 32, 32) * 0.1).clamp(-1, 1)
    coloured = StyleDrawer(DTNConfig(32, 8, 4, 16, width=32, use_vector=False, colours=2))
    assert coloured.stem[0].in_channels == 8 + 3
    drawn = coloured(m, v, faces)
    assert not torch.allclose(drawn, coloured(m, v, faces.flip(1)), atol=1e-4)  # another colour, drawn
    # detail below the colours' 16 px cells (the means kept) does not reach g
    cells = faces.reshape(2, 3, 2, 16, 2, 16)
    shuffled = cells[:, :, :, torch.randperm(16)][..., torch.randperm(16)].reshape(2, 3, 32, 32)
    assert torch.allclose(drawn, coloured(m, v, shuffled), atol=1e-5)
    with pytest.raises(ValueError, match="give it the faces"):
        coloured(m, v)
    plain = StyleDrawer(DTNConfig(32, 8, 4, 16, width=32, use_vector=False))  # takes and ignores them
    assert torch.equal(plain(m, v), plain(m, v, faces))
    old = {k: w for k, w in plain.cfg.to_dict().items() if k != "colours"}  # a file from before: none
    assert DTNConfig.from_dict(old) == plain.cfg
    assert DTNConfig.from_dict(coloured.cfg.to_dict()) == coloured.cfg
    with pytest.raises(ValueError, match="colours at 3 px"):
        DTNConfig(32, 8, 4, 16, colours=3)


def test_the_saved_g_is_a_moving_average_that_halves_its_distance_each_half_life():
    from pipeline.stylize.dtn_train import update_average

    cfg = DTNConfig(32, 8, 4, 16, width=32)
    torch.manual_seed(0)
    g, avg = StyleDrawer(cfg), StyleDrawer(cfg)

    def distance():
        return sum((a - b).square().sum() for a, b in zip(avg.parameters(), g.parameters(), strict=True))

    before = distance()
    update_average(avg, g, 10, step=10**6)  # late in a run: 2 ** -(1/10) of the distance is left
    assert torch.isclose(distance().sqrt(), before.sqrt() * 0.5**0.1, rtol=1e-4)
    update_average(avg, g, 10, step=0)  # the first step keeps a tenth at most: the random start washes out
    assert distance().sqrt() < 0.11 * before.sqrt()
    update_average(avg, g, 0, step=10**6)  # no average: the file holds g itself
    assert all(torch.equal(a, b) for a, b in zip(avg.parameters(), g.parameters(), strict=True))


def test_each_loss_moves_its_quantity_the_right_way(domains):
    source, target = (to_tensor(real_crops(d)) for d in domains)
    f = TinyFeatures().requires_grad_(False)
    cfg = DTNConfig(32, 8, 4, 16, width=32)

    def trained(loss_of, steps=30):
        torch.manual_seed(0)
        g = StyleDrawer(cfg)
        opt = torch.optim.Adam(g.parameters(), lr=2e-3)
        values = []
        for _ in range(steps):
            loss = loss_of(g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            values.append(float(loss.detach()))
        return values

    x, t = source[:8], target[:8]
    fx, ft = f(x), f(t)
    const = trained(lambda g: const_loss(fx, f(g(*fx)), 1.0))
    tid = trained(lambda g: tid_loss(g(*ft), t))
    tv = trained(lambda g: tv_loss(g(*fx)) + 0 * tid_loss(g(*ft), t), steps=10)
    colour = trained(lambda g: colour_loss(g(*fx), x, 4))
    # L_COLOUR sees the colours of 8 px cells, not what is inside them
    b = len(x)
    cells_flipped = x.reshape(b, 3, 4, 8, 4, 8).flip(-1).reshape(x.shape)
    assert float(colour_loss(cells_flipped, x, 4)) < 1e-10 < float(colour_loss(x.roll(8, -1), x, 4))
    for name, v in (("const", const), ("tid", tid), ("tv", tv), ("colour", colour)):
        assert v[-1] < 0.7 * v[0], (name, v[0], v[-1])
    # D learns to tell the three apart
    torch.manual_seed(0)
    g, D = StyleDrawer(cfg), ThreeWayDiscriminator(32, width=8)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3)
    with torch.no_grad():
        gx, gt = g(*fx), g(*ft)
    d = []
    for _ in range(30):
        loss = discriminator_loss(D, gx, gt, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        d.append(float(loss.detach()))
    assert d[-1] < 0.5 * d[0]


def test_a_training_step_updates_g_and_d_and_the_plain_autoencoder_leaves_d_alone(domains):
    f = TinyFeatures().requires_grad_(False)
    source, target = (face_set(to_tensor(real_crops(d)), f, torch.device("cpu")) for d in domains)
    s = DTNSettings(resolution=32, batch=4, width=32)
    state = new_state(f, np.eye(2, 3), s, torch.device("cpu"))
    assert state.g.cfg.colours == 4  # by default g reads the faces' colours at its map's size (4 px here)
    d0 = [p.clone() for p in state.D.parameters()]
    record = train_step(state, f, source, target, s)
    assert set(record) >= {"d", "gan", "const", "tid", "tv", "g"} and state.step == 1
    assert any(not torch.equal(a, b) for a, b in zip(d0, state.D.parameters(), strict=True))
    plain = DTNSettings(resolution=32, batch=4, width=32).with_weights({"gan": 0, "const": 0})
    state = new_state(f, np.eye(2, 3), plain, torch.device("cpu"))
    d0 = [p.clone() for p in state.D.parameters()]
    record = train_step(state, f, source, target, plain)
    assert "d" not in record and "gan" not in record and "const" not in record
    assert all(torch.equal(a, b) for a, b in zip(d0, state.D.parameters(), strict=True))
    with pytest.raises(StylizerError, match="unknown loss weights nope"):
        plain.with_weights({"nope": 1})
    coloured = DTNSettings(resolution=32, batch=4, width=32, colours=2)  # g reads the batch's colours
    state = new_state(f, np.eye(2, 3), coloured, torch.device("cpu"))
    assert state.g.cfg.colours == 2 and state.g.stem[0].in_channels == 8 + 3
    blind = new_state(f, np.eye(2, 3), replace(coloured, colours=0), torch.device("cpu"))
    assert blind.g.cfg.colours == 0 and blind.g.stem[0].in_channels == 8
    assert set(train_step(state, f, source, target, coloured)) >= {"d", "gan", "const", "tid", "tv"}
    with pytest.raises(StylizerError, match="--colours 8: colours at 8 px do not divide g's 4 px map"):
        new_state(f, np.eye(2, 3), DTNSettings(resolution=32, width=32, colours=8), torch.device("cpu"))


def test_training_resumes_exactly_and_writes_its_files(domains, tmp_path):
    source, target = domains
    s = DTNSettings(
        resolution=32,
        batch=4,
        width=32,
        ema_steps=2,
        colours=2,
        colour_weight=5,
        map_on_crop=True,
        off_chip="zero",
    )
    straight = train_stylizer([source], [target], tmp_path / "a", s, steps=4, features=TinyFeatures())
    train_stylizer([source], [target], tmp_path / "b", s, steps=2, features=TinyFeatures())
    resumed = train_stylizer(  # a resume without weights keeps those it was trained with, g's inputs and map
        [source],
        [target],
        tmp_path / "b",
        DTNSettings(resolution=32, batch=4, width=32, ema_steps=2, tid_weight=99),
        steps=4,
        resume=True,
        features=TinyFeatures(),
        keep_weights=True,
    )
    assert resumed.step == straight.step == 4
    for net in ("g", "g_ema"):
        for a, b in zip(
            getattr(straight, net).state_dict().values(),
            getattr(resumed, net).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b)
    assert [h["g"] for h in resumed.history] == [h["g"] for h in straight.history]
    for name in ("stylizer.pt", "training.pt", "preview.png", "loss.png"):
        assert (tmp_path / "b" / name).is_file()
    g, rest = load_stylizer(tmp_path / "b")
    assert g.cfg == straight.g.cfg and rest["meta"]["steps"] == 4
    assert rest["map_on_crop"] and rest["settings"]["colour_weight"] == 5  # kept by the resume
    assert rest["off_chip"] == "zero"
    # by default the map lies on the crop's grid and g reads colours at its map's size, saved as a number
    plain = DTNSettings(resolution=32, batch=4, width=32)
    train_stylizer([source], [target], tmp_path / "d", plain, steps=1, features=TinyFeatures())
    g_d, rest_d = load_stylizer(tmp_path / "d")
    assert g_d.cfg.colours == rest_d["settings"]["colours"] == 4 and rest_d["map_on_crop"]
    assert rest_d["off_chip"] == "edge"
    assert rest_d["settings"]["colour_weight"] == 50 and rest_d["settings"]["tv_weight"] == 30
    saved = list(g.state_dict().values())  # the file holds the average, not the last step's g
    assert all(torch.equal(a, b) for a, b in zip(saved, resumed.g_ema.state_dict().values(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(saved, resumed.g.state_dict().values(), strict=True))
    assert len(rest["meta"]["held_out"]) == len(list(source.glob("*.png"))) // 5
    # an --out that holds one already is refused without --resume; missing folders and files are named
    with pytest.raises(StylizerError, match="holds a stylizer already"):
        train_stylizer([source], [target], tmp_path / "b", s, steps=5, features=TinyFeatures())
    with pytest.raises(StylizerError, match="nope: folder of aligned crops not found"):
        train_stylizer([tmp_path / "nope"], [target], tmp_path / "c", s, steps=1, features=TinyFeatures())
    with pytest.raises(StylizerError, match="stylizer file not found"):
        load_stylizer(tmp_path / "c")
    with pytest.raises(StylizerError, match="--colours 8: colours at 8 px do not divide"):  # a 4 px map
        train_stylizer(
            [source], [target], tmp_path / "e", replace(s, colours=8), steps=1, features=TinyFeatures()
        )
    assert not (tmp_path / "e").exists()  # refused before anything is written
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(StylizerError, match=r"bad\.pt: not a readable stylizer file"):
        load_stylizer(tmp_path / "bad.pt")


def test_the_map_on_the_crops_grid_is_the_chips_map_where_each_cell_lies():
    """map_on_crop samples the chip's map at each crop cell's centre, through the crop -> chip affine."""
    chip = torch.arange(8.0).expand(1, 1, 8, 8)  # each cell's value is its column on the chip
    shift = torch.tensor([[1.0, 0.0, -4.0], [0.0, 1.0, -4.0]])  # the chip is crop pixels 4..11
    out = map_on_crop(chip, shift, chip_size=8, crop_size=16)  # 8 cells of 2 px: centres at 2j + 0.5
    assert out.shape == (1, 1, 8, 8)
    row = out[0, 0, 4]
    assert torch.allclose(row[2:6], torch.tensor([0.5, 2.5, 4.5, 6.5]))  # chip column 2j - 3.5
    assert row[0] == 0 and torch.all(out[0, 0, 0] == 0)  # off the chip: zero
    assert map_on_crop(torch.ones(1, 1, 17, 17), shift, 8, 16).shape[-1] == 16  # the power of two below
    # off_chip "edge": a cell off the chip reads the chip's nearest edge, so g's input has no step there
    edge = map_on_crop(chip + 1, shift, 8, 16, off_chip="edge")[0, 0]
    assert edge[4, 0] == 1 and edge[4, 7] == 8  # columns 0 and 7 of the chip, carried outward
    assert torch.equal(edge[0], edge[4]) and torch.allclose(edge[4, 2:6], row[2:6] + 1)
    with pytest.raises(ValueError, match="off_chip is one of zero, edge"):
        ChipFeatures(TinyFeatures(), np.eye(2, 3), lambda *a: a[0], off_chip="wrap")


def test_dlib_features_read_the_chip_of_real_aligned_crops(domains):
    """f as shipped: dlib's descriptor network on the chip placed from the source crops."""
    from pipeline.stylize.dtn_train import chip_affine, dlib_features

    crops = real_crops(domains[0], 64)
    transform = chip_affine(crops)
    f = dlib_features(transform, map_size=8)
    with torch.no_grad():
        m, v = f(to_tensor(crops[:4]))
    assert m.shape == (4, 128, 8, 8) and v.shape == (4, 128)
    # one person: her descriptors are close (dlib's 0.6), as on chips cut from each crop's own landmarks
    assert torch.cdist(v, v).max() < 0.6
    with torch.no_grad():  # an earlier stage's map: the same descriptor
        m17, v17 = dlib_features(transform, map_size=17)(to_tensor(crops[:4]))
    assert m17.shape == (4, 64, 17, 17) and torch.equal(v17, v)
    g = StyleDrawer(DTNConfig(64, 64, 16, 128, width=32))  # g pools the 17 px map to 16
    assert g(m17, v17).shape == (4, 3, 64, 64)
    with torch.no_grad():  # the map on the crop's grid: 16 px, nothing above the brows (off the chip)
        on_crop, v_crop = dlib_features(transform, map_size=17, on_crop=True)(to_tensor(crops[:4]))
    top = int(np.floor((-transform[1, 2] / transform[1, 1]) / 4))  # the cells above the chip's top edge
    assert on_crop.shape == (4, 64, 16, 16) and torch.equal(v_crop, v) and top >= 2
    assert on_crop[:, :, : top - 1].abs().max() == 0 and on_crop[:, :, 8].abs().mean() > 0
    assert g(on_crop, v_crop).shape == (4, 3, 64, 64)
    with pytest.raises(StylizerError, match="f has no 9 px feature map"):
        dlib_features(transform, map_size=9)
    with pytest.raises(StylizerError, match="dlib found faces on 0 of"):
        chip_affine(np.full((8, 64, 64, 3), 128, np.uint8))


# ---------------------------------------------------------------------------------------------------
# The stylise stage of a shot


def tiny_stylizer(folder: Path, crops_dir: Path, seed: int = 3) -> Path:
    """An untrained 32 px g for dlib's f (128-channel 8x8 map, 128-d descriptor), its chip placed from
    real crops: what the stage's plumbing needs."""
    from pipeline.stylize.dtn_train import chip_affine, save_stylizer

    torch.manual_seed(seed)
    g = StyleDrawer(DTNConfig(32, 128, 8, 128, width=32))
    folder.mkdir(parents=True, exist_ok=True)
    save_stylizer(
        folder / "stylizer.pt",
        g,
        chip_affine(real_crops(crops_dir, 32)),
        DTNSettings(resolution=32, feature_map=8),
        {},
    )
    return folder


def stylize_manifest(
    folder: Path, clip: Path, model: Path, composite: str = "{blend: alpha, grain: false}"
) -> Path:
    from conftest import write_manifest

    return write_manifest(
        folder,
        f"""
shot: sty010
plate: {{movie: {clip}}}
frames: 1001-1006
output: {{sequence: png8, movies: [], chunk_size: 3}}
faces: {{crop_size: 64}}
stylize: {{model: {model}, strength: 1.0}}
composite: {composite}
""",
    )


def test_the_stylize_demo_renders_caches_its_drawings_and_says_so(tmp_path, footage, crops, prefect_server):
    """The demo as shipped, with a tiny stylizer in models/ standing in for the one the README trains."""
    import json

    from pipeline.cli import main
    from pipeline.manifest import load_shot
    from pipeline.shot.stages import stage_keys

    shipped = Path(__file__).resolve().parents[1] / "shots" / "stylize" / "demo_stylize.yaml"
    shots = tmp_path / "shots" / "stylize"
    shots.mkdir(parents=True)
    tiny_stylizer(tmp_path / "models" / "demo_sty", crops["a"])
    text = shipped.read_text().replace("../../../shared/footage", str(footage))
    assert "color:" not in text.split("composite:")[1]  # the cartoon's colours are the point
    m = shots / shipped.name
    m.write_text(text)
    assert main(["validate", str(m)]) == 0
    root = tmp_path / "render"
    render = ["render", str(m), "--root", str(root), "--frames", "1001-1006"]
    assert main(render) == 0
    v1 = root / "demo_stylize" / "v001"
    report = json.loads((v1 / "report.json").read_text())
    assert report["stylize"]["frames_stylised"] == 6 and report["stylize"]["strength"] == 1.0
    assert "stylised by a domain transfer network" in report["metadata"]["ai_altered_stages"]
    assert "stylize:" in report["metadata"]["models"]
    assert "## Stylisation" in (v1 / "report.md").read_text()
    cache = Path(report["stylize"]["cache"])
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
    assert len(stamps) == 6
    # a composite change re-composites from the cached drawings: nothing is drawn again
    m.write_text(text.replace("blend: laplacian", "blend: alpha"))
    keys = stage_keys(load_shot(m, "1001-1006"))
    assert main(render) == 0
    report = json.loads((root / "demo_stylize" / "v002" / "report.json").read_text())
    stylize = report["stages"]["stylize"]
    assert stylize["ran"] is False and stylize["key"] == keys["stylize"].key
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")} == stamps
    # another model file is another key
    tiny_stylizer(tmp_path / "models" / "demo_sty", crops["a"], seed=4)
    assert stage_keys(load_shot(m, "1001-1006"))["stylize"].key != keys["stylize"].key


def test_a_missing_damaged_or_foreign_stylizer_is_one_line_at_validate(
    tmp_path, woman_clip, crops, tiny_model, capsys
):
    from pipeline.cli import main
    from pipeline.stylize.dtn_train import save_stylizer

    def validate(model: Path) -> str:
        m = stylize_manifest(tmp_path, woman_clip, model)
        capsys.readouterr()
        assert main(["validate", str(m)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
        return err[0]

    line = validate(tmp_path / "nope")
    assert line.startswith(f"{tmp_path / 'shot.yaml'}:7 stylize.model: ")
    assert line.endswith("nope: stylizer file not found (vfx train stylize makes one)")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    g = StyleDrawer(DTNConfig(32, 128, 8, 128, width=32))
    save_stylizer(wrong / "stylizer.pt", g, np.eye(2, 3), DTNSettings(), {})
    data = torch.load(wrong / "stylizer.pt", weights_only=True)
    data["config"]["width"] = 64  # weights of one size, a config of another
    torch.save(data, wrong / "stylizer.pt")
    assert "a damaged stylizer file" in validate(wrong)
    # a g that draws from the 8 px map's 128 channels, in a file whose settings name the 17 px map
    save_stylizer(wrong / "stylizer.pt", g, np.eye(2, 3), DTNSettings(resolution=32, feature_map=17), {})
    assert validate(wrong).endswith(
        "a damaged stylizer file (its settings name f's 17 px map, with 64 channels; its g draws from 128)"
    )
    bad_edge = DTNSettings(resolution=32, feature_map=8, off_chip="wrap")  # what f reads off the chip
    save_stylizer(wrong / "stylizer.pt", g, np.eye(2, 3), bad_edge, {})
    assert validate(wrong).endswith("a damaged stylizer file (off_chip 'wrap')")
    assert validate(tiny_model / "swap.pt").endswith("not a stylizer file (vfx train stylize makes them)")


def test_train_stylize_runs_as_a_prefect_flow_and_bad_input_is_one_line(
    domains, tmp_path, prefect_server, capsys
):
    from pipeline.cli import main

    source, target = domains
    out = tmp_path / "sty"
    base = ["train", "stylize", "--source", str(source), "--target", str(target), "--out", str(out)]

    def run(argv):
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's errors
            code = e.code
        return code, *capsys.readouterr()

    cases = [
        (base, "give one of --steps or --minutes"),
        ([*base, "--steps", "2", "--minutes", "1"], "give one of --steps or --minutes"),
        ([*base, "--steps", "2", "--weights", "style=1"], "unknown loss weights style"),
        ([*base, "--steps", "2", "--res", "48"], "--res"),
        (
            [*base[:3], str(tmp_path / "nope"), *base[4:], "--steps", "2"],
            "nope: folder of aligned crops not found",
        ),
        ([*base, "--steps", "2", "--resume"], "no stylizer training state to resume"),
    ]
    for argv, expected in cases:
        code, _, err = run(argv)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not out.exists()
    paper_g = ["--g-input", "map+descriptor"]  # the non-default g, kept below
    code, stdout, err = run(
        [*base, "--steps", "3", "--res", "32", "--batch", "2", "--feature-map", "8", *paper_g]
    )
    assert code == 0, err
    assert f"{out}: step 3, " in stdout
    g, rest = load_stylizer(out)
    assert g.cfg.resolution == 32 and rest["meta"]["features"] == "dlib_descriptor"
    assert g.cfg.use_vector
    # g draws from the third stage's 8 px map (not the default 17), and the stage reads f at that map
    assert rest["feature_map"] == 8 and (g.cfg.feature_channels, g.cfg.feature_size) == (128, 8)
    from pipeline.shot.stylize import Stylizer

    drawn = Stylizer(out, "cpu")(real_crops(source, 32).astype(np.float32)[:2] / 255)
    assert drawn.shape == (2, 32, 32, 3)
    code, _, err = run([*base, "--steps", "4", "--resume"])  # a resume keeps the file's map
    assert code == 0, err
    g, rest = load_stylizer(out)
    assert rest["feature_map"] == 8 and g.cfg.feature_size == 8
    assert g.cfg.use_vector
    code, _, err = run([*base, "--steps", "3"])  # the folder holds one now
    assert code == 2 and "holds a stylizer already; use --resume" in err
    (tmp_path / "few").mkdir()
    for f in sorted(source.glob("*.png"))[:3]:
        (tmp_path / "few" / f.name).write_bytes(f.read_bytes())
    code, _, err = run([*base[:3], str(tmp_path / "few"), *base[4:-1], str(tmp_path / "o2"), "--steps", "1"])
    assert code == 2 and "3 source crops; give at least 4" in err and len(err.strip().splitlines()) == 1
