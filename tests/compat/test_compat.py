"""The compatibility checks, run on the configured corpus (--data-dir / --config; default: the
demo corpus). Each test is one call of a harness check plus an assertion on its finding."""
import pytest

from harness.data_checks import check_clean_features, check_ctc_feasibility, check_labels, check_normalization
from harness.model_checks import check_batch_size, check_forward, check_gradients, check_loss_at_init, check_modalities
from harness.training_checks import check_overfit, check_smoke
from model import training


def _assert_ok(finding):
    assert finding.ok, finding.message()


@pytest.mark.compat
def test_clean_features(harness, record_finding):
    _assert_ok(record_finding(check_clean_features(harness.scan, harness.thresholds)))


@pytest.mark.compat
def test_labels(harness, record_finding):
    _assert_ok(record_finding(check_labels(harness.corpus.dir, harness.corpus.records, harness.vocab, harness.scan)))


@pytest.mark.compat
def test_ctc_feasibility(harness, record_finding):
    model = harness.model()
    _assert_ok(record_finding(check_ctc_feasibility(harness.scan, harness.corpus.records, harness.vocab, model.output_lengths)))


@pytest.mark.compat
def test_normalization(harness, norm_method, record_finding):
    ds = harness.dataset(norm_method)
    finding = check_normalization(ds, harness.probe_indices(norm_method), lambda b: training.to_model_input(b, harness.device), harness.thresholds, harness.train_frames)
    _assert_ok(record_finding(finding))


@pytest.mark.compat
def test_forward(harness, norm_method, record_finding):
    _assert_ok(record_finding(check_forward(harness.model(), harness.probe_batch(norm_method), harness.thresholds, f"[{norm_method}]")))


@pytest.mark.compat
def test_loss_at_init(harness, record_finding):
    _assert_ok(record_finding(check_loss_at_init(harness.model(), harness.probe_batch(), len(harness.vocab), harness.thresholds)))


@pytest.mark.compat
def test_gradients(harness, record_finding):
    _assert_ok(record_finding(check_gradients(harness.model(), harness.probe_batch(), harness.thresholds)))


@pytest.mark.compat
def test_batch_sizes(harness, batch_size, record_finding):
    ds = harness.dataset()
    samples = [ds[i] for i in harness.probe_indices()[:batch_size]]
    _assert_ok(record_finding(check_batch_size(harness.model(), samples, harness.thresholds, harness.device)))


@pytest.mark.compat
def test_modalities(harness, record_finding):
    finding = check_modalities(harness.model(), harness.probe_batch(), lambda m: harness.model(modalities=(m,)), harness.cfg.modalities)
    _assert_ok(record_finding(finding))


@pytest.mark.smoke
def test_smoke(harness, record_finding):
    finding = check_smoke(harness.cfg, harness.model(), harness.dataset(), harness.probe_indices(k_random=8), harness.device, harness.thresholds)
    _assert_ok(record_finding(finding))


@pytest.mark.overfit
@pytest.mark.slow
def test_overfit(harness, record_finding):
    finding = check_overfit(harness.cfg, harness.model(), harness.dataset(), harness.overfit_indices(), harness.device, harness.thresholds)
    _assert_ok(record_finding(finding))
