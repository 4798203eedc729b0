"""The seeds' models written again in plain PyTorch, the way the seeds' code
writes them (heykeetae/Self-Attention-GAN, carpedm20/DCGAN-tensorflow,
carpedm20/BEGAN-tensorflow), at 64x64 (SAGAN also at 32x32, the main example's CPU size) -- the references the parity tests
hold minigan's models to.

Each class carries ``MINIGAN_NAMES``: regex rules (applied in order with
``re.sub``, after dropping the ``layers.`` of minigan's Sequential from the
name) that turn a minigan parameter or buffer name into this model's name for
the same tensor, so weights can be copied across and gradients compared name
by name.
"""
import torch
import torch.nn.functional as TF
from torch import nn
from torch.nn.utils import spectral_norm

# minigan's SpectralNorm keeps the wrapped layer's bias under ``module`` and
# calls its vectors u and v; SelfAttention names its convolutions without "_conv".
SPECTRAL_NAMES = [(r"\.module\.bias$", ".bias"), (r"\.u$", ".weight_u"), (r"\.v$", ".weight_v"),
                  (r"\b(query|key|value)\.", r"\1_conv.")]


# ---------------------------------------------------------------------------
# SAGAN (heykeetae/Self-Attention-GAN, sagan_models.py)
# ---------------------------------------------------------------------------
class SelfAttn(nn.Module):
    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = spectral_norm(nn.Conv2d(in_dim, in_dim // 8, 1))
        self.key_conv = spectral_norm(nn.Conv2d(in_dim, in_dim // 8, 1))
        self.value_conv = spectral_norm(nn.Conv2d(in_dim, in_dim, 1))
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        b, c, width, height = x.size()
        proj_query = self.query_conv(x).view(b, -1, width * height).permute(0, 2, 1)  # B x N x C'
        proj_key = self.key_conv(x).view(b, -1, width * height)  # B x C' x N
        attention = self.softmax(torch.bmm(proj_query, proj_key))  # B x N x N
        proj_value = self.value_conv(x).view(b, -1, width * height)  # B x C x N
        out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(b, c, width, height)
        return self.gamma * out + x


def _with_attention(layers):
    """The module order of a SAGAN twin: its stride-2 layers, attn1 before the last of them and attn2 after it."""
    return layers[:-1] + ["attn1", layers[-1], "attn2"]


def _sagan_names(order, last):
    """MINIGAN_NAMES of a SAGAN twin whose minigan blocks (in order) are the torch modules ``order``."""
    return [(r"^(blocks|body)\.(\d)\.", lambda m: order[int(m[2])] + "."), (r"^(to_rgb|head)\.", last)] + SPECTRAL_NAMES


class SAGANGenerator(nn.Module):
    """At 64x64: l1, l2, l3, attn1, l4, attn2, last (heykeetae's layout). At 32x32 (heykeetae's code has no
    working 32x32 G: its attention layers are fixed at 128 and 64 channels) l4 is dropped and the two
    attention layers follow the last two up-sampling layers, as minigan's rule places them: l1, l2, attn1,
    l3, attn2, last."""

    def __init__(self, z_dim=20, conv_dim=64, image_size=64):
        super().__init__()
        ups = {32: 2, 64: 3}[image_size]  # stride-2 hidden layers after l1
        curr_dim = conv_dim * 2 ** ups  # 2 ** (log2(S) - 3)
        self.l1 = nn.Sequential(spectral_norm(nn.ConvTranspose2d(z_dim, curr_dim, 4, bias=False)),
                                nn.BatchNorm2d(curr_dim), nn.ReLU())
        for i in range(ups):
            setattr(self, f"l{i + 2}", self._up(curr_dim // 2 ** i))
        self.last = nn.Sequential(nn.ConvTranspose2d(conv_dim, 3, 4, 2, 1), nn.Tanh())
        self.attn1 = SelfAttn(conv_dim * 2)
        self.attn2 = SelfAttn(conv_dim)
        self.order = ["l1"] + _with_attention([f"l{i + 2}" for i in range(ups)])
        self.MINIGAN_NAMES = _sagan_names(self.order, "last.0.")

    @staticmethod
    def _up(curr_dim):
        return nn.Sequential(spectral_norm(nn.ConvTranspose2d(curr_dim, curr_dim // 2, 4, 2, 1, bias=False)),
                             nn.BatchNorm2d(curr_dim // 2), nn.ReLU())

    def forward(self, z):
        out = z.view(z.size(0), z.size(1), 1, 1)
        for name in self.order:
            out = getattr(self, name)(out)
        return self.last(out)


class SAGANDiscriminator(nn.Module):
    """At 64x64: l1, l2, l3, attn1, l4, attn2, last; at 32x32: l1, l2, attn1, l3, attn2, last."""

    def __init__(self, conv_dim=64, image_size=64):
        super().__init__()
        downs = {32: 3, 64: 4}[image_size]
        for i in range(downs):
            setattr(self, f"l{i + 1}", self._down(3 if i == 0 else conv_dim * 2 ** (i - 1), conv_dim * 2 ** i))
        top = conv_dim * 2 ** (downs - 1)
        self.last = nn.Conv2d(top, 1, 4)
        self.attn1 = SelfAttn(top // 2)
        self.attn2 = SelfAttn(top)
        self.order = _with_attention([f"l{i + 1}" for i in range(downs)])
        self.MINIGAN_NAMES = _sagan_names(self.order, "last.")

    @staticmethod
    def _down(c_in, c_out):
        return nn.Sequential(spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.1))

    def forward(self, x):
        out = x
        for name in self.order:
            out = getattr(self, name)(out)
        return self.last(out).view(x.size(0), 1)


# ---------------------------------------------------------------------------
# DCGAN (carpedm20/DCGAN-tensorflow, model.py: generator / discriminator)
# ---------------------------------------------------------------------------
class DCGANGenerator(nn.Module):
    MINIGAN_NAMES = [(r"^project\.", "g_h0_lin."), (r"^project_norm\.", "g_bn0."),
                     (r"^blocks\.(\d)\.0\.", lambda m: f"g_h{int(m[1]) + 1}."),
                     (r"^blocks\.(\d)\.1\.", lambda m: f"g_bn{int(m[1]) + 1}."),
                     (r"^to_rgb\.", "g_h4.")]

    def __init__(self, z_dim=100, gf_dim=64):
        super().__init__()
        self.gf_dim = gf_dim
        self.g_h0_lin = nn.Linear(z_dim, gf_dim * 8 * 4 * 4, bias=False)
        self.g_bn0 = nn.BatchNorm2d(gf_dim * 8)
        self.g_h1 = self._deconv(gf_dim * 8, gf_dim * 4)
        self.g_bn1 = nn.BatchNorm2d(gf_dim * 4)
        self.g_h2 = self._deconv(gf_dim * 4, gf_dim * 2)
        self.g_bn2 = nn.BatchNorm2d(gf_dim * 2)
        self.g_h3 = self._deconv(gf_dim * 2, gf_dim)
        self.g_bn3 = nn.BatchNorm2d(gf_dim)
        self.g_h4 = self._deconv(gf_dim, 3, bias=True)

    @staticmethod
    def _deconv(c_in, c_out, bias=False):
        return nn.ConvTranspose2d(c_in, c_out, 5, 2, padding=2, output_padding=1, bias=bias)

    def forward(self, z):
        h0 = TF.relu(self.g_bn0(self.g_h0_lin(z).view(-1, self.gf_dim * 8, 4, 4)))
        h1 = TF.relu(self.g_bn1(self.g_h1(h0)))
        h2 = TF.relu(self.g_bn2(self.g_h2(h1)))
        h3 = TF.relu(self.g_bn3(self.g_h3(h2)))
        return torch.tanh(self.g_h4(h3))


class DCGANDiscriminator(nn.Module):
    MINIGAN_NAMES = [(r"^body\.(\d)\.0\.", lambda m: f"d_h{m[1]}_conv."),
                     (r"^body\.(\d)\.1\.", lambda m: f"d_bn{m[1]}."),
                     (r"^head\.", "d_h4_lin.")]

    def __init__(self, df_dim=64):
        super().__init__()
        self.d_h0_conv = nn.Conv2d(3, df_dim, 5, 2, 2)
        self.d_h1_conv = nn.Conv2d(df_dim, df_dim * 2, 5, 2, 2, bias=False)
        self.d_bn1 = nn.BatchNorm2d(df_dim * 2)
        self.d_h2_conv = nn.Conv2d(df_dim * 2, df_dim * 4, 5, 2, 2, bias=False)
        self.d_bn2 = nn.BatchNorm2d(df_dim * 4)
        self.d_h3_conv = nn.Conv2d(df_dim * 4, df_dim * 8, 5, 2, 2, bias=False)
        self.d_bn3 = nn.BatchNorm2d(df_dim * 8)
        self.d_h4_lin = nn.Linear(df_dim * 8 * 4 * 4, 1)

    def forward(self, image):
        h0 = TF.leaky_relu(self.d_h0_conv(image), 0.2)
        h1 = TF.leaky_relu(self.d_bn1(self.d_h1_conv(h0)), 0.2)
        h2 = TF.leaky_relu(self.d_bn2(self.d_h2_conv(h1)), 0.2)
        h3 = TF.leaky_relu(self.d_bn3(self.d_h3_conv(h2)), 0.2)
        return self.d_h4_lin(h3.reshape(image.size(0), -1))


# ---------------------------------------------------------------------------
# BEGAN (carpedm20/BEGAN-tensorflow, models.py: GeneratorCNN / DiscriminatorCNN)
# ---------------------------------------------------------------------------
def _conv(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ELU()]


class BEGANDecoder(nn.Sequential):
    """GeneratorCNN, and the second half of DiscriminatorCNN."""

    def __init__(self, z_num=64, hidden_num=64, repeat_num=4):
        layers = [nn.Linear(z_num, 8 * 8 * hidden_num), nn.Unflatten(1, (hidden_num, 8, 8))]
        for idx in range(repeat_num):
            layers += _conv(hidden_num, hidden_num) + _conv(hidden_num, hidden_num)
            if idx < repeat_num - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(hidden_num, 3, 3, 1, 1))
        super().__init__(*layers)


class BEGANGenerator(nn.Module):
    MINIGAN_NAMES = []  # the same Sequential layout

    def __init__(self, z_num=64, hidden_num=64):
        super().__init__()
        self.decoder = BEGANDecoder(z_num, hidden_num)

    def forward(self, z):
        return self.decoder(z)


class BEGANDiscriminator(nn.Module):
    MINIGAN_NAMES = []  # the same Sequential layout

    def __init__(self, z_num=64, hidden_num=64, repeat_num=4):
        super().__init__()
        layers, prev_channel_num = _conv(3, hidden_num), hidden_num
        for idx in range(repeat_num):
            channel_num = hidden_num * (idx + 1)
            layers += _conv(prev_channel_num, channel_num) + _conv(channel_num, channel_num)
            if idx < repeat_num - 1:
                layers += _conv(channel_num, channel_num, stride=2)
            prev_channel_num = channel_num
        layers += [nn.Flatten(), nn.Linear(8 * 8 * channel_num, z_num)]
        self.encoder = nn.Sequential(*layers)
        self.decoder = BEGANDecoder(z_num, hidden_num, repeat_num)

    def forward(self, x):
        return self.decoder(self.encoder(x))
