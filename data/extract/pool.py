"""Extraction into a corpus: resumable, the manifest flushed as samples finish, a pool of worker processes."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.corpus import MANIFEST, SampleRecord, atomic_save_npy, feature_path, path_inside, read_manifest, update_manifest
from data.extract.holistic import ExtractError, extract_sample, image_files, new_holistic, video_fps
from data.extract.jobs import ExtractJob
from data.extract.quiet import filter_native_logs_of_this_process, mark_sample, quiet_native_logs

FLUSH_EVERY = 8  # manifest rows written after this many finished samples ...
FLUSH_SECONDS = 30.0  # ... or after this long, whichever comes first


@dataclass
class ExtractSummary:
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]  # id -> reason
    relabelled: list[str] = field(default_factory=list)  # skipped samples whose manifest row got new labels

    def report(self) -> str:
        relabelled = f"; labels updated for {len(self.relabelled)}" if self.relabelled else ""
        lines = [f"extracted {len(self.done)}, skipped {len(self.skipped)} (already in the corpus{relabelled}), failed {len(self.failed)}"]
        lines += [f"  FAILED {sid}: {reason}" for sid, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def _record(job: ExtractJob, fps: float | None) -> SampleRecord:
    return SampleRecord(job.id, job.split, tuple(job.glosses), feature_path(job.id), job.signer, fps, dict(job.extra))


def _extract_job(job: ExtractJob, out_dir: Path, model_complexity: int) -> tuple[str, SampleRecord | None, str | None]:
    """Worker: extract one sample and save it. Returns (id, manifest record, None) or (id, None, reason)."""
    mark_sample(str(job.source))  # native lines that pass the filter name the sample
    try:
        features = extract_sample(job.source, model_complexity)
        fps = job.fps if job.fps is not None else video_fps(job.source)
        atomic_save_npy(out_dir / feature_path(job.id), features)
        return job.id, _record(job, fps), None
    except ExtractError as exc:
        return job.id, None, str(exc)
    except Exception as exc:  # anything else from OpenCV/MediaPipe: report it, keep the run going
        return job.id, None, f"{job.source}: {type(exc).__name__}: {exc}"
    finally:
        mark_sample("")


def _relabelled(rec: SampleRecord, job: ExtractJob) -> SampleRecord | None:
    """The manifest row of an already extracted sample with the job's labels, or None if nothing changes."""
    if not job.glosses:  # an unlabelled re-run must not wipe labels written earlier
        return None
    new = dataclasses.replace(rec, glosses=tuple(job.glosses), split=job.split, signer=job.signer or rec.signer, extra={**rec.extra, **job.extra})
    return None if new.row() == rec.row() else new


def _cost(job: ExtractJob) -> tuple[int, int]:
    """Rough size used to start long samples first (the tail of a parallel run is then short)."""
    source = Path(job.source)
    try:
        return (1, len(image_files(source))) if source.is_dir() else (0, source.stat().st_size)
    except OSError:
        return (0, 0)


