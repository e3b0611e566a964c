"""
The local score: per-row PSNR, SSIM and Inception cosine, FID over the set, and the four [0, 1] terms of the
competitors' reconstruction (lower is better; ../shared/notes/competition.md):

    score = 0.25*mean(1/(1+PSNR)) + 0.25*mean(1-(SSIM+1)/2) + 0.25*mean((1-cos)/2) + 0.25*(1-1/(1+FID))

- PSNR on 0..255 RGB, over all pixels and channels; identical images give inf, whose term is 0.
- SSIM: the standard Wang et al. (2004) index, Gaussian window 11x11 with sigma 1.5, K1=0.01, K2=0.03, data range 255,
  computed on each RGB channel and averaged: torchmetrics' `structural_similarity_index_measure` (what the public
  reconstruction of the competition score called), reimplemented in float64 with a separable Gaussian (scipy.ndimage). RGB rather than luminance because the score is about the
  colour banner as delivered, and both PSNR and the reconstruction work on RGB.
- FID: Frechet distance between Gaussians fitted to the two sets of 2048-d features, in float64:
  |mu1-mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2). Only the TRACE of the matrix square root is needed, and with
  S1 = A'A, S2 = B'B (A, B the centred features / sqrt(n-1)) it equals the sum of the singular values of A B' (an
  n1 x n2 matrix): exact, real by construction, and about 1000x faster than scipy's sqrtm of the 2048x2048 product,
  which for a set smaller than 2048 images is singular (pytorch-fid then adds a 1e-6 diagonal offset and drops an
  imaginary part). method="sqrtm" computes it the pytorch-fid way; the tests check both agree. Fewer than 2 images have
  no covariance: it is taken as zero (the distance of the means).
"""
import warnings

import numpy as np


def psnr(pred, target):
    """PSNR in dB of two uint8 HxWx3 arrays on 0..255; inf when identical."""
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


SSIM_SIGMA, SSIM_KERNEL, SSIM_K1, SSIM_K2 = 1.5, 11, 0.01, 0.03


def ssim(pred, target):
    """SSIM (Gaussian 11, sigma 1.5, RGB channels averaged, data range 255) of two uint8 HxWx3 arrays; 1 when identical.

    The same computation as torchmetrics' structural_similarity_index_measure (reflect padding by 5 = scipy's "mirror",
    the mean of the full-size SSIM map; the tests check equality to 1e-10), in float64 with the Gaussian applied as two
    1-D passes: float32 loses the 4th digit on flat banner areas (identical images gave 0.99993), and torchmetrics'
    2-D float64 kernel is ~6x slower on the CPU.
    """
    from scipy import ndimage

    if pred.shape == target.shape and np.array_equal(pred, target):
        return 1.0
    half = SSIM_KERNEL // 2
    g = np.exp(-0.5 * (np.arange(-half, half + 1) / SSIM_SIGMA) ** 2)
    g /= g.sum()

    def blur(m):
        return ndimage.correlate1d(ndimage.correlate1d(m, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")

    x, y = pred.astype(np.float64), target.astype(np.float64)
    mu_x, mu_y = blur(x), blur(y)
    var_x = np.clip(blur(x * x) - mu_x ** 2, 0, None)
    var_y = np.clip(blur(y * y) - mu_y ** 2, 0, None)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * 255.0) ** 2, (SSIM_K2 * 255.0) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular-matrix warnings: handled below as pytorch-fid does
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        # a singular product (fewer images than dimensions): offset both diagonals, as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(covmean.imag))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            warnings.warn(f"FID: sqrtm has a large imaginary part ({imag:.3g}); keeping the real part")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_stats(features):
    features = np.asarray(features, dtype=np.float64)
    mu = features.mean(axis=0)
    if len(features) < 2:
        return mu, np.zeros((features.shape[1], features.shape[1]))
    return mu, np.cov(features, rowvar=False)


def _scaled_centred(features):
    """A with A'A = the sample covariance (zero for a single image)."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2:
        return np.zeros_like(x)
    return (x - x.mean(axis=0)) / np.sqrt(len(x) - 1)


def fid(pred_features, target_features, method="svd"):
    """FID between two (n, 2048) feature sets; >= 0 (tiny negative float noise is clipped)."""
    if method == "sqrtm":
        value = frechet_distance(*gaussian_stats(pred_features), *gaussian_stats(target_features))
    else:
        a, b = _scaled_centred(pred_features), _scaled_centred(target_features)
        diff = np.mean(pred_features, axis=0) - np.mean(target_features, axis=0)
        trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()  # Tr((S1 S2)^1/2), exactly
        value = float(diff @ diff + np.sum(a * a) + np.sum(b * b) - 2 * trace_sqrt)
    return max(0.0, value)


def psnr_term(psnr_db):
    return 0.0 if np.isinf(psnr_db) else 1.0 / (1.0 + psnr_db)


def ssim_term(ssim_value):
    return 1.0 - (ssim_value + 1.0) / 2.0


def inception_term(cos):
    return (1.0 - cos) / 2.0


def fid_term(fid_value):
    return 1.0 - 1.0 / (1.0 + fid_value)


def total_score(psnr_terms, ssim_terms, inception_terms, fid_value):
    """The four terms (each the mean over rows, FID's over the set) and their average: lower is better."""
    terms = {"psnr_term": float(np.mean(psnr_terms)), "ssim_term": float(np.mean(ssim_terms)),
             "inception_term": float(np.mean(inception_terms)), "fid_term": float(fid_term(fid_value))}
    terms["score"] = 0.25 * sum(terms.values())
    return terms
