import numpy as np
import pytest
import torch

from engine.features import AUDIO_FEATURE_DIM
from trainer.config import ModelConfig
from trainer.model import LISTENER_DIM, ReactDiff

CFG = ModelConfig(window=16, d_model=32, heads=4, ae_width=32, latent_channels=8, dropout=0.0)


def inputs(b=2, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, w, AUDIO_FEATURE_DIM, generator=g),
        torch.randn(b, w, 58, generator=g),
        torch.ones(b, 2),
        torch.randn(b, w, LISTENER_DIM, generator=g),
        torch.ones(b, w),
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ReactDiff(CFG).eval()
    for p in m.parameters():  # adaLN starts at zero; give it weight so timestep effects are visible
        torch.nn.init.normal_(p, std=0.2) if p.dim() > 1 else None
    return m


def test_shapes(model):
    memory = model.condition(*inputs())
    assert memory.shape == (2, 32, 32)
    z = model.encode_listener(torch.randn(2, 16, LISTENER_DIM))
    assert z.shape == (2, 4, 8)
    style = model.style_of(torch.randn(2, CFG.style_frames, LISTENER_DIM))
    assert style.shape == (2, 32)
    assert model.denoiser(z, torch.tensor([0, 999]), memory, style, torch.zeros(2, 2)).shape == z.shape
    assert model.decode_listener(z).shape == (2, 16, LISTENER_DIM)


def test_condition_is_causal(model):
    audio, face, present, known, mask = inputs()
    a2, f2 = audio.clone(), face.clone()
    a2[:, 10:] += 5.0
    f2[:, 10:] -= 5.0
    with torch.no_grad():
        m1, m2 = model.condition(audio, face, present, known, mask), model.condition(a2, f2, present, known, mask)
        assert torch.allclose(m1[:, :10], m2[:, :10], atol=1e-5)  # speaker tokens before frame 10 unchanged
        assert not torch.allclose(m1[:, 10:16], m2[:, 10:16])
        # latent token 1 covers frames 4..7: its prediction must not see frames >= 8
        z, t = torch.randn(2, 4, 8), torch.tensor([500, 500])
        who = (model.null_style(2), torch.zeros(2, 2))
        v1, v2 = model.denoiser(z, t, m1, *who), model.denoiser(z, t, m2, *who)
        assert torch.allclose(v1[:, :2], v2[:, :2], atol=1e-5)
        assert not torch.allclose(v1[:, 3], v2[:, 3])
        # decoded frames 0..7 come from latent tokens 0 and 1 only
        z2 = z.clone()
        z2[:, 2:] += 1.0
        assert torch.allclose(model.decode_listener(z)[:, :8], model.decode_listener(z2)[:, :8], atol=1e-5)


def test_lookahead_lets_tokens_see_ahead():
    torch.manual_seed(0)
    m = ReactDiff(ModelConfig(**{**CFG.__dict__, "lookahead": 2})).eval()
    audio, face, present, known, mask = inputs()
    a2 = audio.clone()
    a2[:, 10] += 5.0
    with torch.no_grad():
        m1, m2 = m.condition(audio, face, present, known, mask), m.condition(a2, face, present, known, mask)
    assert torch.allclose(m1[:, :8], m2[:, :8], atol=1e-5)
    assert not torch.allclose(m1[:, 8], m2[:, 8])


def test_missing_modality_and_unknown_frames_ignore_their_values(model):
    audio, face, present, known, mask = inputs()
    present[:, 0] = 0.0  # audio-only call the other way round: no audio
    mask[:, 8:] = 0.0
    with torch.no_grad():
        m1 = model.condition(audio, face, present, known, mask)
        m2 = model.condition(
            audio * 0 + 3.0, face, present, known + torch.randn_like(known) * (1 - mask[..., None]), mask
        )
    assert torch.allclose(m1, m2, atol=1e-5)


def test_normalisers_round_trip(model):
    data = torch.randn(100, LISTENER_DIM) * 3 + 1
    model.listener_norm.fit(data)
    assert np.allclose(model.listener_norm.inverse(model.listener_norm(data)).numpy(), data.numpy(), atol=1e-4)


def test_who_listens_reaches_every_latent_token(model):
    memory = model.condition(*inputs())
    z, t = torch.randn(2, 4, 8), torch.tensor([500, 500])
    reference = torch.randn(2, CFG.style_frames, LISTENER_DIM)
    with torch.no_grad():
        null, styled = model.null_style(2), model.style_of(reference)
        base = model.denoiser(z, t, memory, null, torch.zeros(2, 2))
        assert not torch.allclose(base, model.denoiser(z, t, memory, styled, torch.zeros(2, 2)))
        livelier = torch.tensor([[0.5, 1.0], [0.5, 1.0]])
        assert (base - model.denoiser(z, t, memory, null, livelier)).abs().amax(dim=(0, 2)).min() > 1e-4
        ignored = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])  # not given: its value is ignored
        assert torch.equal(base, model.denoiser(z, t, memory, null, ignored))
        # a style is a summary over time: the order of the reference frames' stretches does not matter much,
        # but the motion inside them does (a still reference differs from a moving one)
        still = reference[:, :1].expand_as(reference)
        assert not torch.allclose(model.style_of(still), styled)
