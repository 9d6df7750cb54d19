"""Fixtures shared by several test modules."""
import pytest


@pytest.fixture()
def sandbox(tmp_path, monkeypatch, request):
    """An experiment script's runs, cell records and results go under tmp_path instead of the
    checkout's runs/ and experiments/results/; the script is the requesting module's ``SCRIPT``."""
    from experiments import common

    monkeypatch.setattr(common, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "RECORDS", tmp_path / "records")
    monkeypatch.setattr(request.module.SCRIPT, "RESULTS", tmp_path / "results")
    return tmp_path
