"""The mutation rig: ways a CSLR training pipeline breaks, each injected into a healthy setup,
and the harness check that must catch it.

    python -m harness.faults [--quick] [--json PATH] [--only NAME ...]

    base       Setup, Fault and the helpers injections share
    setups     the healthy setups: the small demo corpus, the Kaggle landmarks, the base configuration
    data       faults of corpus files, manifest, vocabulary, imputation and normalization
    model      faults of the model, the loss, the decoder and the training loop's own steps
    distill    faults of distillation, and the small demo teacher
    catalogue  CATALOGUE: every fault with what breaks and the checks that must catch it
    runner     inject_and_run, detection_table and the command line
"""
from harness.faults.base import Fault, Setup
from harness.faults.catalogue import CATALOGUE, HEALTHY
from harness.faults.data import hide_hand, without_std_floor
from harness.faults.model import LOOP_ZSCORE, inverted_padding_mask, per_sample_zscore
from harness.faults.runner import (
    CHEAP_CHECKS, CHECKS, FaultRun, check_name, crashed, detection_table, format_table, healthy_run, inject_and_run, main, run_check,
    run_fault, table_checks,
)
from harness.faults.setups import BASE_MODEL, KAGGLE_DIR, default_base_config, kaggle_corpus, small_demo_corpus

__all__ = [
    "BASE_MODEL", "CATALOGUE", "CHEAP_CHECKS", "CHECKS", "HEALTHY", "KAGGLE_DIR", "LOOP_ZSCORE", "Fault", "FaultRun", "Setup", "check_name",
    "crashed", "default_base_config", "detection_table", "format_table", "healthy_run", "hide_hand", "inject_and_run", "inverted_padding_mask",
    "kaggle_corpus", "main", "per_sample_zscore", "run_check", "run_fault", "small_demo_corpus", "table_checks", "without_std_floor",
]
