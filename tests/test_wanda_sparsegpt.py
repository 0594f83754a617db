"""Wanda and SparseGPT against their reference implementations' arithmetic, on hand-sized layers
(locuslab/wanda `prune_wanda` with `WrappedGPT.add_batch`; IST-DASLab/sparsegpt `add_batch` and
`fasterprune`, transcribed below as they compute), then layer by layer on tiny models of every family."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from families import FAMILIES, family_config, family_mlm_class
from ticketlab.masks import apply_mask, find_targets
from ticketlab.methods.calibration import Calibration
from ticketlab.methods.layerwise import prune_layerwise
from ticketlab.methods.sparsegpt.prune import sparsegpt_mask
from ticketlab.methods.sparsegpt.solver import Hessian, sparsegpt_solve
from ticketlab.methods.wanda.prune import wanda_mask
from ticketlab.methods.wanda.score import InputNorms, keep_per_row, wanda_scores
from ticketlab.models.arch import ARCHS, encoder_of

# --------------------------------------------------------------------------- the references, transcribed


def reference_wanda(weight, batches, sparsity, prune_n=0, prune_m=0):
    """`WrappedGPT.add_batch` then `prune_wanda`'s mask (True = pruned), one matrix."""
    columns, nsamples = weight.shape[1], 0
    scaler_row = torch.zeros(columns)
    for inp in batches:  # [batch, seq, columns]
        tmp = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t().float()
        scaler_row *= nsamples / (nsamples + tmp)
        nsamples += tmp
        scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / nsamples
    w_metric = torch.abs(weight) * torch.sqrt(scaler_row.reshape((1, -1)))
    w_mask = torch.zeros_like(w_metric) == 1
    if prune_n != 0:
        for ii in range(w_metric.shape[1]):
            if ii % prune_m == 0:
                tmp = w_metric[:, ii : (ii + prune_m)].float()
                w_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
    else:
        sort_res = torch.sort(w_metric, dim=-1, stable=True)
        indices = sort_res[1][:, : int(w_metric.shape[1] * sparsity)]
        w_mask.scatter_(1, indices, True)
    return w_mask


def reference_hessian(columns, batches):
    """`SparseGPT.add_batch` over the batches: H = 2/nsamples Σ x xᵀ."""
    h, nsamples = torch.zeros(columns, columns), 0
    for inp in batches:
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        h *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = math.sqrt(2 / nsamples) * inp.float()
        h += inp.matmul(inp.t())
    return h


