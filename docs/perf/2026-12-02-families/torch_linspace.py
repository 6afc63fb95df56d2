# torch's float32 linspace and Dream's float32 transfer count on the GPU machine's torch, for
# tests/decode/test_dream_sampler.cpp: the values the official code computes (on CUDA).
import torch

for n in (17, 513):
    for dev in ("cuda", "cpu"):
        t = torch.linspace(1, 1e-3, n, dtype=torch.float32, device=dev)
        print(n, dev, {i: float(t[i]).hex() for i in (3, 6, 7, n // 2, n - 5)})
t = torch.linspace(1, 1e-3, 513, dtype=torch.float32, device="cuda")
for masked, i in ((1013, 6), (32, 0), (777, 100), (5000, 200)):
    mask_index = torch.ones(1, masked, dtype=torch.bool, device="cuda")
    num = mask_index.sum() / mask_index.shape[0]
    k = int(num * (1 - t[i + 1] / t[i]))
    k_double = int(masked * (1 - float(t[i + 1]) / float(t[i])))
    print("transfer", masked, i, k, "double:", k_double)
