"""The loss families: what D and G minimise, and the per-step state and statistics that go with it.

* hinge (SAGAN):  L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))];  L_G = -E[D(G(z))]
* bce (DCGAN):    L_D = BCE(D(x), y_real) + BCE(D(G(z)), 0);     L_G = BCE(D(G(z)), 1)
                  (the non-saturating G loss; y_real in [0.9, 1] with one-sided label smoothing)
* semi-supervised (any classifier D with K labelled classes): D outputs K+1 logits,
                  L_D = CE(D(x), label) + CE(D(G(z)), K);  L_G = -E log(1 - p_K(G(z)))
* began (BEGAN):  L(v) = E|v - D(v)|;  L_D = L(x) - k_t L(G(z));  L_G = L(G(z));
                  k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1);
                  M_global = L(x) + |gamma L(x) - L(G(z))|

* fastgan:        hinge, plus L1 reconstructions of real images from D's own features (FastGANLoss)

With feature matching, every classifier family's G loss is ||E f(x) - E f(G(z))||^2 instead.
With --lecam w > 0, every classifier family's L_D gains w * R_LeCam (ClassifierLoss.lecam); with --bcr w > 0,
w * (E||D(x) - D(T(x))||^2 + E||D(G(z)) - D(T(G(z)))||^2) (bCR, ClassifierLoss.consistency). With --top-k,
a classifier family's L_G is taken over the ``keep`` fakes of the batch with the highest logits only
(top-k training, Sinha et al. 2020; ClassifierLoss.g_loss).

One interface (:class:`LossFamily`): ``d_loss`` and ``g_loss`` return a scalar
Tensor and the statistics to log; ``end_step`` updates the family's own state
(BEGAN's k_t) once per iteration; ``plotted`` names the columns of losses.png and
``shown`` those on the progress bar. :func:`loss_family` picks the family of a model.
"""
from __future__ import annotations

import numpy as np

import minigan.ops as F
from minigan import backend
from minigan.augment import consistency_view
from minigan.models.base import feature_matching_loss
from minigan.tensor import Tensor, no_grad


class LossFamily:
    """``D``: the discriminator; ``see(x)``: what D is shown of images x (DiffAugment, instance noise)."""

    plotted = ("loss_d", "loss_g")
    shown = ("loss_d", "loss_g")

    def __init__(self, config, D, see):
        self.config, self.D, self.see = config, D, see

    def d_loss(self, real, fake, labels, rng: np.random.Generator):
        """(L_D, statistics) for a real batch, a detached fake batch and the real labels (or None)."""
        raise NotImplementedError

    def g_loss(self, real, fake, keep=None):
        """(L_G, statistics) for the last real batch and a fake batch that carries G's graph; ``keep``: how many
        of the fakes G learns from (top-k training), or None for all."""
        raise NotImplementedError

    def end_step(self, stats: dict) -> dict:
        """Update per-step state after the G step; returns statistics to log with the step."""
        return {}

    def state_dict(self) -> dict:
        # a checkpoint (format 1) always holds k_t: BEGAN's balance, 0 for every other family
        return {"k_t": 0.0}

    def load_state_dict(self, meta: dict) -> None:
        pass


