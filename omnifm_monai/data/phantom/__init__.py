"""Embedded multi-modality phantom: one synthetic anatomy, seven simulated scanners.

The phantom is the default data of every OmniFM-MONAI task. :func:`generate_anatomy` draws a batch of
abdomen-like anatomies (body ellipse with a subcutaneous fat rim, liver, two kidneys, a vertebra and, unless
the finding is ``"normal"``, a lesion inside the liver); :func:`render` images one anatomy through a
modality whose physics is imitated, not tuned for any learning method:

- ``CT``: Hounsfield units from a tissue table, sharp edges (partial volume only), Gaussian noise
  (about 12 HU), abdominal window L40/W400 mapped to [0, 1].
- ``MR-T1`` / ``MR-T2``: spin-echo signal ``PD * (1 - exp(-TR/T1)) * exp(-TE/T2)`` from per-tissue T1, T2
  and proton density (T1w TR/TE = 500/15 ms, T2w 4000/100 ms), smooth multiplicative bias field,
  scanner gain, Rician noise (magnitude of complex Gaussian noise).
- ``PET``: standardised uptake (SUV) map, area downsampling to half resolution with a Gaussian point
  spread function (sigma 2 px at 64 px), Poisson counting noise at a random dose, linear upsampling,
  SUV window [0, 7].
- ``XRAY``: 2D: every organ is an ellipsoid in the beam direction, the line integral of the linear
  attenuation coefficient (from HU; the excess of dense tissue doubled for radiography's lower effective
  energy) is summed over all overlapping organs, Beer-Lambert transmission with photon (Poisson-like)
  noise, log transform, slight detector blur, inverted display (bone white). Soft-tissue lesions are
  nearly invisible, as on a real radiograph; calcification is not.
  3D has no projection axis to spare: voxel ``(d, h, w)`` shows the attenuation accumulated by the
  beam from row 0 to row ``h`` (a depth-resolved radiograph; the last row is the full projection).
- ``US``: echogenicity table, specular echoes at interfaces, depth attenuation with time-gain
  compensation (so that low-attenuation cysts give posterior enhancement and calcification or bone casts
  an acoustic shadow), laterally correlated multiplicative Rayleigh speckle, log compression over a
  36 dB dynamic range, sector (cone) mask with the probe above row 0.
- ``PATHOLOGY``: H&E-like RGB by Beer-Lambert mixing of haematoxylin and eosin optical densities
  (Ruifrok-Johnston stain vectors), nuclei as small dark-purple dots whose density depends on tissue
  and finding, per-sample stain variation.

Every modality sees every finding, differently: a cyst is hypodense on CT, dark on T1, bright on T2,
cold on PET, invisible on X-ray, anechoic with posterior enhancement on US and acellular on pathology;
a solid tumour is slightly hypodense with a necrotic core, hot on PET, hypoechoic, hypercellular; and so
on (see :data:`LESION_PROPERTIES`). Lesion shape and internal structure (lobulation, necrotic core,
fluid-fluid level, soft oedema edge, clusters of specks) come from the anatomy and are shared by all
modalities. Labels, segmentation masks, HR/LR pairs (:func:`degrade`), co-registered pairs
(:func:`make_coregistered_pair`) and question-answer pairs (:func:`make_vqa_pairs`) all derive from the
same ground truth.

Anatomy: random rotation (+-15 degrees), scale, shift and a smooth displacement field; organ sizes,
positions and orientations jitter per sample. The displacement is additive-separable,
``u_i(p) = sum_j g_ij(p_j)`` with each ``g_ij`` two low-frequency sinusoids, so every warped coordinate is a
sum of 1D profiles and an organ costs five array operations. Findings (see ``_FINDING_SHAPES``): cyst,
1-2 round foci; solid tumour, lobulated, necrotic core in 3 of 4; calcification, 1-4 specks of at least
1.5 px radius; haemorrhage, with a horizontal fluid-fluid level (sedimented blood in the dependent part);
oedema, large with an ill-defined edge. Every focus is one connected blob and clears the kidneys, so
``lesion_count`` equals the number of connected components of the mask.

Everything is numpy only (no scipy: blur, resampling and interpolation are small matrices applied along
each axis), vectorised over the batch and computed in cache-sized chunks.

Speed of ``generate_anatomy`` + ``render`` on one core of this project's 2-core CPU machine (numpy 2.4,
single-threaded BLAS; 2048 samples, 64 x 64, 2D; median of 3 runs, counted per CPU-second because the
machine is shared), in samples per second: CT 6300, MR-T1 4900, MR-T2 5000, PET 5800, XRAY 4100,
US 4300, PATHOLOGY 4900 (anatomy alone 9200). 3D at 32^3: 560 (US) to 770 (PET) per second.

Modules: :mod:`.properties` (modalities, findings, tissues and their physical properties),
:mod:`.anatomy` (:func:`generate_anatomy`), :mod:`.scanners` (:func:`render`), :mod:`.products`
(:func:`make_phantom_dataset`, :func:`make_coregistered_pair`, :func:`degrade`) and :mod:`.vqa_pairs`
(:func:`make_vqa_pairs`); :mod:`.operators` holds the small separable matrices they share.
"""

from .anatomy import PhantomAnatomy, generate_anatomy
from .products import PhantomDataset, degrade, make_coregistered_pair, make_phantom_dataset
from .properties import FINDINGS, LESION_PROPERTIES, MAX_LESION_FOCI, MODALITIES, TISSUE_PROPERTIES, TISSUES
from .scanners import render
from .vqa_pairs import MODALITY_ANSWERS, appearance_answer, make_vqa_pairs

__all__ = [
    "MODALITIES",
    "FINDINGS",
    "TISSUES",
    "TISSUE_PROPERTIES",
    "LESION_PROPERTIES",
    "PhantomAnatomy",
    "PhantomDataset",
    "generate_anatomy",
    "render",
    "make_phantom_dataset",
    "make_coregistered_pair",
    "degrade",
    "make_vqa_pairs",
    "MODALITY_ANSWERS",
    "MAX_LESION_FOCI",
    "appearance_answer",
]
