"""Datasets of ``jobs.train_sppe``: proposal shards (``jobs.proposals``' Parquet) → decoded training batches.

Sources → (optional branch filter) → ``actors.train_samples.TrainingSampleDecoder`` (crop decode + heatmap
targets), lazily; ``jobs.train_sppe`` hands the result to Ray Train, which splits ``"train"`` (and ``"train_dpg"``)
across its workers (``DataConfig(datasets_to_split=...)``). ``iter_local_batches`` is the same data for the plain
single-process loop (no Ray), so the benchmark and the tests compare like with like.

The schedule follows AlphaPose's ``scripts/train.py`` (L307–316): plain GT boxes until the DPG milestone, then DPG
proposals. Proposals are pre-generated with a ``branch`` column (``store.training.PROPOSAL_BRANCHES``), so the
phases are two filtered views of the same shards: ``"train"`` holds ``branch == "gt"`` rows and ``"train_dpg"`` the
others (jitter / patch / pgpg; RMPE's PGPG, Fang et al. ICCV 2017 §3.3). Without a DPG epoch every row is used every
epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import fsspec
import numpy as np
import pyarrow.parquet as pq

from actors.train_samples import TrainingSampleDecoder
from store.writers import join_uri

logger = logging.getLogger(__name__)

__all__ = [
    "find_sample_shards",
    "shard_info",
    "build_train_datasets",
    "dataset_name",
    "iter_local_batches",
    "configure_data_context",
]

BRANCH_FILTERS = ("all", "gt", "dpg")


def find_sample_shards(proposals: str, storage_options: dict | None = None) -> list[str]:
    """``<proposals>/samples/shard=*/part-0.parquet``, sorted; when ``<proposals>/_manifest/`` exists only the
    shards with a commit marker ``_manifest/<id>.json`` (a shard without one was not finished). URIs keep the
    caller's protocol."""
    fs, root = fsspec.core.url_to_fs(proposals, **(storage_options or {}))
    protocol = proposals.split("://", 1)[0] + "://" if "://" in proposals else ""
    files = sorted(fs.glob(join_uri(root, "samples", "shard=*", "part-0.parquet")))
    manifest_dir = join_uri(root, "_manifest")
    if fs.isdir(manifest_dir):
        committed = {p.rsplit("/", 1)[-1][: -len(".json")] for p in fs.glob(join_uri(manifest_dir, "*.json"))}
        kept = [f for f in files if f.split("shard=", 1)[1].split("/", 1)[0] in committed]
        if len(kept) < len(files):
            logger.warning("%d sample shard(s) have no commit marker and are skipped", len(files) - len(kept))
        files = kept
    return [protocol + f if protocol and not f.startswith(protocol) else f for f in files]


def shard_info(files: list[str], storage_options: dict | None = None) -> dict:
    """Rows, joints, crop size, branch counts, proposal epochs and the columns all shards have (reads only small
    columns)."""
    rows, joints, sizes, branches, columns, epochs = 0, set(), set(), {}, None, set()
    for f in files:
        with fsspec.open(f, "rb", **(storage_options or {})) as fh:
            names = set(pq.read_schema(fh).names)
            columns = names if columns is None else columns & names
            fh.seek(0)
            t = pq.read_table(fh, columns=["branch", "num_joints", "crop_height", "crop_width", "epoch"])
        epochs.update(t.column("epoch").to_pylist())
        rows += t.num_rows
        joints.update(t.column("num_joints").to_pylist())
        sizes.update(zip(t.column("crop_height").to_pylist(), t.column("crop_width").to_pylist()))
        for b in t.column("branch").to_pylist():
            branches[b] = branches.get(b, 0) + 1
    return {
        "rows": rows,
        "num_joints": sorted(joints),
        "crop_hw": sorted(sizes),
        "branches": branches,
        "columns": sorted(columns or ()),  # in every shard
        "epochs": sorted(epochs),  # the proposals' epoch values
    }


def _branch_expr(branch: str) -> str | None:
    if branch not in BRANCH_FILTERS:
        raise ValueError(f"branch filter must be one of {BRANCH_FILTERS}, got {branch!r}")
    return {"all": None, "gt": "branch == 'gt'", "dpg": "branch != 'gt'"}[branch]


