"""The seeds' models against the same models in PyTorch, through one training step.

For SAGAN, DCGAN (64x64) and BEGAN: build the minigan model, copy its weights
(spectral-norm vectors and batch-norm statistics included) into the PyTorch
model of ``torch_models.py``, then run the trainer's step on both:

    fake = G(z)                    D step: loss_D on (x, fake.detach()), backward, Adam on D
    loss_G on G(z)                 G step: backward through D, Adam on G

and compare G(z), D(x), both losses, every parameter's gradient, and every
parameter and buffer after the two Adam steps. Differences are measured
relative to each tensor's largest entry: 1e-8 in float64, 1e-4 in float32.

The self-attention gammas are set to 0.5 first (at their initial 0 no
gradient reaches the attention convolutions, and the test would not see
them), except in the attention just before SAGAN D's last layer: there the
value convolution's bias shifts every logit equally, which the hinge loss
(all margins active at initialisation) cancels, so its gradient would be
rounding noise that Adam's first step turns into +-lr, moving loss_G by
chance. The key convolution's bias is gradient-free everywhere (it adds the
same amount to a whole softmax row) but changes nothing downstream: its
gradient is checked to be noise-sized.

One Adam step from zero moments is lr * g / (|g| + eps), about lr * sign(g)
whatever the betas: the few weights (a handful in millions) whose float32
gradient is within rounding of zero may step either way. Parameters after
the step may therefore differ by what the two gradients, compared on their
own, imply through that map -- nothing more. D's buffers (spectral-norm
vectors, batch-norm statistics) are compared as D's step leaves them: the G
step's pass through D advances them once more from the updated weights,
which would carry that +-lr ambiguity into them.

PyTorch is the reference in float64 for both cases: a float32 case runs
minigan in float32 against PyTorch in float64 on the same (float32-rounded)
weights and inputs. PyTorch's own float32 CPU path is the less accurate side:
torch 2.13 loses 1.7% on DCGAN's gradients against its float64 with oneDNN
off or with two threads, and earlier versions up to 7% (minigan's float32
stays within 1e-4), so comparing two float32 runs tested PyTorch's rounding.
"""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minigan.nn as nn  # noqa: E402
import minigan.ops as F  # noqa: E402
from minigan import Tensor, manual_seed  # noqa: E402
from minigan.models import build  # noqa: E402
from minigan.optim import Adam  # noqa: E402
from tests.models import torch_models as T  # noqa: E402

K_T = 0.3  # BEGAN's k_t, held fixed; not 0, so the fake term reaches D
TOLERANCE = {np.float64: 1e-8, np.float32: 1e-4}
GRADIENT_FREE = re.compile(r"\.key\.module\.bias$")

TORCH_TWINS = {
    "sagan": lambda z_dim, width, size: (T.SAGANGenerator(z_dim, width, size), T.SAGANDiscriminator(width, size)),
    "dcgan": lambda z_dim, width, size: (T.DCGANGenerator(z_dim, width), T.DCGANDiscriminator(width)),
    "began": lambda z_dim, width, size: (T.BEGANGenerator(z_dim, width), T.BEGANDiscriminator(z_dim, width)),
}


# ---------------------------------------------------------------------------
# the losses, once per framework
# ---------------------------------------------------------------------------
class MiniganLosses:
    @staticmethod
    def d(loss, D, x, fake):
        """(loss_D, D(x))."""
        real_out, fake_out = D(x), D(fake)
        if loss == "hinge":
            return F.hinge_d_loss(real_out, fake_out), real_out
        if loss == "bce":
            return F.bce_with_logits(real_out, 1.0) + F.bce_with_logits(fake_out, 0.0), real_out
        return F.l1_loss(real_out, x) - K_T * F.l1_loss(fake_out, fake), real_out

    @staticmethod
    def g(loss, D, fake):
        out = D(fake)
        if loss == "hinge":
            return F.hinge_g_loss(out)
        if loss == "bce":
            return F.bce_with_logits(out, 1.0)  # the non-saturating loss
        return F.l1_loss(out, fake)


class TorchLosses:
    @staticmethod
    def d(loss, D, x, fake):
        real_out, fake_out = D(x), D(fake)
        if loss == "hinge":
            return torch.relu(1 - real_out).mean() + torch.relu(1 + fake_out).mean(), real_out
        if loss == "bce":
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            return bce(real_out, torch.ones_like(real_out)) + bce(fake_out, torch.zeros_like(fake_out)), real_out
        return (real_out - x).abs().mean() - K_T * (fake_out - fake).abs().mean(), real_out

    @staticmethod
    def g(loss, D, fake):
        out = D(fake)
        if loss == "hinge":
            return -out.mean()
        if loss == "bce":
            return torch.nn.functional.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        return (out - fake).abs().mean()