def extract_to_corpus(
    jobs: list[ExtractJob],
    out_dir: Path,
    workers: int | None = None,
    model_complexity: int = 1,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every job into the corpus at `out_dir`, `workers` processes in parallel (default: all CPUs).

    Skips samples already in the manifest with their feature file present (updating their labels
    if the job carries glosses). Failures are collected, not raised. The manifest is updated as
    samples finish and once more at the end, also on interruption.
    """
    out_dir = Path(out_dir)
    repeated = sorted(sid for sid, count in Counter(job.id for job in jobs).items() if count > 1)
    if repeated:
        raise ExtractError(f"duplicate sample ids among the jobs: {repeated[:10]}; ids must be unique")
    existing = {rec.id: rec for rec in read_manifest(out_dir, validate=False)} if (out_dir / MANIFEST).exists() else {}
    todo, skipped, relabelled = [], [], []
    for job in jobs:
        rec = existing.get(job.id)
        if rec is not None and rec.path and path_inside(out_dir, rec.path) and (out_dir / rec.path).is_file():
            skipped.append(job.id)
            new = _relabelled(rec, job)
            if new is not None:
                relabelled.append(new)
        else:
            todo.append(job)
    if relabelled:
        update_manifest(out_dir, relabelled)
    summary = ExtractSummary(done=[], skipped=skipped, failed={}, relabelled=[rec.id for rec in relabelled])
    if not todo:
        return summary
    if model_complexity != 1:
        with quiet_native_logs():
            new_holistic(model_complexity).close()  # fail once, here, rather than once a sample
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    todo.sort(key=_cost, reverse=True)
    # MediaPipe runs in this process only with one worker; worker processes filter their own fd 2
    with quiet_native_logs() if workers == 1 else nullcontext(sys.stderr) as stderr:
        _extract_todo(todo, out_dir, model_complexity, workers, progress, stderr, summary)
    return summary


def _extract_todo(todo, out_dir: Path, model_complexity: int, workers: int, progress: bool, stderr, summary: ExtractSummary) -> None:
    bar = tqdm(total=len(todo), desc="extract", unit="sample", disable=not progress, file=stderr)
    pending: list[SampleRecord] = []
    last_flush = time.monotonic()

    def finish(sid: str, rec: SampleRecord | None, reason: str | None) -> None:
        nonlocal last_flush
        if rec is None:
            summary.failed[sid] = reason or "unknown error"
        else:
            summary.done.append(sid)
            pending.append(rec)
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed), refresh=False)
        if pending and (len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS):
            update_manifest(out_dir, pending)
            pending.clear()
            last_flush = time.monotonic()

    try:
        if workers == 1:  # in this process: no interpreter start-up, same code path
            for job in todo:
                finish(*_extract_job(job, out_dir, model_complexity))
        else:
            _run_pool(todo, out_dir, model_complexity, workers, finish)
    finally:
        if pending:  # also on Ctrl+C: what was extracted stays in the manifest
            update_manifest(out_dir, pending)
        bar.close()


_started = None  # in a worker process: the queue on which each task announces its sample id


def _init_worker(started) -> None:
    global _started
    _started = started
    filter_native_logs_of_this_process()


def _pool_task(task, job: ExtractJob, out_dir: Path, model_complexity: int):
    _started.put(job.id)  # lets the parent tell which samples were running if this process dies
    return task(job, out_dir, model_complexity)


def _drain(queue) -> set[str]:
    ids = set()
    while not queue.empty():
        ids.add(queue.get())
    return ids


def _pool_round(jobs: list[ExtractJob], out_dir: Path, model_complexity: int, workers: int, finish, task, ctx) -> tuple[list[ExtractJob], set[str]]:
    """Run jobs in one process pool. Returns (jobs cut off by a dead worker, ids those workers had started)."""
    started_queue = ctx.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(started_queue,))
    broken, started = [], set()
    try:
        futures = {pool.submit(_pool_task, task, job, out_dir, model_complexity): job for job in jobs}
        for future in as_completed(futures):
            started |= _drain(started_queue)  # keep the pipe empty, so workers never block on it
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(job)
                continue
            except Exception as exc:  # e.g. a job that cannot be sent to a worker
                result = (job.id, None, f"{job.source}: {type(exc).__name__}: {exc}")
            finish(*result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    started |= _drain(started_queue)
    started_queue.close()
    return broken, started


def _run_pool(todo: list[ExtractJob], out_dir: Path, model_complexity: int, workers: int, finish, task=_extract_job) -> None:
    """Run `task` on every job in `workers` spawned processes, calling finish(id, record, reason) for each.

    A crash inside MediaPipe/OpenCV kills a worker process and with it the pool. The samples
    that were running then are retried alone, each in a fresh process, and count as failed only
    if they crash alone; all other samples go on in a new pool.
    """
    # 'spawn': a fresh interpreter a worker; forking a process that holds OpenCV/MediaPipe threads is unsafe
    ctx = multiprocessing.get_context("spawn")
    queue, idle_breaks = list(todo), 0
    while queue:
        broken, started = _pool_round(queue, out_dir, model_complexity, workers, finish, task, ctx)
        suspects = [job for job in broken if job.id in started]
        queue = [job for job in broken if job.id not in started]
        idle_breaks = idle_breaks + 1 if broken and not suspects else 0
        if idle_breaks >= 2:  # workers die before taking any sample: nothing to isolate
            for job in queue:
                finish(job.id, None, "worker processes die on start-up; run with --workers 1 to see the error")
            return
        for job in suspects:
            if _pool_round([job], out_dir, model_complexity, 1, finish, task, ctx)[0]:
                reason = f"{job.source}: the process extracting this sample crashed (inside MediaPipe/OpenCV); check the file plays, or re-encode it"
                finish(job.id, None, reason)
