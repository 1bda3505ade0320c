"""How much of a site's images can an attacker rebuild from its spectral upload?

The attacker (an honest-but-curious server) knows the shared tokenizer and receives the site's
per-class token centroids. For each centroid it optimises an image so that the tokenizer maps it
onto the centroid, then we compare that image with every true training image of the class
(best and mean PSNR/SSIM, MONAI metrics). Two references on the same images: a flat image at the
class's mean intensity, which the attacker does not know (the best it could do with no spectral
information but perfect intensity knowledge), and the same attack on DP-noised centroids
(``SpectralTokenPrivacy``).

Beside them, FedDG-ELCFS's upload: per-image low-band amplitude spectra (``feddg_elcfs``'s
``upload_meta``: 1/8 of the images). For each of ``--amplitude-images`` of them the attacker optimises
an image whose low-band amplitude matches (phase retrieval by gradient descent), at our default window
(``band_ratio`` 0.003: the zero frequency alone at 32 px), at a 7x7 window (0.1) and with the full
amplitude spectrum (what FedDG's own code stores for the other sites); the rows compare the result with
every image of the site, its own source image included.

    python benchmarks/reconstruction_attack.py --modality CT --steps 300

Writes ``runs/benchmarks/privacy/{results.json,results.md}``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from _common import benchmark_parser, cpu_name, write_report
from monai.metrics import PSNRMetric, SSIMMetric

from omnifm_monai.data.phantom import generate_anatomy, render
from omnifm_monai.flare.payload import spectral_centroids
from omnifm_monai.flare.privacy import SpectralTokenPrivacy
from omnifm_monai.networks import OmniFMClassifier
from omnifm_monai.spectral_augment import amplitude_phase, low_band_amplitude
from omnifm_monai.strategies import FedDGELCFS

__all__ = ["compare", "main", "reconstruct", "reconstruct_from_amplitude"]

AMPLITUDE_UPLOADS = {
    "FedDG low band 0.003 (default)": 0.003,
    "FedDG low band 0.1 (7x7)": 0.1,
    "FedDG full amplitude": None,
}


def reconstruct(tokenizer: torch.nn.Module, target: torch.Tensor, shape: tuple[int, ...], steps: int, seed: int):
    """Optimise an image in [0, 1] whose token matches ``target`` (d_s,); returns (C, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((1, *shape), generator=generator).mul_(0.1).requires_grad_(True)  # (1, C, H, W)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((tokenizer(torch.sigmoid(logits))[0] - target) ** 2).sum()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(logits)[0].detach()


def reconstruct_from_amplitude(
    target: torch.Tensor, shape: tuple[int, ...], band_ratio: float | None, steps: int, seed: int
):
    """Optimise an image in [0, 1] whose (low-band, or full with None) amplitude matches ``target``; (C, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((1, *shape), generator=generator).mul_(0.1).requires_grad_(True)  # (1, C, H, W)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        image = torch.sigmoid(logits)
        amplitude = amplitude_phase(image)[0] if band_ratio is None else low_band_amplitude(image, band_ratio)
        loss = ((torch.log1p(amplitude[0]) - torch.log1p(target)) ** 2).sum()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(logits)[0].detach()


def compare(candidate: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """Best and mean PSNR/SSIM of one candidate (C, H, W) against every image (N, C, H, W)."""
    repeated = candidate.unsqueeze(0).expand_as(images)
    psnr = PSNRMetric(max_val=1.0, reduction="none")(repeated, images).reshape(-1)
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(repeated, images).reshape(-1)
    return {"best_psnr": float(psnr.max()), "mean_psnr": float(psnr.mean()), "best_ssim": float(ssim.max()),
            "mean_ssim": float(ssim.mean())}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--num-images", type=int, default=240)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dp-noise", type=float, default=5.0)
    parser.add_argument("--amplitude-images", type=int, default=8, help="FedDG spectra attacked per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/benchmarks/privacy")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    anatomy = generate_anatomy(args.num_images, image_size=args.image_size, seed=args.seed, findings=(0, 2, 3))
    images = torch.as_tensor(render(anatomy, args.modality, seed=args.seed))  # (N, C, H, W)
    labels = anatomy.labels
    network = OmniFMClassifier(in_channels=images.shape[1], num_classes=6).eval()
    tokenizer = network.tokenizer
    for p in tokenizer.parameters():
        p.requires_grad_(False)
    uploads = {"centroids": spectral_centroids(network, images, labels)}
    uploads["centroids + DP"] = SpectralTokenPrivacy(noise_multiplier=args.dp_noise, seed=args.seed).privatize(
        uploads["centroids"]
    )
    classes = np.unique(labels)
    rows = []
    start = time.perf_counter()
    for name, tokens in uploads.items():
        for index, c in enumerate(classes):
            truth = images[torch.as_tensor(labels == c)]  # the class's images
            target = torch.as_tensor(tokens[index])
            image = reconstruct(tokenizer, target, tuple(images.shape[1:]), args.steps, args.seed)
            matched = float((tokenizer(image.unsqueeze(0))[0] - target).norm())  # how well the attack converged
            rows.append({"upload": name, "class": int(c), "token_distance": matched, **compare(image, truth)})
    # FedDG-ELCFS: the per-image amplitudes a site uploads (its strategy's own sample), attacked one by one
    picked = FedDGELCFS().upload_indices(len(images), seed=args.seed)[: args.amplitude_images]  # what a site sends
    for name, band in AMPLITUDE_UPLOADS.items():
        for index in picked.tolist():
            source = images[index : index + 1]  # (1, C, H, W)
            target = amplitude_phase(source)[0][0] if band is None else low_band_amplitude(source, band)[0]
            image = reconstruct_from_amplitude(target, tuple(images.shape[1:]), band, args.steps, args.seed)
            own = compare(image, source)
            rows.append({"upload": name, "image": index, "values_sent": int(target.numel()), **compare(image, images),
                         "own_psnr": own["best_psnr"], "own_ssim": own["best_ssim"]})  # fmt: skip
    for c in classes:  # reference: a flat image at the class's true mean intensity
        truth = images[torch.as_tensor(labels == c)]
        flat = torch.full(tuple(images.shape[1:]), float(truth.mean()))
        rows.append({"upload": "none (flat image at the true mean)", "class": int(c), **compare(flat, truth)})

    summary = {}
    for name in dict.fromkeys(r["upload"] for r in rows):
        mine = [r for r in rows if r["upload"] == name]
        summary[name] = {
            k: float(np.mean([r[k] for r in mine if k in r]))
            for k in ("best_psnr", "mean_psnr", "best_ssim", "mean_ssim", "own_psnr", "own_ssim")
            if any(k in r for r in mine)
        }
    meta = {"modality": args.modality, "images": args.num_images, "image_size": args.image_size,
            "steps": args.steps, "dp_noise": args.dp_noise, "seconds": time.perf_counter() - start,
            "machine": f"{cpu_name()}, {os.cpu_count()} CPUs"}  # fmt: skip
    lines = [
        "| attacker had | best PSNR dB | mean PSNR dB | best SSIM | mean SSIM | own image PSNR dB / SSIM |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {s['best_psnr']:.2f} | {s['mean_psnr']:.2f} | {s['best_ssim']:.3f} | {s['mean_ssim']:.3f} | "
            + (f"{s['own_psnr']:.2f} / {s['own_ssim']:.3f} |" if "own_psnr" in s else "- |")
            for name, s in summary.items()
        ],
    ]
    table = "\n".join(lines)
    report = {"settings": meta, "rows": rows, "summary": summary}
    markdown = f"# Reconstruction from the spectral upload\n\n{json.dumps(meta)}\n\n{table}\n"
    write_report(args.out, report, markdown, echo=table)


if __name__ == "__main__":
    main()
