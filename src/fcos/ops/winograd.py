"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016).

The FCOS head is eight 3x3 256->256 convolutions on every pyramid level; on a CPU they are most of a
training step. Winograd computes the same convolution with 36 instead of 144 multiplications per 4x4
output tile: each 6x6 input tile and each 3x3 filter are moved into a transformed domain (``B^T d B``,
``G g G^T``), multiplied there by 36 matrix products over channels, and moved back (``A^T m A``).
The backward pass is two more such products (input gradient: the same algorithm on the rotated,
transposed filter; filter gradient: transformed input x transformed output gradient).

fp32 results differ from direct convolution by a few 1e-6 relative to the output scale (direct
convolution itself is ~2e-6 away from float64); low precision (bf16/fp16) would amplify the
transforms' rounding, so :func:`supported` refuses it. Layout: NHWC internally, so channels_last
inputs are read without a copy and outputs come back channels_last.

Memory: the transformed tiles are produced one column (j) of the 6x6 tile at a time and consumed at
once, so scratch memory is ~3x the input instead of ~7x; nothing but the input is kept for backward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["WinogradFilter", "conv3x3", "conv3x3_graph", "graph_filter", "supported", "transform_filter"]

# G of F(4, 3) (interpolation points 0, +-1, +-2, inf); kron(G, G) maps a 3x3 filter to its 6x6 tile.
_G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    dtype=torch.float64,
)
_GG = torch.kron(_G, _G)  # [36, 9]
_GG_ROTATED = _GG.flip(1)  # the same map applied to the filter rotated by 180 degrees


class WinogradFilter:
    """A 3x3 filter [K, C, 3, 3] in the transformed domain, computed once and shared by all levels.

    ``u`` [36, C, K] is differentiable w.r.t. the filter. The rotated, transposed filter that the
    input gradient needs is built on first use in the backward pass (:class:`_Rotated`) rather than
    kept from the forward pass: either would be 4x the filter's size per layer.
    """

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight
        self.u = _transform(weight, _GG).transpose(1, 2)
        self.rotated = _Rotated(weight)


class _Rotated:
    """The [36, K, C] transform of the filter rotated by 180 degrees, channels swapped: computed by
    the first backward pass that needs it, shared by those of the other levels, and dropped after
    the last of them (autograd keeps each level's context until the whole graph is freed)."""

    def __init__(self, weight: Tensor) -> None:
        self.weight = weight
        self.pending = 0  # backward passes still to come
        self._value: Tensor | None = None

    def use(self) -> Tensor:
        value = self._value
        if value is None:
            with torch.no_grad():
                value = _transform(self.weight, _GG_ROTATED)
        self.pending -= 1
        self._value = value if self.pending > 0 else None
        return value


def _transform(weight: Tensor, gg: Tensor) -> Tensor:
    """[K, C, 3, 3] -> [36, K, C]."""
    k, c = weight.shape[:2]
    return (gg.to(weight) @ weight.reshape(k * c, 9).t()).view(36, k, c)  # weight's dtype and device