# ---------------------------------------------------------------------------
# one training step, written once for both frameworks (their APIs agree here)
# ---------------------------------------------------------------------------
def _numpy(a):
    """A copy as float64 NumPy: minigan Tensor, raw array or torch tensor."""
    if isinstance(a, np.ndarray):
        return a.astype(np.float64)
    return np.array(a.detach().numpy(), dtype=np.float64)


def snapshot(prefix, model, names):
    """Parameters and buffers, keyed by minigan's names (torch's num_batches_tracked has no twin)."""
    return {f"{prefix}.{names[n]} after": _numpy(value)
            for n, value in list(model.named_parameters()) + list(model.named_buffers()) if n in names}


def train_step(G, D, x, z, loss, losses, adam, recipe, g_names, d_names):
    """Run the step; return every tensor to compare, keyed by minigan's names."""
    seen = {}
    opt_d = adam(D.parameters(), lr=recipe["lr_d"], betas=recipe["betas"])
    opt_g = adam(G.parameters(), lr=recipe["lr_g"], betas=recipe["betas"])

    fake = G(z)
    seen["G(z)"] = _numpy(fake)
    loss_d, real_out = losses.d(loss, D, x, fake.detach())
    seen["D(x)"], seen["loss_D"] = _numpy(real_out), _numpy(loss_d)
    D.zero_grad()
    loss_d.backward()
    seen.update({f"grad D.{d_names[n]}": _numpy(p.grad) for n, p in D.named_parameters()})
    opt_d.step()
    seen.update(snapshot("D", D, d_names))  # D's buffers as its step leaves them (see above)

    G.zero_grad()
    loss_g = losses.g(loss, D, G(z))
    seen["loss_G"] = _numpy(loss_g)
    loss_g.backward()
    seen.update({f"grad G.{g_names[n]}": _numpy(p.grad) for n, p in G.named_parameters()})
    opt_g.step()
    seen.update(snapshot("G", G, g_names))
    return seen


# ---------------------------------------------------------------------------
# weights across
# ---------------------------------------------------------------------------
def torch_name(name, rules):
    name = name.replace("layers.", "")  # minigan's Sequential keeps its children in .layers
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


def copy_to_torch(ours, theirs) -> dict:
    """Copy every parameter and buffer of ``ours`` into ``theirs``; returns {torch name: minigan name}."""
    targets = dict(theirs.named_parameters()) | dict(theirs.named_buffers())
    names = {}
    for name, value in ours.state_dict().items():
        target = targets[torch_name(name, theirs.MINIGAN_NAMES)]
        with torch.no_grad():  # the final 4x4 conv of SAGAN's D is minigan's Linear, reshaped
            target.copy_(torch.from_numpy(value).reshape(target.shape))
        names[torch_name(name, theirs.MINIGAN_NAMES)] = name
    uncopied = [n for n in targets if n not in names and not n.endswith("num_batches_tracked")]
    assert not uncopied, f"torch tensors with no minigan twin: {uncopied}"
    return names


def cast(module, dtype):
    """Parameters and buffers of a minigan module to ``dtype``, in place."""
    for _, p in module.named_parameters():
        p.data = p.data.astype(dtype)
    for m in module.modules():
        for name in m.__dict__.get("_buffer_names", []):
            setattr(m, name, getattr(m, name).astype(dtype))
    return module


def adam_first_step(g, lr, eps=1e-8):
    """Adam's first update from zero moments, for any betas: m_hat = g, v_hat = g^2."""
    return lr * g / (np.abs(g) + eps)


