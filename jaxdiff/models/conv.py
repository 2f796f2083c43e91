"""A 2-D convolution whose kernel gradient is a few matrix products: faster on XLA:CPU.

XLA's CPU backward-filter convolution is 2-4x slower than its forward convolution for the
3x3, 128-256-channel layers of a DDPM U-Net. :func:`conv2d` is a drop-in
``jax.lax.conv_general_dilated`` (NHWC/HWIO, no dilation or feature groups) with the same
forward pass and input gradient, and the kernel gradient computed as ``kh`` matrix products.

It is chosen explicitly, never by the backend: ``UNet(matmul_kernel_grad=True)`` (the config
field ``model.matmul_kernel_grad``) builds every convolution of the network with it, or pass
it to any :class:`flax.linen.Conv` as ``conv_general_dilated=conv2d``. On GPUs and TPUs keep
XLA's own gradient (the default).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["MATMUL_MIN_PIXELS", "conv2d"]

_NHWC = ("NHWC", "HWIO", "NHWC")
# Below this many output pixels per image XLA:CPU's own kernel gradient is as fast (measured).
MATMUL_MIN_PIXELS = 32 * 32


def _xla_conv(x, kernel, strides, pads):
    return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


def kernel_grad_by_rows(x, g, kernel_shape, pads):
    r"""The kernel gradient of a stride-1 NHWC/HWIO convolution as ``kh`` matrix products:

    .. math:: \frac{\partial L}{\partial W_{ij}} = \sum_{b,h,w} x_{b,h+i,w+j}^\top
        \left(\frac{\partial L}{\partial y}\right)_{b,h,w}

    Args:
      x: the input [B, H, W, C_in].
      g: the output cotangent [B, H', W', C_out].
      kernel_shape: (kh, kw, C_in, C_out).
      pads: ((top, bottom), (left, right)).

    Returns:
      [kh, kw, C_in, C_out].
    """
    kh, kw, c_in, c_out = kernel_shape
    out_h = g.shape[1]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))  # [B, out_h + kh - 1, Wp, C_in]
    # Kernel column j sees xp shifted by j along W: pad g by (j, kw - 1 - j) there instead, so
    # that every kernel row i is one product of a contiguous slab of xp with all kw shifts of g.
    g_shifts = jnp.concatenate(
        [jnp.pad(g, ((0, 0), (0, 0), (j, kw - 1 - j), (0, 0))) for j in range(kw)], axis=-1
    ).reshape(-1, kw * c_out)  # [B * out_h * Wp, kw * C_out]
    rows = [g_shifts.T @ xp[:, i : i + out_h].reshape(-1, c_in) for i in range(kh)]
    return jnp.stack(rows).reshape(kh, kw, c_out, c_in).transpose(0, 1, 3, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv2d(x, kernel, strides, pads, min_pixels):
    return _xla_conv(x, kernel, strides, pads)


def _conv2d_fwd(x, kernel, strides, pads, min_pixels):
    return _xla_conv(x, kernel, strides, pads), (x, kernel)


def _conv2d_bwd(strides, pads, min_pixels, residuals, g):
    x, kernel = residuals
    _, vjp = jax.vjp(lambda x, kernel: _xla_conv(x, kernel, strides, pads), x, kernel)
    if strides != (1, 1) or g.shape[1] * g.shape[2] < min_pixels:
        return vjp(g)
    dx = vjp(g)[0]  # XLA keeps only the input gradient of this call
    return dx, kernel_grad_by_rows(x, g, kernel.shape, pads)


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(
    lhs,
    rhs,
    window_strides,
    padding,
    *,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    out_sharding=None,
    min_pixels: int = MATMUL_MIN_PIXELS,
):
    """``jax.lax.conv_general_dilated`` for NHWC/HWIO 2-D convolutions, same values and
    gradients; the kernel gradient of stride-1 convolutions with at least ``min_pixels``
    output pixels per image is :func:`kernel_grad_by_rows` (agrees to float rounding).

    Args:
      lhs: images, [B, H, W, C_in].
      rhs: kernel, [kh, kw, C_in, C_out].
      window_strides: (sh, sw).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      min_pixels: smaller outputs keep XLA's kernel gradient (0: always the matrix products).

    Returns:
      [B, H', W', C_out].
    """
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if dilated or feature_group_count != 1 or precision is not None or out_sharding is not None:
        raise ValueError(
            "conv2d: dilation, feature groups, precision and out_sharding are not supported, "
            f"got lhs_dilation={lhs_dilation}, rhs_dilation={rhs_dilation}, "
            f"feature_group_count={feature_group_count}, precision={precision}, "
            f"out_sharding={out_sharding}"
        )
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dn != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC):
        raise ValueError(f"conv2d: needs NHWC images and HWIO kernels, got {dimension_numbers}")
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    pads = tuple(tuple(int(p) for p in pair) for pair in padding)
    return _conv2d(lhs, rhs, tuple(window_strides), pads, int(min_pixels))