class ClassifierLoss(LossFamily):
    """A family whose D outputs logits; subclasses give the two objectives on them."""

    plotted = ("loss_d", "loss_g", "D_real", "D_fake")

    def __init__(self, config, D, see):
        super().__init__(config, D, see)
        self.lecam_real = self.lecam_fake = 0.0  # LeCam's moving averages of D's mean outputs
        self.lecam_updates = 0

    def d_loss(self, real, fake, labels, rng):
        seen_real = self.see(real)
        real_logits, extra_loss, stats = self.d_on_real(seen_real, rng)
        seen_fake = self.see(fake)
        fake_logits = self.D(seen_fake)
        loss = self.d_objective(real_logits, fake_logits, labels, rng)
        if extra_loss is not None:
            loss = loss + extra_loss
        if self.config.lecam > 0:
            reg = self.lecam(real_logits, fake_logits)
            loss = loss + self.config.lecam * reg
            stats["lecam"] = reg.item()
        if self.config.bcr > 0:
            reg = self.consistency(seen_real, real_logits, rng) + self.consistency(seen_fake, fake_logits, rng)
            loss = loss + self.config.bcr * reg
            stats["bcr"] = reg.item()
        return loss, {"D_real": float(real_logits.data.mean()), "D_fake": float(fake_logits.data.mean()),
                      **stats, **self.sign_stat(real_logits)}

    def sign_stat(self, real_logits) -> dict:
        """ADA's overfitting signal, E[sign D(x_real)], when adaptive augmentation is on."""
        if self.config.ada_target <= 0:
            return {}
        return {"D_real_sign": float(backend.to_numpy(real_logits.data > 0).mean() * 2 - 1)}

    def d_on_real(self, seen, rng):
        """(D's logits on what it sees of the real batch, an extra D loss term or None, statistics)."""
        return self.D(seen), None, {}

    def lecam(self, real_logits, fake_logits):
        """LeCam regulariser (Tseng et al. 2021), moving averages updated first:
        R = E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2], a_* the EMAs of D's mean outputs."""
        decay = self.config.lecam_decay if self.lecam_updates else 0.0  # the first update copies
        self.lecam_real = decay * self.lecam_real + (1 - decay) * float(real_logits.data.mean())
        self.lecam_fake = decay * self.lecam_fake + (1 - decay) * float(fake_logits.data.mean())
        self.lecam_updates += 1
        above = F.relu(real_logits - self.lecam_fake)
        below = F.relu(self.lecam_real - fake_logits)
        return F.mean(above * above) + F.mean(below * below)

    def consistency(self, seen, logits, rng):
        """bCR's term for one side (Zhao et al. 2021): E ||D(x) - D(T(x))||^2 over the batch, x what D was shown,
        T a flip and a few pixels' shift (:func:`minigan.augment.consistency_view`); both passes carry D's
        gradient, neither the images'."""
        view = Tensor(consistency_view(seen.data, rng))
        diff = self.D(view) - logits
        return F.sum(diff * diff) * (1.0 / diff.shape[0])

    def state_dict(self):
        state = super().state_dict()
        if self.config.lecam > 0:
            state["lecam"] = [self.lecam_real, self.lecam_fake, self.lecam_updates]
        return state

    def load_state_dict(self, meta):
        if self.config.lecam > 0:
            real, fake, updates = meta.get("lecam", [0.0, 0.0, 0])
            self.lecam_real, self.lecam_fake, self.lecam_updates = float(real), float(fake), int(updates)

    def g_loss(self, real, fake, keep=None):
        if self.config.feature_matching:
            with no_grad():
                _, real_feats = self.D(self.see(real), features=True)
            _, fake_feats = self.D(self.see(fake), features=True)
            return feature_matching_loss(real_feats.detach(), fake_feats), {}
        logits = self.D(self.see(fake))
        if keep is not None and keep < logits.shape[0]:
            logits = top_logits(logits, keep)
        return self.g_objective(logits), {}

    def d_objective(self, real_logits, fake_logits, labels, rng):
        raise NotImplementedError

    def g_objective(self, fake_logits):
        raise NotImplementedError


class HingeLoss(ClassifierLoss):
    def d_objective(self, real_logits, fake_logits, labels, rng):
        return F.hinge_d_loss(real_logits, fake_logits)

    def g_objective(self, fake_logits):
        return F.hinge_g_loss(fake_logits)


class BCELoss(ClassifierLoss):
    def d_objective(self, real_logits, fake_logits, labels, rng):
        real_target = rng.uniform(0.9, 1.0) if self.config.label_smoothing else 1.0
        return F.bce_with_logits(real_logits, real_target) + F.bce_with_logits(fake_logits, 0.0)

    def g_objective(self, fake_logits):
        return F.bce_with_logits(fake_logits, 1.0)