def compare(ours, theirs, tolerance, lr):
    """Every tensor within ``tolerance`` of its twin, relative to the twin's largest entry.

    Gradients that are zero in exact arithmetic (GRADIENT_FREE) must be below
    ``tolerance`` times the largest gradient of their network instead; a
    parameter after the step may also differ by what its two gradients imply
    through Adam's first step (``lr``: {"G": lr_g, "D": lr_d}).
    """
    assert ours.keys() == theirs.keys()
    largest = {net: max(np.abs(v).max() for k, v in theirs.items() if k.startswith(f"grad {net}."))
               for net in "GD"}
    errors = {}
    for key, a in ours.items():
        b = theirs[key]
        assert a.shape == b.shape, f"{key}: shape {a.shape} vs torch {b.shape}"
        name = key.removeprefix("grad ").removesuffix(" after")
        if key.startswith("grad ") and GRADIENT_FREE.search(name):
            noise = max(np.abs(a).max(), np.abs(b).max()) / largest[name[0]]
            assert noise <= tolerance, f"{key} should be rounding noise, is {noise:.2e} of the largest"
            continue
        slack, scale = 0.0, np.abs(b).max()
        if key.startswith("grad "):
            # a gradient far smaller than its network's largest is a sum whose terms cancel (D's output
            # bias under BCE: mean(sigmoid(D(x)) - 1) + mean(sigmoid(D(G(z))))); float32 leaves rounding
            # of the terms' size in it, so it is judged on 1% of the largest gradient at least (a 1% error
            # in any gradient down to 1e-4 of the largest still fails)
            scale = max(scale, 1e-2 * largest[name[0]])
        if key.endswith(" after") and f"grad {name}" in ours:
            step = lambda g: adam_first_step(g, lr[name[0]])  # noqa: E731
            slack = np.abs(step(ours[f"grad {name}"]) - step(theirs[f"grad {name}"]))
            # a zero-initialised parameter whose gradient is rounding noise (a key bias) is one Adam
            # step of size ~lr after the step, and tiny in float64: measure it against that step
            scale = max(scale, lr[name[0]])
        errors[key] = np.max(np.abs(a - b) - slack) / max(scale, 1e-30)
    worst = sorted(errors, key=errors.get, reverse=True)[:5]
    assert errors[worst[0]] <= tolerance, "worst relative errors: " + ", ".join(
        f"{k} {errors[k]:.2e}" for k in worst)
    return worst[0], errors[worst[0]]


# (model, dtype, width, batch, size): float64 at reduced width where the full one is slow, float32 at the seed's;
# SAGAN also at the main example's CPU network (32x32, width 32, batch 16)
CASES = [
    ("sagan", np.float64, 16, 5, 64),  # the seed's batch
    ("sagan", np.float32, 64, 3, 64),
    ("sagan", np.float64, 16, 4, 32),
    ("sagan", np.float32, 32, 16, 32),
    ("dcgan", np.float64, 64, 4, 64),
    ("dcgan", np.float32, 64, 4, 64),
    ("began", np.float64, 16, 3, 64),
    ("began", np.float32, 64, 2, 64),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,dtype,width,batch,size", CASES,
                         ids=[f"{c[0]}-{np.dtype(c[1]).name}-width{c[2]}" + (f"-{c[4]}px" if c[4] != 64 else "")
                              for c in CASES])
def test_one_training_step_matches_torch(name, dtype, width, batch, size):
    manual_seed(0)
    gan = build(name, image_size=size, width=width)
    attentions = [m for m in list(gan.G.modules()) + list(gan.D.modules()) if isinstance(m, nn.SelfAttention)]
    for m in attentions[:-1]:  # not the one before SAGAN D's last layer (see above)
        m.gamma.data[...] = 0.5
    cast(gan.G, dtype)
    cast(gan.D, dtype)
    tG, tD = (m.to(torch.float64) for m in TORCH_TWINS[name](gan.z_dim, width, size))
    g_names, d_names = copy_to_torch(gan.G, tG), copy_to_torch(gan.D, tD)

    rng = np.random.default_rng(1)
    z = gan.sample_z(batch, rng).astype(dtype)
    x = rng.uniform(-1, 1, (batch, 3, size, size)).astype(dtype)
    same = {n: n for n in gan.G.state_dict()}, {n: n for n in gan.D.state_dict()}
    ours = train_step(gan.G, gan.D, Tensor(x), Tensor(z), gan.loss, MiniganLosses, Adam, gan.defaults, *same)
    theirs = train_step(tG, tD, torch.from_numpy(x.astype(np.float64)), torch.from_numpy(z.astype(np.float64)),
                        gan.loss, TorchLosses, torch.optim.Adam, gan.defaults, g_names, d_names)
    theirs = {k: v.reshape(ours[k].shape) if k in ours else v for k, v in theirs.items()}  # SAGAN's last conv
    worst = compare(ours, theirs, TOLERANCE[dtype], {"G": gan.defaults["lr_g"], "D": gan.defaults["lr_d"]})
    print(f"{name} {size}px {np.dtype(dtype).name} width {width}: worst relative error {worst[1]:.2e} ({worst[0]})")
