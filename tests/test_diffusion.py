"""The DDIM scheduler and the diffusion loss against closed forms: the cosine schedule's alpha-bar, clean-sample
recovery, deterministic DDIM steps, sampling a Gaussian with its exact denoiser, SNR weighting."""
import math

import pytest
import torch

from ofasys_fs.diffusion import DDIMScheduler, corrupt, diffusion_loss


def cosine(fraction: float, offset: float = 0.008) -> float:
    return math.cos((fraction + offset) / (1 + offset) * math.pi / 2) ** 2


def test_alphas_cumprod_follow_the_cosine_schedule_in_closed_form():
    scheduler = DDIMScheduler(1000)
    expected = torch.tensor([cosine((t + 1) / 1000) / cosine(0) for t in range(999)], dtype=torch.float64)
    torch.testing.assert_close(scheduler.alphas_cumprod[:999], expected, rtol=1e-12, atol=1e-15)
    # the last beta is capped at 0.999 (alpha_bar(1) = 0 would make the last step undefined)
    assert scheduler.alphas_cumprod[999].item() == pytest.approx(expected[998].item() * 0.001, rel=1e-12)
    assert scheduler.alphas_cumprod[0].item() == pytest.approx(0.99996, abs=1e-5)  # nearly clean after one step
    assert scheduler.alphas_cumprod[499].item() == pytest.approx(cosine(0.5) / cosine(0), rel=1e-12)
    assert bool((scheduler.alphas_cumprod.diff() < 0).all())
    assert scheduler.alpha_bar(torch.tensor([-1])).item() == 1.0  # before the first step: the clean signal


def test_timesteps_are_evenly_spaced_from_the_noisiest():
    scheduler = DDIMScheduler(1000)
    assert scheduler.timesteps(50) == list(range(980, -1, -20))
    assert scheduler.timesteps(1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="num_inference_steps must be in 1..1000"):
        scheduler.timesteps(0)


def test_noise_and_clean_sample_are_recovered_and_ddim_steps_are_exact():
    scheduler = DDIMScheduler(1000)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 8, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(4, 8, 5, generator=generator, dtype=torch.float64)
    timesteps = torch.tensor([0, 250, 700, 999])
    noisy = scheduler.add_noise(clean, noise, timesteps)
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1)
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise)
    torch.testing.assert_close(scheduler.predicted_noise(noisy, clean, timesteps), noise, rtol=1e-9, atol=1e-9)
    # with the true clean sample a DDIM step lands exactly on the same noise at the earlier level
    row = noisy[2:3]
    stepped = scheduler.step(row, clean[2:3], 700, 680)
    level = scheduler.alphas_cumprod[680]
    torch.testing.assert_close(stepped, level.sqrt() * clean[2:3] + (1 - level).sqrt() * noise[2:3])
    torch.testing.assert_close(scheduler.step(row, clean[2:3], 700, -1), clean[2:3])  # the last step: x0 itself


def test_ddim_with_the_exact_denoiser_samples_the_data_distribution_deterministically():
    """Data N(mu, s^2): E[x0 | x_t] = mu + sqrt(a) s^2 / (a s^2 + 1 - a) (x_t - sqrt(a) mu), so DDIM must turn
    Gaussian noise into samples with mean mu and std s."""
    scheduler, mu, s = DDIMScheduler(1000), 1.5, 0.4

    def denoise(noisy, timesteps):
        a = scheduler.alpha_bar(timesteps).to(noisy.dtype).view(-1, 1)
        return mu + a.sqrt() * s**2 / (a * s**2 + 1 - a) * (noisy - a.sqrt() * mu)

    samples = scheduler.sample(denoise, (4000, 1), 50, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert samples.mean().item() == pytest.approx(mu, abs=0.03)
    assert samples.std().item() == pytest.approx(s, rel=0.05)
    again = scheduler.sample(denoise, (4000, 1), 50, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(samples, again)


def test_diffusion_loss_weights_by_snr_and_ignores_padded_frames():
    scheduler = DDIMScheduler(1000)
    clean = torch.zeros(2, 4, 3, dtype=torch.float64)
    predicted = torch.ones(2, 4, 3, dtype=torch.float64)
    timesteps = torch.tensor([10, 900])
    padding = torch.tensor([[False, False, False, True], [False, False, True, True]])
    loss = diffusion_loss(predicted, clean, timesteps, scheduler, padding)
    weight = 1 / (1 - scheduler.alphas_cumprod[timesteps]).sqrt()  # sqrt(SNR + 1)
    torch.testing.assert_close(loss, weight)
    changed = predicted.clone()
    changed[0, 3], changed[1, 2:] = 100.0, -50.0  # padded frames do not count
    torch.testing.assert_close(diffusion_loss(changed, clean, timesteps, scheduler, padding), loss)
    torch.testing.assert_close(diffusion_loss(2 * predicted, clean, timesteps, scheduler, kind="l2"), 4 * weight**2)
    assert diffusion_loss(clean, clean, timesteps, scheduler).abs().max() == 0
    with pytest.raises(ValueError, match='kind must be "l1" or "l2"'):
        diffusion_loss(predicted, clean, timesteps, scheduler, kind="huber")


def test_corrupt_draws_one_timestep_per_row_reproducibly():
    scheduler = DDIMScheduler(100)
    clean = torch.randn(64, 3, 2)
    noisy, timesteps = corrupt(clean, scheduler, torch.Generator().manual_seed(3))
    again, same_steps = corrupt(clean, scheduler, torch.Generator().manual_seed(3))
    assert timesteps.shape == (64,) and 0 <= timesteps.min() and timesteps.max() < 100
    assert torch.equal(noisy, again) and torch.equal(timesteps, same_steps)
    noise = scheduler.predicted_noise(noisy, clean, timesteps)
    torch.testing.assert_close(scheduler.add_noise(clean, noise, timesteps), noisy, rtol=1e-4, atol=1e-4)
