"""A user's own job, outside the hotcb repository: a small regression in a bare PyTorch loop.

    python train.py tune=active recipe=lr_only search=gp
    python train.py -m recipe=lr_only,tiny seed=0,1 && hotcb compare multirun/...
"""

import torch

import hotcb
from hotcb.actuators import optimizer_actuators


@hotcb.main(config_path="conf", config_name="train")
def train(cfg, hot) -> float:
    if cfg.fail:
        raise RuntimeError("this job was told to fail")
    gen = torch.Generator().manual_seed(cfg.seed)
    w = torch.randn(8, 1, generator=gen)
    x, xv = torch.randn(256, 8, generator=gen), torch.randn(64, 8, generator=gen)
    y, yv = x @ w, xv @ w
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    for actuator in optimizer_actuators(opt):
        hot.kernel.register_actuator(actuator.name, actuator)
    loop, batches = hot.adapter, 8
    loop.max_steps = cfg.epochs * batches
    step = 0
    for epoch in range(cfg.epochs):
        for xb, yb in zip(x.chunk(batches), y.chunk(batches)):
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loop.apply(step=step, epoch=epoch, optimizer=opt, loss=loss.item())
        with torch.no_grad():
            loop.metrics["val_loss"] = torch.nn.functional.mse_loss(model(xv), yv).item()
            loop.metrics["val_score"] = -loop.metrics["val_loss"]
        loop.apply(events=["val_epoch_end"], step=step, epoch=epoch, model=model, optimizer=opt)
    return loop.metrics["val_loss"]


if __name__ == "__main__":
    train()
