"""The tick loop every distillation trainer runs (SiD, SiDA, SIGN and SiD-LSG).

Steps until ``kimg`` thousand generator images (or ``max_iterations`` more iterations), a report every
``tick_kimg`` and a training state every ``snap_ticks`` ticks and at the end.  The trainer gives
``step() -> (loss_fake, loss_G)`` as device scalars (summed on the device: the host reads them once per
tick, never per step), ``state`` with ``cur_nimg`` and ``iteration``, ``report(record) -> record`` (its own
metrics, logs and pictures), ``save()``, ``device``, ``progress`` and ``method`` (the progress bar's name).
"""
from __future__ import annotations

import time

import torch
from tqdm import tqdm


def run_ticks(trainer, cfg, max_iterations: int | None, postfix_keys: tuple[str, ...]) -> list[dict]:
    """Train ``trainer`` on ``cfg``'s budget; returns this call's report records (one per tick)."""
    st = trainer.state
    total, tick = int(cfg.kimg * 1000), int(cfg.tick_kimg * 1000)
    records = []
    bar = tqdm(total=total, initial=min(st.cur_nimg, total), unit="img", unit_scale=True, desc=trainer.method,
               disable=not trainer.progress, dynamic_ncols=True)
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    t0, n0 = time.perf_counter(), st.cur_nimg
    sums = torch.zeros(2, device=trainer.device)
    done, stop = 0, None if max_iterations is None else st.iteration + max_iterations
    while st.cur_nimg < total and (stop is None or st.iteration < stop):
        sums += torch.stack(trainer.step())
        done += 1
        bar.update(cfg.batch)
        finished = st.cur_nimg >= total
        if st.cur_nimg // tick != (st.cur_nimg - cfg.batch) // tick or finished:
            if cuda:
                torch.cuda.synchronize(trainer.device)
            per_iter = (sums / max(done, 1)).tolist()
            record = {"iteration": st.iteration, "kimg": st.cur_nimg / 1000,
                      "images_per_s": (st.cur_nimg - n0) / (time.perf_counter() - t0),
                      "loss_fake": per_iter[0], "loss_G": per_iter[1]}
            if cuda:
                record["peak_mem_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2 ** 30
            records.append(trainer.report(record))
            bar.set_postfix_str(" ".join(f"{k}={record[k]:.4g}" for k in postfix_keys if k in record))
            if (st.cur_nimg // tick) % cfg.snap_ticks == 0 or finished:
                trainer.save()
            t0, n0, sums, done = time.perf_counter(), st.cur_nimg, sums.zero_(), 0
    bar.close()
    return records
