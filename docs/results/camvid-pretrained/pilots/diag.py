import sys, time, torch, torch.nn as nn, torch.nn.functional as F, numpy as np
from PIL import Image
from pathlib import Path
from cct_train import CCTModel
torch.set_num_threads(1); torch.manual_seed(0)
root = Path("/tmp/cct/data/camvid-90x120")
lines = (root/"train.csv").read_text().split("\n")[1:]
alllines = [l for l in lines if l]
lines = alllines[:360:18][:20]
ulines = alllines[1:360:3][:100]
imgs = np.stack([np.asarray(Image.open(root/l.split(",")[0])) for l in lines]); msk = np.stack([np.asarray(Image.open(root/l.split(",")[1])) for l in lines])
x = torch.from_numpy(imgs).permute(0,3,1,2).float()/255; y = torch.from_numpy(msk).long()
xu = torch.from_numpy(np.stack([np.asarray(Image.open(root/l.split(',')[0])) for l in ulines])).permute(0,3,1,2).float()/255
variant = sys.argv[1]; iters = int(sys.argv[2]) if len(sys.argv) > 2 else 150
w = "/tmp/cct/lite0.safetensors"; mean = std = (0.5,)*3
kw = dict(psp_channels=64, output_stride=8, perturbations={})
if variant == "random": w = None
if variant.startswith("psp512") or variant.startswith("cct"): kw["psp_channels"] = 512
if variant.startswith("cct"):
    kw["perturbations"] = {"feature_noise": 2, "feature_drop": 2, "guided_cutout": 2, "dropout": 2, "context_mask": 1, "object_mask": 1, "vat": 1}
    kw["background"] = (0, 1, 3, 4, 5)
    if "nc" in variant: kw["concat_batches"] = False
if variant == "psp256": kw["psp_channels"] = 256
if variant == "os16": kw["output_stride"] = 16
if variant == "nopsp": kw["psp_channels"] = None
m = CCTModel("timm:tf_efficientnet_lite0", 11, weights=w, **kw)
xn = (x - torch.tensor(mean).view(1,3,1,1)) / torch.tensor(std).view(1,3,1,1)
if variant == "linear":
    head = nn.Conv2d(m.encoder.out_channels, 11, 1)
    class L(nn.Module):
        def __init__(s): super().__init__(); s.e = m.encoder; s.h = head
        def forward(s, a): return F.interpolate(s.h(s.e(a)), size=a.shape[-2:], mode="bilinear")
    net = L(); groups = [{"params": m.encoder.parameters(), "lr": 0.001}, {"params": head.parameters(), "lr": 0.01}]
else:
    net = m.predict; groups = m.param_groups(0.01, 0.1)
opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=1e-4)
if variant == "frozenbn":
    for mod in m.encoder.modules():
        if isinstance(mod, nn.BatchNorm2d): mod.eval(); mod.weight.requires_grad_(False); mod.bias.requires_grad_(False)
t0=time.time()
for i in range(iters):
    idx = torch.randperm(20)[:4]
    if variant == "frozenbn":
        m.train(); [mod.eval() for mod in m.encoder.modules() if isinstance(mod, nn.BatchNorm2d)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if variant.startswith("cct"):
            lam = float(variant.split("-")[1])
            xun = (xu[torch.randperm(100)[:4]] - 0.5) / 0.5
            res = m(xn[idx], y[idx], xun, consistency_weight=min(1.0, (i + 1) / 15) * lam)
            out = None
        elif variant == "psp512concat":
            xun = (xu[torch.randperm(100)[:4]] - 0.5) / 0.5
            z = m.encode(torch.cat([xn[idx], xun]))
            out = F.interpolate(m.main_decoder(z[:4]), size=xn.shape[-2:], mode="bilinear")
        else:
            out = net(xn[idx])
    loss = res["loss"] if out is None else F.cross_entropy(out.float(), y[idx], ignore_index=255)
    opt.zero_grad(); loss.backward(); opt.step()
    if i % 50 == 49: print(variant, i+1, round(loss.item(),3), (round(res["loss_unsup"].item(),4) if out is None else ""), flush=True)
m.eval()
with torch.no_grad():
    pred = net(xn).argmax(1)
valid = y != 255
acc = (pred[valid] == y[valid]).float().mean().item()
ious = []
for c in range(11):
    inter = ((pred==c)&(y==c)&valid).sum().item(); uni = (((pred==c)|(y==c))&valid).sum().item()
    if (y==c).sum() > 0: ious.append(inter/max(uni,1))
print("RESULT", variant, "train pixacc", round(acc,3), "mIoU", round(100*np.mean(ious),1), "sec", round(time.time()-t0), flush=True)
