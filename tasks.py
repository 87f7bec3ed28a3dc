"""What differs between the two tasks, in one place per task: train.py, generate.py and the benchmark use
these objects and never branch on the task's name.

- Colorize: Pix2Pix (Isola et al. 2017, arXiv 1611.07004) in CIE Lab, as the colorization mode of the
  authors' PyTorch code: the gray L channel in, the ab channels out.
- Inpaint: the Context Encoder (Pathak et al. 2016, arXiv 1604.07379): a face with its center blanked
  in, the center out (or the whole image, with --netG unet).

Each task says: its presets (the papers' settings, and the demo's), which settings are impossible, its
transforms and demo data, how a batch of images becomes (x, y), what D judges, how the output is put
back together and shown, which scores and baselines are reported and which score picks best.pt.
"""
import torch
import torch.nn.functional as F

import classes
import demo
import utils


class Colorize:
    """Gray panel -> colour panel: x = L/50 - 1 (B, 1, S, S), y = ab/110 (B, 2, S, S)."""

    name, dataset, draw = "colorize", "comics", staticmethod(demo.draw_panel)  # raw --data layout; demo data
    # Isola et al. 2017, section 4 and appendix 6.2: batch 1, 100 epochs at 2e-4 then 100 of linear
    # decay, lambda_L1 100, random jitter (resize to 286, crop 256, flip).
    paper = dict(netG="unet", netD="patch", image_size=256, load_size=286, batch_size=1, epochs=100,
                 epochs_decay=100, ngf=64, ndf=64, bottleneck=4000, rec_loss="l1", lambda_rec=100.0,
                 val_images=500)
    # The same paper gives big sets few epochs at batch 4: ImageNet colorization (1.2M images) about 6
    # epochs, edges2shoes (50k) and edges2handbags (137k) 15. COMICS (1.2M panels) follows ImageNet.
    large_set, large_set_images = dict(batch_size=4, epochs=3, epochs_decay=3), 200_000
    # The procedural demo, sized to finish in minutes on a 2-core CPU (11 on this project's, see README).
    demo = dict(paper, image_size=64, load_size=72, batch_size=4, epochs=8, epochs_decay=4, ngf=32, ndf=32,
                val_images=64, demo_images=1000)
    score, baseline = "psnr", "baseline_gray_psnr"  # best.pt has the best score; the log shows both

    def defaults(self, cfg):
        return dict(lambda_adv=1.0, lr_g_mult=1.0)

    def problems(self, cfg):
        return [] if cfg["netG"] == "unet" else ["colorize uses --netG unet"]

    def transforms(self, cfg):
        return (classes.ColorizeTransform(cfg.image_size, cfg.load_size, train=True),
                classes.ColorizeTransform(cfg.image_size, cfg.load_size, train=False))

    def demo_set(self, cfg, count, first_id, transform):
        return demo.DemoDataset(self.draw, cfg.load_size, count, first_id, transform)

    def prepare(self, batch, cfg, device):
        """A batch of uint8 RGB images from the loader -> (x, y, weight, extra) on the device."""
        x, y = utils.colorize_pair(batch[0].to(device, non_blocking=True))
        return x, y, None, None

    def d_input(self, x, image, cfg):
        return torch.cat([x, image], dim=1)  # the PatchGAN judges (gray, colour) pairs

    def pictures(self, x, fake, y, extra, cfg):
        """(input, output, target) as RGB in [0, 1]: the gray panel, the colorized one, the real one."""
        return utils.colorize_rgb(x, torch.zeros_like(y)), utils.colorize_rgb(x, fake), utils.colorize_rgb(x, y)

    def scores(self, inp, out, target, extra=None, cfg=None):
        """Per-image scores of the output and of the gray panel itself: PSNR rewards gray, desaturated
        output, so the colour difference (CIEDE2000) and the colourfulness say what PSNR hides."""
        scores = {}
        for prefix, image in {"": out, "baseline_gray_": inp}.items():
            scores.update({f"{prefix}psnr": utils.psnr(image, target), f"{prefix}ssim": utils.ssim(image, target),
                           f"{prefix}ciede2000": utils.mean_ciede2000(image, target)})
        scores.update(colourfulness=utils.colourfulness(out), reference_colourfulness=utils.colourfulness(target))
        return scores

    def score_image(self, out, reference, hole=None):
        """generate.py --reference: one full-size output against its reference, (1, 3, H, W) in [0, 1];
        the gray baseline is the reference's own L with ab = 0 (what G saw), as an 8-bit image."""
        lab = utils.rgb_to_lab(reference)
        gray = utils.lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))
        return self.scores(quantize(gray), out, reference)


