"Shared by the benchmark scripts: a preset's backbone and schedule at a chosen batch, patch and device."


def preset_model(preset: str, batch: int | None, patch: int | None, device: str):
    "`(cfg, net, schedule)`: preset `preset` with the optional batch/patch overrides, its time-conditioned `unet` (seed 0) on `device`."
    import torch
    from dtir.config import load_preset
    from dtir.models.core import build_model
    from dtir.diffusion import schedule_for
    ov = [f'device={device}'] + ([f'batch={batch}'] if batch else []) + ([f'patch={patch}'] if patch else [])
    cfg = load_preset(preset, ov)
    torch.manual_seed(0)
    return cfg, build_model(cfg, time=True).to(device), schedule_for(cfg)