def _dataset(files: list[str], branch: str, decoder: TrainingSampleDecoder, batch_size: int, epoch: int | None = None):
    import ray.data

    ds = ray.data.read_parquet(files, columns=list(decoder.columns) + ["epoch"], partitioning=None)
    exprs = [e for e in (_branch_expr(branch), None if epoch is None else f"epoch == {int(epoch)}") if e is not None]
    if exprs:
        ds = ds.filter(expr=" and ".join(exprs))
    return ds.map_batches(decoder, batch_size=batch_size, batch_format="numpy")


def dataset_name(dpg: bool, epoch: int, proposal_epochs: int) -> str:
    """The Ray Train dataset a training epoch (0-based) reads: ``train``/``train_dpg``, with ``_e<k>`` for the
    proposals of epoch ``k = epoch mod proposal_epochs`` when the samples were made for several epochs."""
    base = "train_dpg" if dpg else "train"
    return base if proposal_epochs <= 1 else f"{base}_e{epoch % proposal_epochs}"


def build_train_datasets(
    files: list[str],
    *,
    dpg_from_epoch: int | None = None,
    sigma: float = 2.0,
    centre_targets: bool = False,
    jc_targets: bool = False,
    batch_size: int = 32,
    proposal_epochs: int = 1,
) -> dict:
    """``{"train": Dataset}`` over every row, or with ``dpg_from_epoch`` ``{"train": gt rows, "train_dpg": DPG/PGPG
    rows}``; each decoded to ``crops``/``targets``/``target_weight`` (+ centre targets) by
    ``TrainingSampleDecoder`` in tasks of ``batch_size`` rows. Samples made for ``proposal_epochs`` > 1 epochs
    (``jobs.proposals --epochs``) give one dataset per proposal epoch (``dataset_name``): training epoch ``e`` sees
    the proposals drawn for epoch ``e mod proposal_epochs``, fresh proposals each epoch as RMPE draws them."""
    decoder = TrainingSampleDecoder(sigma=sigma, centre_targets=centre_targets, jc_targets=jc_targets)
    branches = {False: "all"} if dpg_from_epoch is None else {False: "gt", True: "dpg"}
    out = {}
    for dpg, branch in branches.items():
        for k in range(max(proposal_epochs, 1)):
            epoch = k if proposal_epochs > 1 else None
            out[dataset_name(dpg, k, proposal_epochs)] = _dataset(files, branch, decoder, batch_size, epoch)
    return out


def iter_local_batches(
    files: list[str],
    batch_size: int,
    *,
    branch: str = "all",
    sigma: float = 2.0,
    centre_targets: bool = False,
    jc_targets: bool = False,
    proposal_epoch: int | None = None,
    storage_options: dict | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The same batches without Ray: shards in order, ``batch_size`` rows each (the last may be short), decoded by
    ``TrainingSampleDecoder``; only rows of ``proposal_epoch`` when given. For the plain training loop
    (``jobs.train_sppe.train_plain``)."""
    decoder = TrainingSampleDecoder(sigma=sigma, centre_targets=centre_targets, jc_targets=jc_targets)
    expr = _branch_expr(branch)
    pending: list = []
    n_pending = 0

    def emit():
        import pyarrow as pa

        table = pa.concat_tables(pending)
        return decoder({c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names})

    for f in files:
        with fsspec.open(f, "rb", **(storage_options or {})) as fh:
            pf = pq.ParquetFile(fh)
            for rb in pf.iter_batches(batch_size=batch_size, columns=list(decoder.columns) + ["epoch"]):
                import pyarrow as pa

                t = pa.Table.from_batches([rb])
                if expr is not None:
                    mask = np.asarray(t.column("branch").to_pylist()) == "gt"
                    t = t.filter(pa.array(mask if branch == "gt" else ~mask))
                if proposal_epoch is not None:
                    t = t.filter(pa.array(np.asarray(t.column("epoch").to_pylist()) == proposal_epoch))
                while t.num_rows:
                    take = min(batch_size - n_pending, t.num_rows)
                    pending.append(t.slice(0, take))
                    n_pending += take
                    t = t.slice(take)
                    if n_pending == batch_size:
                        yield emit()
                        pending, n_pending = [], 0
    if n_pending:
        yield emit()


def configure_data_context(*, preserve_order: bool = True) -> None:
    """Ray Data settings for training, set before the trainer exists (it copies ``DataContext`` at construction):
    keep block order (one worker then sees the same rows in the same order
    every run, which makes resume bit-exact) and no progress bars."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = preserve_order
    ctx.enable_progress_bars = False