class FastGANLoss(HingeLoss):
    """Hinge, plus D's self-supervision (FastGAN): on real images only, L1 between D's two decodings of its
    own features and what they should show: L_D = hinge + E|dec(f_8(x)) - x'| + E|dec(crop_q(f_16(x))) - x'_q|,
    x' the (augmented) image D was shown, average-pooled to the decoder's size, q a random quadrant."""

    plotted = ("loss_d", "loss_g", "D_real", "D_fake", "recon")

    def d_on_real(self, seen, rng):
        q = int(rng.integers(4))
        logits, full, part = self.D(seen, reconstruct=q)
        target_full, target_part = self.D.targets(seen, q)
        recon = F.l1_loss(full, target_full) + F.l1_loss(part, target_part)
        return logits, recon, {"recon": recon.item()}


def top_logits(logits, keep: int):
    """The ``keep`` rows of ``logits`` with the highest (mean) logit, the highest first; the others get no
    gradient. Ties go to the earlier row."""
    xp = backend.array_module(logits.data)
    scores = logits.data.reshape(logits.shape[0], -1).mean(axis=1)
    order = xp.argsort(-scores, kind="stable") if xp is np else xp.argsort(-scores)
    return logits[order[:keep]]


def _logsumexp(x, axis=1):
    m = Tensor(x.data.max(axis=axis, keepdims=True))  # a constant shift: no gradient needed
    return F.log(F.sum(F.exp(x - m), axis=axis)) + F.reshape(m, (-1,))


class SemiSupervisedLoss(ClassifierLoss):
    """K real classes and a (K+1)-th "generated" one (Salimans et al. 2016, sec. 5)."""

    def __init__(self, config, D, see, num_classes: int):
        super().__init__(config, D, see)
        self.num_classes = num_classes

    def d_objective(self, real_logits, fake_logits, labels, rng):
        fake_label = np.full(fake_logits.shape[0], self.num_classes)
        return F.cross_entropy(real_logits, labels) + F.cross_entropy(fake_logits, fake_label)

    def g_objective(self, fake_logits):  # -log(1 - p_K) = logsumexp(all) - logsumexp(real classes)
        return F.mean(_logsumexp(fake_logits) - _logsumexp(fake_logits[:, :self.num_classes]))


class BEGANLoss(LossFamily):
    """D is an autoencoder; its reconstruction error is the loss, balanced by k_t."""

    plotted = ("loss_d", "loss_g", "k_t", "M_global")
    shown = ("loss_d", "loss_g", "k_t", "M_global")

    def __init__(self, config, D, see):
        super().__init__(config, D, see)
        self.k_t = 0.0

    def _recon(self, x):
        """L(v) = mean |v - D(v)| on what D sees."""
        seen = self.see(x)
        return F.l1_loss(seen, self.D(seen))

    def d_loss(self, real, fake, labels, rng):
        loss_real, loss_fake = self._recon(real), self._recon(fake)
        return loss_real - self.k_t * loss_fake, {"L_real": loss_real.item(), "L_fake": loss_fake.item()}

    def g_loss(self, real, fake, keep=None):
        return self._recon(fake), {}

    def end_step(self, stats):
        c = self.config
        balance = c.began_gamma * stats["L_real"] - stats["L_fake"]
        self.k_t = float(min(max(self.k_t + c.began_lambda_k * balance, 0.0), 1.0))
        return {"k_t": self.k_t, "M_global": stats["L_real"] + abs(balance)}

    def state_dict(self):
        return {"k_t": self.k_t}

    def load_state_dict(self, meta):
        self.k_t = float(meta.get("k_t", 0.0))


# the family each model's GAN.loss names (a classifier D with K labelled classes is semi-supervised instead)
FAMILIES = {"hinge": HingeLoss, "bce": BCELoss, "began": BEGANLoss, "fastgan": FastGANLoss}


def loss_family(gan, config, D, see) -> LossFamily:
    if gan.num_classes:
        return SemiSupervisedLoss(config, D, see, gan.num_classes)
    return FAMILIES[gan.loss](config, D, see)