class Inpaint:
    """Face with a blanked center -> the center: x = masked image (+ the hole as a 4th channel for the
    U-Net), y = the patch (Context Encoder) or the whole image (U-Net)."""

    name, dataset, draw = "inpaint", "celeba", staticmethod(demo.draw_face)
    # Pathak et al. 2016 and their train.lua: 128x128 images, a 64x64 center patch, 4000-channel
    # bottleneck, loss 0.999 L2 + 0.001 adversarial, Adam 2e-4 (beta1 0.5), batch 64, 25 epochs.
    paper = dict(netG="context-encoder", netD="context", image_size=128, load_size=128, batch_size=64,
                 epochs=25, epochs_decay=0, ngf=64, ndf=64, bottleneck=4000, rec_loss="l2", lambda_rec=0.999,
                 val_images=500)
    large_set, large_set_images = {}, None
    demo = dict(paper, image_size=64, load_size=64, batch_size=32, epochs=10, epochs_decay=5, ngf=32, ndf=32,
                bottleneck=1000, val_images=128, demo_images=3200)
    score, baseline = "hole_psnr", "baseline_mean_hole_psnr"
    G_LR_RATIO = 10.0  # train.lua: G's lr is 10x D's whenever 0 < lambda_rec < 1
    RING = 2  # px around the hole whose mean colour fills the border-mean baseline

    def defaults(self, cfg):
        """Settings that follow from others: the adversarial weight (1 - w) * adv + w * rec, and the
        original code's 10x generator lr that goes with that mix."""
        mixed = 0 < cfg["lambda_rec"] < 1
        return dict(lambda_adv=1 - cfg["lambda_rec"] if mixed else 0.001,
                    lr_g_mult=self.G_LR_RATIO if mixed and cfg["netG"] == "context-encoder" else 1.0)

    def problems(self, cfg):
        problems = []
        if cfg["netG"] == "context-encoder" and cfg["netD"] == "patch":
            problems.append("the Context Encoder predicts a patch: use --netD context with it")
        if not 0 <= 2 * cfg["overlap"] < cfg["patch"]:
            problems.append(f"--overlap {cfg['overlap']} leaves no hole in a {cfg['patch']} px patch")
        if cfg["netG"] == "context-encoder" and cfg["norm"] == "instance":
            problems.append("the Context Encoder's 1x1 bottleneck has no spatial statistics for --norm instance: "
                            "use --norm batch, or --netG unet")
        elif cfg["netG"] == "context-encoder" and cfg["batch_size"] < 2:
            problems.append("the Context Encoder's 1x1 BatchNorm bottleneck needs --batch-size 2 or more")
        if cfg["netG"] == "context-encoder" and cfg.get("norm_stats") == "image":
            problems.append("the Context Encoder's 1x1 bottleneck has no per-image statistics: use --norm-stats running")
        return problems

    def transforms(self, cfg):
        return (classes.InpaintTransform(cfg.image_size, cfg.patch, train=True, mask=cfg.mask),
                classes.InpaintTransform(cfg.image_size, cfg.patch, train=False))

    def demo_set(self, cfg, count, first_id, transform):
        return demo.DemoDataset(self.draw, cfg.image_size, count, first_id, transform)

    def prepare(self, batch, cfg, device):
        """A batch of uint8 RGB images and patch boxes -> (x, y, weight, extra) on the device; extra is
        what putting the prediction back needs: (boxes, hole mask, real image)."""
        images, boxes = batch[0].to(device, non_blocking=True), batch[1]  # boxes stay on the CPU: no GPU sync
        x, y, weight, hole, real = utils.inpaint_pair(images, boxes, cfg.patch, cfg.overlap, cfg.fill, cfg.netG)
        return x, y, weight, (boxes, hole, real)

    def d_input(self, x, image, cfg):
        """The Context Encoder's D judges the patch alone; the PatchGAN judges (masked image, image)
        pairs, with the predicted hole shown in its real surroundings."""
        if cfg.netD == "context":
            return image
        hole = x[:, 3:]
        return torch.cat([x, x[:, :3] * (1 - hole) + image * hole], dim=1)

    def pictures(self, x, fake, y, extra, cfg):
        """(input, output, target) as RGB in [0, 1]: masked, repaired (prediction inside the hole only), real."""
        boxes, hole, real = extra
        repaired = utils.inpaint_output(x, fake, boxes, hole, cfg.netG)
        return (x[:, :3] + 1) / 2, (repaired + 1) / 2, (real + 1) / 2

    def scores(self, inp, out, target, extra, cfg=None):
        """Per-image scores inside the hole (the Context Encoder paper's mean L1, mean L2 and PSNR, on
        images in [0, 1]) and on the whole image, for the output and two fills that need no network: white,
        and the mean colour of a ring of RING px around it (as an 8-bit colour)."""
        hole = extra[1]  # (B, 1, H, W), 1 where G's prediction was pasted
        ring = F.max_pool2d(hole, 2 * self.RING + 1, stride=1, padding=self.RING) - hole
        # On the 8-bit scale, in integers: a mean of exactly .5 rounds up, as it would in any other program.
        ring_sum = (torch.round(target * 255) * ring).sum((2, 3), keepdim=True)
        ring_mean = torch.floor(ring_sum / ring.sum((2, 3), keepdim=True).clamp_min(1) + 0.5) / 255
        area = 3 * hole.sum((1, 2, 3))  # values inside the hole, per image
        scores = {}
        for prefix, image in {"": out, "baseline_white_": target * (1 - hole) + hole,
                              "baseline_mean_": target * (1 - hole) + ring_mean * hole}.items():
            err = (image - target) * hole
            l2 = (err**2).sum((1, 2, 3)) / area
            scores.update({f"{prefix}hole_l1": err.abs().sum((1, 2, 3)) / area, f"{prefix}hole_l2": l2,
                           f"{prefix}hole_psnr": 10 * torch.log10(1 / l2.clamp_min(1e-10)),
                           f"{prefix}psnr": utils.psnr(image, target), f"{prefix}ssim": utils.ssim(image, target)})
        return scores

    def score_image(self, out, reference, hole):
        """generate.py --reference: one full-size output against its reference, (1, 3, H, W) in [0, 1],
        with the (H, W) hole that generate.py filled."""
        return self.scores(None, out, reference, (None, torch.as_tensor(hole, dtype=out.dtype)[None, None], None))


def quantize(img):
    """Values in [0, 1] as an 8-bit image holds them: baselines are scored as the saved outputs are."""
    return (img * 255 + 0.5).floor() / 255


TASKS = {task.name: task for task in (Colorize(), Inpaint())}