def supported(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`conv3x3` applies: 3x3 filters, float32/64 without autocast, no tracing."""
    # Exported graphs (ONNX / TorchScript) keep a plain Conv node.
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    if tuple(weight.shape[-2:]) != (3, 3) or x.dim() != 4 or x.dtype not in (torch.float32, torch.float64):
        return False
    return x.dtype == weight.dtype and not torch.is_autocast_enabled(x.device.type)


def transform_filter(weight: Tensor) -> WinogradFilter:
    """weight [K, C, 3, 3] -> :class:`WinogradFilter`."""
    return WinogradFilter(weight)


def conv3x3(x: Tensor, filt: WinogradFilter, bias: Tensor | None = None) -> Tensor:
    """x [N, C, H, W] -> [N, K, H, W] (channels_last): conv2d(x, weight, bias, stride=1, padding=1)."""
    return _Winograd3x3.apply(x, filt.u, filt.weight, bias, filt.rotated)


class _Winograd3x3(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, u: Tensor, weight: Tensor, bias: Tensor | None, rotated: _Rotated
    ) -> Tensor:
        # The weight is saved (not used) so that autograd's version check catches in-place updates.
        ctx.save_for_backward(x, weight)
        ctx.rotated = rotated
        rotated.pending += 1
        ctx.has_bias = bias is not None
        with torch.profiler.record_function("winograd_conv3x3"):
            return _conv_nhwc(x.permute(0, 2, 3, 1), u, bias).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        with torch.profiler.record_function("winograd_conv3x3_backward"):
            return _Winograd3x3._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, _ = ctx.saved_tensors
        grad_nhwc = grad_out.permute(0, 2, 3, 1)
        grad_x = grad_u = grad_bias = None
        # Filter gradient first: its scratch then does not coexist with the input gradient.
        if ctx.needs_input_grad[1]:
            # The input tiles are recomputed: keeping them from the forward pass would cost 2.25x x.
            grad_u = _filter_gradient(x.permute(0, 2, 3, 1), grad_nhwc)
        if ctx.needs_input_grad[0]:
            grad_x = _conv_nhwc(grad_nhwc, ctx.rotated.use(), None).permute(0, 3, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_nhwc.sum((0, 1, 2))
        # The filter's gradient reaches `weight` through `u`.
        return grad_x, grad_u, None, grad_bias, None


def _conv_nhwc(x: Tensor, u: Tensor, bias: Tensor | None) -> Tensor:
    """x [N, H, W, C], u [36, C, K] -> [N, H, W, K]."""
    n, h, w, c = x.shape
    k = u.shape[-1]
    th, tw = _tiles(h, w)
    u = u.view(6, 6, c, k)
    y: Tensor | None = None  # allocated once the first band's scratch is freed: a lower peak
    for t0, t1 in _bands(n, th, tw, max(c, k)):
        # One column j of the 6x6 transformed tiles at a time: B^T d B -> products -> A^T (.) along
        # i, so the [36, tiles, channels] arrays are never all in memory; then A^T along j.
        half = x.new_empty(4, 6, n, t1 - t0, tw, k)  # A^T m, indexed [a, j]
        products = None
        for j, v in _input_tile_columns(x, t0, t1):
            products = torch.bmm(v, u[:, j], out=products)  # [6 (i), tiles, K]
            _at(list(products.view(6, n, t1 - t0, tw, k)), half[:, j])
        del products
        if y is None:
            y = x.new_empty(n, th, 4, tw, 4, k)
        out = y[:, t0:t1]
        for a in range(4):
            _at(list(half[a]), [out[:, :, a, :, b] for b in range(4)])
    assert y is not None
    y = y.view(n, 4 * th, 4 * tw, k)
    if 4 * th != h or 4 * tw != w:
        y = y[:, :h, :w].contiguous()
    return y if bias is None else y.add_(bias)


def _filter_gradient(x: Tensor, grad: Tensor) -> Tensor:
    """x [N, H, W, C], grad [N, H, W, K] -> [36, C, K]: the sum over tiles of V^T (A grad A^T)."""
    n, h, w, c = x.shape
    k = grad.shape[-1]
    th, tw = _tiles(h, w)
    if 4 * th != h or 4 * tw != w:
        grad = torch.nn.functional.pad(grad, (0, 0, 0, 4 * tw - w, 0, 4 * th - h))
    grad = grad.reshape(n, th, 4, tw, 4, k)
    total = x.new_empty(6, 6, c, k)  # [j, i, C, K]
    for band, (t0, t1) in enumerate(_bands(n, th, tw, max(c, k))):
        g = grad[:, t0:t1]
        # A^T's adjoint along the output columns b -> j, for all j at once: [j, N, bt, 4 (a), Tw, K].
        half = g.new_empty(6, n, t1 - t0, 4, tw, k)
        _at_adjoint([g[..., b, :] for b in range(4)], half)
        column = g.new_empty(6, n, t1 - t0, tw, k)
        for j, v in _input_tile_columns(x, t0, t1):
            _at_adjoint([half[j][:, :, a] for a in range(4)], column)  # along a -> i
            products = column.view(6, -1, k)
            if band == 0:
                torch.bmm(v.transpose(1, 2), products, out=total[j])
            else:
                total[j].baddbmm_(v.transpose(1, 2), products)
    return total.transpose(0, 1).reshape(36, c, k)


# Tiles are processed in bands of tile rows whose transformed data (36 x tiles x channels floats)
# stays under this size: a bounded scratch memory on large images (smaller bands cost speed).
_BAND_BYTES = 64 << 20


def _bands(n: int, th: int, tw: int, channels: int) -> list[tuple[int, int]]:
    rows = max(1, _BAND_BYTES // (36 * 4 * channels * n * tw))
    return [(t0, min(th, t0 + rows)) for t0 in range(0, th, rows)]


def _tiles(h: int, w: int) -> tuple[int, int]:
    return math.ceil(h / 4), math.ceil(w / 4)


# One-dimensional transforms; the 2-D ones apply them along H, then along W. Common subexpressions
# halve the number of passes over memory (these are bandwidth-bound, the products are not).
def _bt(d: Sequence[Tensor], out: Sequence[Tensor]) -> None:
    """B^T of F(4, 3): 6 inputs -> 6 outputs."""
    torch.add(d[4], d[2], alpha=-5, out=out[0]).add_(d[0], alpha=4)
    a, b = torch.add(d[4], d[2], alpha=-4), torch.add(d[3], d[1], alpha=-4)
    torch.add(a, b, out=out[1])
    torch.sub(a, b, out=out[2])
    c, e = torch.sub(d[4], d[2]), torch.sub(d[3], d[1]).mul_(2)
    torch.add(c, e, out=out[3])
    torch.sub(c, e, out=out[4])
    torch.add(d[5], d[3], alpha=-5, out=out[5]).add_(d[1], alpha=4)


def _bt_each(d: Sequence[Tensor]) -> Iterator[tuple[int, Tensor]]:
    """B^T of F(4, 3) one output at a time (each is consumed before the next is made)."""
    yield 0, torch.add(d[4], d[2], alpha=-5).add_(d[0], alpha=4)
    a, b = torch.add(d[4], d[2], alpha=-4), torch.add(d[3], d[1], alpha=-4)
    yield 1, a + b
    yield 2, a.sub_(b)
    del a, b
    c, e = torch.sub(d[4], d[2]), torch.sub(d[3], d[1]).mul_(2)
    yield 3, c + e
    yield 4, c.sub_(e)
    del c, e
    yield 5, torch.add(d[5], d[3], alpha=-5).add_(d[1], alpha=4)


def _at(m: Sequence[Tensor], out: Sequence[Tensor]) -> None:
    """A^T of F(4, 3): 6 inputs -> 4 outputs."""
    s1, t1 = torch.add(m[1], m[2]), torch.sub(m[1], m[2])
    s2, t2 = torch.add(m[3], m[4]), torch.sub(m[3], m[4])
    torch.add(m[0], s1, out=out[0]).add_(s2)
    torch.add(t1, t2, alpha=2, out=out[1])
    torch.add(s1, s2, alpha=4, out=out[2])
    torch.add(t1, t2, alpha=8, out=out[3]).add_(m[5])


def _at_adjoint(g: Sequence[Tensor], out: Sequence[Tensor]) -> None:
    """A (the adjoint of A^T): 4 inputs -> 6 outputs."""
    out[0].copy_(g[0])
    p, q = torch.add(g[0], g[2]), torch.add(g[1], g[3])
    torch.add(p, q, out=out[1])
    torch.sub(p, q, out=out[2])
    r, s = torch.add(g[0], g[2], alpha=4), torch.add(g[3], g[1], alpha=0.25).mul_(8)
    torch.add(r, s, out=out[3])
    torch.sub(r, s, out=out[4])
    out[5].copy_(g[3])


def _input_tile_columns(x: Tensor, t0: int, t1: int) -> Iterator[tuple[int, Tensor]]:
    """x [N, H, W, C] -> (j, V[:, j] [6 (i), N*(t1-t0)*Tw, C]) for j = 0..5: B^T d B of the
    overlapping 6x6 input tiles of tile rows t0..t1 (zero padding 1 around the image)."""
    n, h, w, c = x.shape
    _, tw = _tiles(h, w)
    bt = t1 - t0
    # Input rows 4*t0 - 1 .. 4*t1 + 1 (padded coordinates 4*t0 .. 4*t1 + 2), zeros outside the image.
    padded = x.new_zeros(n, 4 * bt + 2, 4 * tw + 2, c)
    r0, r1 = max(4 * t0 - 1, 0), min(4 * t1 + 1, h)
    padded[:, r0 - (4 * t0 - 1) : r1 - (4 * t0 - 1), 1 : w + 1] = x[:, r0:r1]
    rows = x.new_empty(6, n, bt, 4 * tw + 2, c)  # B^T along H: [i, N, bt, W + 2, C]
    _bt([padded[:, r : r + 4 * bt - 3 : 4] for r in range(6)], rows)
    del padded
    for j, v in _bt_each([rows[:, :, :, s : s + 4 * tw - 3 : 4] for s in range(6)]):  # along W
        yield j, v.view(6, n * bt * tw, c)


# --- The same algorithm as graph operators, for exported models --------------------------------------
# ONNX Runtime and OpenVINO have no Winograd convolution of their own for these layers (their 3x3
# convolutions run at the CPU's fp32 peak, so only fewer multiplications are faster). Exported fixed-size
# graphs therefore spell F(4x4, 3x3) out in operators both runtimes run well: the input transform as
# depthwise convolutions at stride 4 (B^T along H, then along W), the 36 products as one batched MatMul,
# the output transform as a MatMul by kron(A^T, A^T) and a DepthToSpace that puts each 4x4 tile in place.
# (Tried and slower: strided Slices for the tiles, 2x-3x in both runtimes; one grouped Conv with 6 or 36
# filters per channel, ~2.5x in OpenVINO; the output transform as a grouped ConvTranspose, ~7x in OpenVINO
# and no faster for the whole model in ONNX Runtime.)
_BT = torch.tensor(
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    dtype=torch.float64,
)  # B^T of F(4, 3): what _bt computes
_AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64
)  # A^T of F(4, 3): what _at computes


def graph_filter(weight: Tensor) -> Tensor:
    """weight [K, C, 3, 3] -> U [36, K, C] for :func:`conv3x3_graph`.

    Computed in the graph from the filter by one Einsum, which torch's exporter does not fold: the file
    keeps only the 3x3 filter (a MatMul would need a reshaped copy of it, and that copy gets folded into
    a second initializer); runtimes fold U once when they load the model."""
    return torch.einsum("sab,kcab->skc", _GG.to(weight).view(36, 3, 3), weight)


def conv3x3_graph(x: Tensor, u: Tensor, bias: Tensor | None = None) -> Tensor:
    """x [B, C, H, W], u [36, K, C] (:func:`graph_filter`) -> [B, K, H, W] = conv2d(x, weight, bias, padding=1).

    For tracing into an exported graph with fixed H and W (they shape the graph; B may be dynamic);
    eager calls give the same values, so tests compare it with ``F.conv2d``. Tiles: Th = ceil(H / 4),
    Tw = ceil(W / 4); zero padding 1 on the top/left and up to 4 * T + 1 on the bottom/right.
    """
    c, h, w = (int(size) for size in x.shape[1:])  # constants of the graph, also when traced
    k = int(u.shape[1])
    th, tw = _tiles(h, w)
    bt = _BT.to(x)
    # B^T along H (zero padding 1 on the top/left, up to 4 T + 1 on the bottom/right), then along W, one
    # depthwise Conv per row of B^T: OpenVINO runs those ~2.5x faster than one Conv with 6 filters per
    # channel, ONNX Runtime as fast; and the stack is already the products' layout.
    pads = (1, 1, 4 * th + 1 - h, 4 * tw + 1 - w)
    rows = [_TileConv.apply(x, bt[i].view(1, 1, 6, 1).expand(c, 1, 6, 1), c, (4, 1), pads) for i in range(6)]
    v = torch.stack([_TileConv.apply(r, bt[j].view(1, 1, 1, 6).expand(c, 1, 1, 6), c, (1, 4), (0, 0, 0, 0))
                     for r in rows for j in range(6)], 1)  # [B, 36 (i, j), C, Th, Tw]
    v = v.reshape(-1, 36, c, th * tw)
    m = torch.matmul(u, v)  # [B, 36, K, T]
    at = _AT.to(x)
    y = torch.matmul(torch.kron(at, at), m.reshape(-1, 36, k * th * tw))  # [B, 16 (a, b), K * T]
    y = _DepthToSpace.apply(y.reshape(-1, 16 * k, th, tw))  # [B, K, 4 Th, 4 Tw]
    if 4 * th != h or 4 * tw != w:
        y = y[:, :, :h, :w]
    return y if bias is None else y + bias.view(1, k, 1, 1)


class _TileConv(torch.autograd.Function):
    """A depthwise convolution (one 1-D filter per channel, the same for all) with zero padding (top,
    left, bottom, right): one ONNX Conv with asymmetric ``pads`` (F.pad + conv2d would trace to a
    separate Pad, a pass over memory that ONNX Runtime keeps)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, channels: int, stride: tuple[int, int],  # type: ignore[override]
                pads: tuple[int, int, int, int]) -> Tensor:
        top, left, bottom, right = pads
        padded = torch.nn.functional.pad(x, (left, right, top, bottom))
        return torch.nn.functional.conv2d(padded, weight, stride=stride, groups=channels)

    @staticmethod
    def symbolic(g, x, weight, channels: int, stride: tuple[int, int], pads: tuple[int, int, int, int]):
        kernel = [6, 1] if stride[0] == 4 else [1, 6]
        return g.op("Conv", x, weight, kernel_shape_i=kernel, strides_i=list(stride), group_i=channels,
                    pads_i=list(pads))


class _DepthToSpace(torch.autograd.Function):
    """[B, 16 K, H, W] with channels ordered (a, b, k) -> [B, K, 4 H, 4 W], out[k, 4 h + a, 4 w + b]:
    ONNX DepthToSpace in DCR mode (torch's pixel_shuffle is the CRD order)."""

    @staticmethod
    def forward(ctx, y: Tensor) -> Tensor:  # type: ignore[override]
        b, ch, h, w = y.shape
        k = ch // 16
        return y.view(b, 4, 4, k, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, k, 4 * h, 4 * w)

    @staticmethod
    def symbolic(g, y):
        return g.op("DepthToSpace", y, blocksize_i=4, mode_s="DCR")