def reference_fasterprune(weight, h, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    """`fasterprune` without quantization: the pruned weight (zeros where pruned)."""
    w = weight.clone().float()
    columns = w.shape[1]
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(h))
    diag = torch.arange(columns)
    h[diag, diag] += damp
    h = torch.linalg.cholesky(h)
    h = torch.cholesky_inverse(h)
    hinv = torch.linalg.cholesky(h, upper=True)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = w1**2 / (torch.diag(hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(w1) == 1
        for i in range(count):
            col = w1[:, i]
            d = hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = (
                    w1[:, i : (i + prunem)] ** 2 / (torch.diag(hinv1)[i : (i + prunem)].reshape((1, -1))) ** 2
                )
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = col.clone()
            q[mask1[:, i]] = 0
            q1[:, i] = q
            e = (col - q) / d
            w1[:, i:] -= e.unsqueeze(1).matmul(hinv1[i, i:].unsqueeze(0))
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
    return w


def hand_layer(rows=12, columns=32, seed=0):
    """A weight and calibration batches [2, 5, columns] with unequal feature scales and one input
    feature that is always zero (SparseGPT's "dead" column)."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, columns, generator=gen)
    scale = torch.rand(columns, generator=gen) * 3 + 0.1
    batches = [torch.randn(2, 5, columns, generator=gen) * scale for _ in range(3)]
    for b in batches:
        b[..., 7] = 0
    return weight, batches


def accumulate(statistic, weight, batches):
    stat = statistic(nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    for b in batches:
        stat.add(b)
    return stat


# --------------------------------------------------------------------------- hand-sized layers


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_wanda_mask_is_prune_wandas_per_row_mask(sparsity):
    weight, batches = hand_layer()
    norms = accumulate(InputNorms, weight, batches)
    keep = keep_per_row(wanda_scores(weight, norms.squares), sparsity)
    assert torch.equal(~keep, reference_wanda(weight, batches, sparsity))
    assert (~keep).sum(1).tolist() == [int(32 * sparsity)] * 12  # per row, not per matrix
    magnitude = keep_per_row(weight.abs(), sparsity)
    assert not torch.equal(keep, magnitude)  # the activations change the choice on this layer


def test_wanda_two_four_is_prune_wandas():
    weight, batches = hand_layer(seed=1)
    keep = keep_per_row(wanda_scores(weight, accumulate(InputNorms, weight, batches).squares), 0.5, "2:4")
    assert torch.equal(~keep, reference_wanda(weight, batches, 0.5, prune_n=2, prune_m=4))


@pytest.mark.parametrize(
    ("sparsity", "pattern", "blocksize"), [(0.6, None, 8), (0.5, "2:4", 8), (0.7, None, 128)]
)
def test_sparsegpt_is_fasterprune(sparsity, pattern, blocksize):
    """Same mask and same reconstructed weights as `fasterprune` on the same inputs, over several
    blocks of columns (blocksize 8) and in one."""
    weight, batches = hand_layer(seed=2)
    hessian = accumulate(Hessian, weight, batches).matrix
    keep, new = sparsegpt_solve(weight, hessian, sparsity, pattern, blocksize=blocksize)
    n_m = {"prunen": 2, "prunem": 4} if pattern else {}
    want = reference_fasterprune(weight, reference_hessian(32, batches), sparsity, blocksize=blocksize, **n_m)
    assert torch.equal(keep, want != 0)
    torch.testing.assert_close(new, want, rtol=1e-4, atol=1e-5)
    assert torch.all(new[~keep] == 0) and not torch.allclose(new[keep], weight[keep])  # updated


def test_sparsegpt_at_sparsity_zero_prunes_nothing():
    """The reference's per-block threshold (`<=` at position int(numel · sparsity)) takes the lowest
    weight of every block even at sparsity 0: a dense mask is dense, its weights the layer's (but
    for an input that is always zero, whose weights the reference zeroes too)."""
    weight, batches = hand_layer(seed=2)
    hessian = accumulate(Hessian, weight, batches).matrix
    keep, new = sparsegpt_solve(weight, hessian, 0.0, blocksize=8)
    assert keep.all() and torch.equal(new, weight * (torch.diag(hessian) != 0))


def test_the_obs_update_lowers_the_layers_reconstruction_error():
    """On its calibration inputs, SparseGPT's weights reproduce the dense outputs better than the same
    mask over the original weights: the update is what SparseGPT adds to its mask."""
    weight, batches = hand_layer(rows=16, columns=64, seed=3)
    keep, new = sparsegpt_solve(weight, accumulate(Hessian, weight, batches).matrix, 0.7, blocksize=16)
    x = torch.cat([b.reshape(-1, 64) for b in batches])
    dense = x @ weight.T
    assert ((x @ new.T - dense).norm() / (x @ (weight * keep).T - dense).norm()) < 0.8  # 0.74 here


# --------------------------------------------------------------------------- layer by layer


def calibration(vocab: int, n=6, length=12, seed=0) -> Calibration:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP] of conftest's vocabulary
    return Calibration(ids, {"calibration_sequences": n})


def inputs_of(model, key, ids):
    """The inputs [tokens, in] the matrix `key` receives when `model` runs `ids`."""
    seen = []
    module = encoder_of(model).get_submodule(key.removesuffix(".weight"))
    hook = module.register_forward_hook(lambda _m, i, _o: seen.append(i[0].reshape(-1, i[0].shape[-1])))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    hook.remove()
    return [torch.cat(seen)]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_each_layer_reads_the_outputs_of_the_pruned_layers_below(tiny_bert_dir, method):
    """Layer 1's matrices are pruned on what the model computes with the embeddings and layer 0
    already pruned (and, for SparseGPT, reconstructed), not on the dense model's activations."""
    from ticketlab.models.load import load_model

    model = load_model(tiny_bert_dir, head="base")
    cal = calibration(model.config.vocab_size)
    norms = {"wanda": InputNorms, "sparsegpt": Hessian}[method]

    def solve(key, weight, stat):
        if method == "wanda":
            keep = keep_per_row(wanda_scores(weight, stat.squares), 0.5)
            return keep, weight * keep
        return sparsegpt_solve(weight, stat.matrix, 0.5)

    mask, weights = prune_layerwise(
        model, None, cal, sparsity=0.5, pattern=None, statistic=norms, solve=solve
    )
    key = "encoder.layer.1.attention.self.query.weight"
    lower = {k: v for k, v in weights.items() if ".layer.0." in k}
    pruned = load_model(tiny_bert_dir, head="base")
    for k, w in lower.items():
        weights_of(pruned, k).copy_(w)
    apply_mask(pruned, {"embeddings.word_embeddings.weight": mask["embeddings.word_embeddings.weight"]})
    want = solve(
        key,
        weights_of(model, key),
        accumulate(norms, weights_of(model, key), inputs_of(pruned, key, cal.ids)),
    )
    assert torch.equal(mask[key], want[0])
    dense = solve(
        key, weights_of(model, key), accumulate(norms, weights_of(model, key), inputs_of(model, key, cal.ids))
    )
    assert not torch.equal(mask[key], dense[0])  # the order matters here: the test can tell


def weights_of(model, key):
    return encoder_of(model).get_submodule(key.removesuffix(".weight")).weight.data


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_both_methods_on_every_family(family, pattern):
    """Every default target of every family gets its mask (the word embeddings by magnitude), at the
    sparsity asked; SparseGPT's weights are zero where its mask prunes."""
    torch.manual_seed(0)
    model = family_mlm_class(family)(family_config(family)).eval()
    base = model.base_model
    cal = calibration(model.config.vocab_size)
    sparsity = 0.5 if pattern else 0.6
    wanda = wanda_mask(base, sparsity, calibration=cal, pattern=pattern).mask
    sparse = sparsegpt_mask(base, sparsity, calibration=cal, pattern=pattern)
    targets = set(find_targets(base))
    assert set(wanda) == set(sparse.mask) == targets
    embeddings = f"{ARCHS[model.config.model_type].embeddings}.weight"
    assert embeddings not in sparse.weights and set(sparse.weights) == targets - {embeddings}
    for mask in (wanda, sparse.mask):
        assert abs(mask.sparsity - sparsity) < 0.03
    for key, w in sparse.weights.items():
        assert torch.all(w[~sparse.mask[key]] == 0)
